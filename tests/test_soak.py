"""The load test in the suite, and the app's documented API (issue 24).

A bounded soak of the served app (the tiny random LLaVA, in-process on a free port) through
``scripts/soak.py``'s own functions: a few sequential runs, every bad input of the soak once (each
refused with a clear message while the server keeps serving), then a few visitors at once for a
few seconds. The soak builds its requests by input name from the live API (``view_api``), so the
moment the soak and the API drift these tests fail (``test_drift_stops_the_soak_...`` shows the
ways). The Public API tables of docs/app.md are checked against the same live API.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.util
import json
import re
import sys
import time

import pytest

from core import machine
from core.paths import ROOT
from tests.app_server import served_app
from tools.tiny import tiny_model_dir

DOC = ROOT / "docs" / "app.md"
MAX_NEW = 4  # tokens per good request
TIMEOUT = 60.0  # seconds per request: a request without an answer by then is a hang


def _load_soak():
    spec = importlib.util.spec_from_file_location("specscope_soak", ROOT / "scripts" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


soak = _load_soak()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # a tuning file of its own, without tuned draft shapes (top-level machine keys), so the defaults
    # are the untuned ones docs/app.md lists; the session's measurements (dtype, kernels, rows,
    # costs: named sections) are kept, so nothing is measured twice
    tuning = tmp_path_factory.mktemp("soak-tuning") / "tuning.json"
    try:
        measured = json.loads(machine.tuning_path().read_text())
        tuning.write_text(json.dumps({k: v for k, v in measured.items() if "|" not in k}))
    except (OSError, ValueError, AttributeError):
        pass
    env = {"SPECSCOPE_DEFAULT_TARGET": tiny_model_dir("llava"), "HF_HUB_OFFLINE": "1", "SPECSCOPE_TUNING": str(tuning)}
    with served_app(env) as (url, _, _):
        yield url


@pytest.fixture(scope="module")
def live_info(app):
    from gradio_client import Client

    return Client(app, verbose=False).view_api(print_info=False, return_format="dict")


@pytest.fixture(scope="module")
def run_api(live_info):
    return soak.RunApi.from_info(live_info)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return soak.make_files(tmp_path_factory.mktemp("soak-files"))


def figures(records) -> str:
    counts = {o: sum(r.outcome == o for r in records) for o in soak.OUTCOMES}
    return f"{len(records)} requests: " + ", ".join(f"{n} {o}" for o, n in counts.items())


def failures(records) -> list[str]:
    return [f"{r.case}: {r.outcome}: {r.message}" for r in records if r.outcome in ("failed", "busy")]


# ====================================================================== docs/app.md
def doc_api(text: str) -> dict:
    """{endpoint: {"inputs": [(name, type, default cell)], "outputs": [(name, component)]}} from
    the tables of the Public API section."""
    section = text.split("\n## Public API", 1)[1].split("\n## ", 1)[0]
    out = {}
    for block in re.split(r"\n### ", section)[1:]:
        name = re.match(r"`(/\w+)`", block).group(1)
        inputs, outputs, table = [], [], None
        for line in block.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
            if cells is None:
                table = None
            elif cells[0] in ("input", "output"):
                table = cells[0]
            elif set(cells[0]) <= set("-: "):
                continue
            elif table == "input":
                inputs.append((cells[0].strip("`"), cells[1].strip("`"), cells[2]))
            elif table == "output":
                outputs.append((cells[0].strip("`"), cells[1].strip("`")))
        out[name] = {"inputs": inputs, "outputs": outputs}
    return out


def fingerprint(api: dict) -> str:
    """The shape a client depends on: every endpoint's input names and types in order, its outputs' components."""
    shape = {ep: [[n, t] for n, t, _ in v["inputs"]] + [[c] for _, c in v["outputs"]] for ep, v in sorted(api.items())}
    return hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode()).hexdigest()[:12]


def same_default(doc_value, live) -> bool:
    return doc_value == live and (type(doc_value) is bool) == (type(live) is bool)


def test_the_documented_api_is_the_live_api(live_info):
    """docs/app.md lists every endpoint the app serves, each input (name, order, type, the fixed
    defaults) and each output's component, exactly as the running app reports them."""
    doc = doc_api(DOC.read_text())
    live = live_info["named_endpoints"]
    assert not live_info.get("unnamed_endpoints"), "an endpoint without api_name: name it and document it"
    assert list(doc) == list(live), "docs/app.md's endpoints are not the app's"
    for ep, spec in live.items():
        documented = doc[ep]["inputs"]
        names = [p["parameter_name"] for p in spec["parameters"]]
        assert [n for n, _, _ in documented] == names, f"{ep}: docs/app.md lists other inputs than the app takes"
        for (name, typ, default), p in zip(documented, spec["parameters"]):
            assert typ == p["python_type"]["type"], f"{ep} {name}: documented type {typ}, the app's {p['python_type']['type']}"
            if default == "—":
                assert not p["parameter_has_default"], f"{ep} {name}: documented without a default, the app has one"
                continue
            assert p["parameter_has_default"], f"{ep} {name}: documented with a default, the app has none"
            if default.startswith("*"):  # depends on the server: not compared
                continue
            m = re.fullmatch(r"`([^`]*)`", default)
            assert m, f"{ep} {name}: a default is `a literal`, *server-dependent* or —, not {default!r}"
            value = ast.literal_eval(m.group(1))
            assert same_default(value, p["parameter_default"]), (
                f"{ep} {name}: documented default {value!r}, the app's {p['parameter_default']!r}"
            )
        components = [r["component"] for r in spec["returns"]]
        assert [c for _, c in doc[ep]["outputs"]] == components, f"{ep}: docs/app.md lists other outputs than the app returns"


def test_the_api_version_names_the_documented_api():
    """A change of the documented inputs' names or types, or of the outputs, needs a new API
    version: the newest row of the version table carries the fingerprint of the tables above it."""
    text = DOC.read_text()
    version = int(re.search(r"API version: \*\*(\d+)\*\*", text).group(1))
    rows = re.findall(r"^\| (\d+) \| (`[0-9a-f]{12}`|—) \|", text, flags=re.M)
    assert rows and int(rows[0][0]) == version, "the version table's first row is the current API version"
    got = fingerprint(doc_api(text))
    assert rows[0][1] == f"`{got}`", (
        f"the documented API changed (fingerprint {got}): raise 'API version' in docs/app.md and add a row "
        f"| {version + 1} | `{got}` | what changed |"
    )
    prints = [f for _, f in rows if f != "—"]
    assert len(prints) == len(set(prints)), "two versions with one fingerprint"


# ====================================================================== the soak against the live API
def test_the_soaks_requests_are_the_live_api(run_api):
    """Every input any soak case sets is one /run takes; a request names every input, in order."""
    soak.check_cases(run_api, soak.cases(), MAX_NEW)
    values = soak.soak_values(MAX_NEW) | {"image": None}
    req = run_api.request(values)
    assert list(req) == run_api.names
    assert len(run_api.positional(values)) == len(run_api.names)
    assert run_api.outputs[run_api.status_index] == "Html" and run_api.outputs[run_api.result_index] == "Json"
    for name in run_api.defaulted(values):  # left to the app: taken from its own API
        assert req[name] == run_api.defaults[name]


def test_drift_stops_the_soak_before_anything_is_sent(live_info):
    """The ways the soak and /run can drift apart, made on a copy of the live API: each is caught
    by name before a request is sent, not as a stream of unexplained failures."""

    def changed(edit):
        info = copy.deepcopy(live_info)
        edit(info["named_endpoints"]["/run"])
        return soak.RunApi.from_info(info)

    # /run loses (or renames) an input the soak sets
    gone = changed(lambda ep: ep.update(parameters=[p for p in ep["parameters"] if p["parameter_name"] != "repeats"]))
    with pytest.raises(soak.ApiDrift, match="repeats"):
        soak.check_cases(gone, soak.cases(), MAX_NEW)
    # /run gains an input without a default
    knob = {"parameter_name": "knob", "parameter_has_default": False, "parameter_default": None, "component": "Number"}
    required = changed(lambda ep: ep["parameters"].append(knob))
    with pytest.raises(soak.ApiDrift, match="knob"):
        soak.check_cases(required, soak.cases(), MAX_NEW)
    # ... or one with a default: sent at the app's default, the positional body grows with it
    optional = changed(lambda ep: ep["parameters"].append(knob | {"parameter_has_default": True, "parameter_default": 7}))
    values = soak.soak_values(MAX_NEW) | {"image": None}
    assert (
        optional.positional(values)[-1] == 7
        and len(optional.positional(values)) == len(live_info["named_endpoints"]["/run"]["parameters"]) + 1
    )
    # the raw result or the status line moves
    with pytest.raises(soak.ApiDrift, match="JSON"):
        changed(lambda ep: ep.update(returns=[r for r in ep["returns"] if r["component"] != "Json"]))
    with pytest.raises(soak.ApiDrift, match="status"):
        changed(lambda ep: ep.update(returns=ep["returns"][1:] + ep["returns"][:1]))
    with pytest.raises(soak.ApiDrift, match="no /run"):
        soak.RunApi.from_info({"named_endpoints": {}})


def test_a_few_sequential_runs(app, run_api, files):
    """Four good requests one after the other in one session (the soak's first good cases;
    the visitors below send the others): every one decodes."""
    t0 = time.perf_counter()
    records, _ = soak.sequential(app, run_api, 4, MAX_NEW, TIMEOUT, files)
    print(f"sequential: {figures(records)} in {time.perf_counter() - t0:.1f} s")
    assert [r.outcome for r in records] == ["completed"] * 4, failures(records)


def test_bad_inputs_are_refused_clearly_while_the_server_keeps_serving(app, run_api, files):
    """Every bad input of the soak, once: each refused with a message a visitor can act on (not
    the generic error, not a hang); then a good request still decodes."""
    from gradio_client import Client

    client = Client(app, verbose=False)
    bad = [c for c in soak.cases() if c.good is False and not c.heavy]
    good = next(c for c in soak.cases() if c.good is True)
    t0 = time.perf_counter()
    records = [soak.do_case(client, app, run_api, c, files, MAX_NEW, TIMEOUT) for c in bad]
    after = soak.do_case(client, app, run_api, good, files, MAX_NEW, TIMEOUT)
    print(f"bad inputs: {figures(records)} in {time.perf_counter() - t0:.1f} s; afterwards: {after.outcome}")
    assert all(r.outcome == "refused" for r in records), failures(records)
    assert after.outcome == "completed", after.message


def test_a_few_visitors_for_a_few_seconds(app, run_api, files):
    """Three visitors at once for a few seconds: the good cases the sequential runs left out and a
    few bad ones, each once, then good and bad at random. Nothing fails (no generic error, no hang, no good input refused, no bad one
    accepted, no full queue) and the app answers a good request afterwards."""
    good = [c for c in soak.cases() if c.good is not False and not c.heavy]
    sent = [c for c in soak.cases() if c.good is True and not c.raw and not c.heavy][:4]  # by the sequential runs
    bad = [c for c in soak.cases() if c.good is False]
    mix = [c for c in good if c not in sent] + bad[:: len(bad) // 3][:3]
    t0 = time.perf_counter()
    records, mem = soak.soak(app, run_api, visitors=3, seconds=3, max_new=MAX_NEW, timeout=TIMEOUT, files=files, case_list=mix)
    wall = time.perf_counter() - t0
    print(f"soak: 3 visitors, {figures(records)} in {wall:.1f} s (cases: {', '.join(c.name for c in mix)})")
    assert mem["warm_record"].outcome == "completed", mem["warm_record"].message
    assert not failures(records), failures(records)
    assert {r.case for r in records} == {c.name for c in mix}
    assert mem["after_ok"], mem["after_msg"]
