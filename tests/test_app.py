"""End-to-end tests of the web app through its public API (gradio_client), on a tiny random model.

The app is launched once per module on a free port with SPECSCOPE_DEFAULT_TARGET pointing at a
tiny LLaVA-shaped model; every public endpoint is exercised, including bad input, and after
each bad request a good one must still be answered.
"""

from __future__ import annotations

import json
import os
import re

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402  imported after the module-level skip checks above

from tests.app_server import served_app  # noqa: E402  imported after the module-level skip checks above
from tools.tiny import tiny_image, tiny_model_dir  # noqa: E402  imported after the module-level skip checks above

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "examples", "scene_describe_1.png")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    target = tiny_model_dir("llava")
    with served_app({"SPECSCOPE_DEFAULT_TARGET": target, "HF_HUB_OFFLINE": "1"}) as (url, demo, _):
        client = Client(url, verbose=False)
        img = tmp_path_factory.mktemp("img") / "tiny.png"
        tiny_image(96, 80, 1).save(img)
        yield {"url": url, "client": client, "target": target, "image": str(img), "tmp": tmp_path_factory}


RUN_DEFAULTS = dict(
    custom_drafter="",
    mode="multimodal",
    dtype="float32",
    gamma=3,
    branching="2,2,1",
    depth=3,
    top_k=3,
    budget=12,
    temperature=0,
    top_p=1,
    max_new_tokens=12,
    seed=0,
    ar_baseline=True,
    repeats=1,
)


def named(out, names):
    """A positional API result as {output name: value}; layout outputs (shown / hidden sections)
    are not part of the API's result."""
    out = list(out)
    if len(out) == len(names):
        return dict(zip(names, out))
    return dict(zip([n for n in names if n not in ("results", "more", "shown")], out))


def run_named(app, client=None, **kw):
    from ui.tabs.run import OUTPUTS

    return named(run(app, client, **kw), OUTPUTS)


def run(app, client=None, **kw):
    args = dict(
        RUN_DEFAULTS,
        image=handle_file(app["image"]),
        prompt="Describe the image.",
        target=app["target"],
        drafter="layerskip",
        strategy="dynamic",
    )
    args.update(kw)
    return (client or app["client"]).predict(**args, api_name="/run")


def _value(x):
    """A component value, whether sent plainly or as a gr.update(...) dict."""
    return x.get("value") if isinstance(x, dict) and x.get("__type__") == "update" else x


def _message(fn):
    """The user-facing message of a request: the status output, or the error Gradio raised."""
    try:
        out = fn()
    except Exception as e:  # gradio_client.exceptions.AppError (e.g. a slider out of bounds)
        return str(e)
    return out[0]


def test_run_streams_to_a_full_result(app):
    from ui.tabs.run import OUTPUTS

    args = dict(
        RUN_DEFAULTS,
        image=handle_file(app["image"]),
        prompt="Describe the image.",
        target=app["target"],
        drafter="layerskip",
        strategy="dynamic",
        max_new_tokens=16,
        repeats=3,
    )
    job = app["client"].submit(**args, api_name="/run")
    out = named(job.result(), OUTPUTS)
    updates = job.outputs()
    assert len(updates) >= 4  # loading, warm-up, decoding..., (live steps), timing, final
    assert any("Loading" in u[0] for u in updates if isinstance(u[0], str))
    assert any("Timing" in u[0] for u in updates if isinstance(u[0], str))
    status, answer, tree, step, spec_text, ar_text, summary, steps_html, download, result = (
        out[k] for k in ("status", "answer", "tree", "step", "spec_text", "ar_text", "summary", "steps_html", "download", "result")
    )
    assert "Done" in status, status
    assert isinstance(result, dict)
    assert len(result["token_ids"]) == 16 and result["summary"]["new_tokens"] == 16
    assert result["identical"] is True  # greedy: lossless
    assert result["speedup"] > 0 and len(result["speedups"]) == 3
    assert min(result["speedups"]) <= result["speedup"] <= max(result["speedups"])
    assert "over 3 runs" in status and "over 3 runs" in summary  # median and range, not one number
    if result["speedup"] < 1:  # a slowdown is not a success
        assert "slower than plain decoding" in status and "ss-status warn" in status
    else:
        assert "speedup over plain decoding" in status
    assert "speedup" in summary and "identical" in summary
    # accepted <= committed in every number shown
    from core.trace import Trace

    tr = Trace.from_json(open(download).read())
    assert all(len(s.accepted) <= len(s.committed) for s in tr.steps)
    assert result["summary"]["accepted_per_step"] * len(tr.steps) <= len(tr.output)
    assert len(answer) == 16 and {a["class_or_confidence"] for a in answer} <= {"accepted draft", "bonus", "correction", "prefill"}
    assert tree["type"] == "plotly" and "Step" in tree["plot"]
    assert _value(step) >= 1
    assert _value(spec_text) == _value(ar_text)
    assert "<table" in steps_html
    # the downloaded trace is a valid SpecScope trace that carries the baseline and its rounds
    c = tr.comparison
    assert tr.output == result["token_ids"] and c.plain_output == c.reference_output == tr.output and c.identical
    assert len(c.speedups) == len(c.plain_runs) == len(c.spec_runs) == 3 and c.speedups == result["speedups"]
    assert c.speedup == result["speedup"] and c.spec == c.spec_runs[c.reported] and "ar_baseline" not in tr.meta
    assert result["trace_file"]
    # the tree opens on the most informative step, not the last
    from ui import render

    assert f"Step {render.most_informative_step(tr) + 1}:" in tree["plot"]


def test_run_without_drafter_and_other_shapes(app):
    out = run_named(app, drafter="none", max_new_tokens=6)
    assert "Done" in out["status"] and out["result"]["summary"]["target_forwards"] == 6
    assert "speedup" not in out["result"]  # no baseline needed for plain decoding
    for strategy in ("chain", "tree"):
        out = run_named(app, drafter="ngram", strategy=strategy, max_new_tokens=8, ar_baseline=False)
        assert "Done" in out["status"] and len(out["result"]["token_ids"]) == 8
    out = run_named(app, drafter="layerskip", strategy="auto", max_new_tokens=10)  # the default shape
    assert "Done" in out["status"] and out["result"]["identical"] is True
    assert "auto" in out["status"]


def test_run_without_an_image(app):
    out = run_named(app, image=None, prompt="Say something.", drafter="ngram", strategy="chain", max_new_tokens=6, ar_baseline=False)
    assert "Done" in out["status"] and out["result"]["meta"]["has_image"] is False
    assert "No image: answering from the text only" in out["status"] and "ss-status warn" in out["status"]


def test_run_sampling_is_reported_honestly(app):
    out = run_named(app, temperature=0.9, top_p=0.9, seed=3, max_new_tokens=10)
    assert "Done" in out["status"]
    summary = out["summary"]
    assert "identical" in summary or "expected when sampling" in summary


def test_compare(app):
    from ui.tabs.compare import compare_configs

    labels = [c.label for c in compare_configs()[:2]]
    status, table, fig = app["client"].predict(
        image=handle_file(app["image"]),
        prompt="Describe the image.",
        target=app["target"],
        dtype="float32",
        configs=labels,
        max_new_tokens=10,
        temperature=0,
        repeats=2,
        api_name="/compare",
    )
    assert "Done" in status and "shared" in status, status
    table = _value(table)
    rows = table["data"]
    assert [r[0] for r in rows] == labels
    # no empty "note" column; a note only where a noisy round measured above its bound (and was left out)
    assert table["headers"][-1] == "same output" or all(not r[-1] or "above its bound" in r[-1] for r in rows), rows
    assert all(r[6].startswith("✓") for r in rows)
    assert all(re.fullmatch(r"[\d.]+× \([\d.]+–[\d.]+\)", r[5]) for r in rows), rows  # median (range)
    assert fig["type"] == "plotly" and "speedup" in fig["plot"] and "yaxis2" in fig["plot"]


def test_compare_bad_config(app):
    msg = _message(
        lambda: app["client"].predict(
            image=None,
            prompt="hi",
            target=app["target"],
            dtype="float32",
            configs=[],
            max_new_tokens=10,
            temperature=0,
            api_name="/compare",
        )
    )
    assert "at least one" in msg


def test_one_set_of_defaults():
    from ui.inputs import defaults
    from ui.tabs.compare import compare_configs
    from ui.tabs.teach import teach_shapes

    d = defaults()
    assert d.strategy == "auto"
    assert teach_shapes()["chain"].gamma == d.gamma
    assert all(c.spec.gamma == d.gamma for c in compare_configs() if c.spec.strategy == "chain")
    assert f"γ={d.gamma}" in compare_configs()[0].label


def test_teach(app):
    client = Client(app["url"], verbose=False)  # its own session: teach state is per session
    before = client.predict(step=1, api_name="/teach_step")
    assert "Start" in before[0]
    from ui.tabs.teach import OUTPUTS as T

    teach = lambda **kw: (lambda o: (o["status"], o["progress"], o["tree"], o["text"], o["explain"], o["index"]))(
        named(client.predict(**kw), [n for n in T if n != "state"])
    )
    status, progress, tree, text, explain, idx = teach(
        image=handle_file(app["image"]), prompt="Describe the image.", drafter="layerskip", shape="chain", api_name="/teach_start"
    )
    assert "Decoded" in status and idx == 0 and "Prefill" in explain
    status, progress, tree, text, explain, idx = teach(step=1, api_name="/teach_step")
    assert idx == 1 and "Step 1 of" in progress
    assert "Draft" in explain and "one target forward" in explain
    assert 'class="tk' in text and tree["type"] == "plotly"
    bad = client.predict(step=10_000, api_name="/teach_step")
    assert "step must be between" in bad[0].lower()
    tree_out = client.predict(image=None, prompt="", drafter="layerskip", shape="chain", api_name="/teach_start")
    assert "prompt" in tree_out[0]


def test_load_trace_good_and_bad(app):
    out = run_named(app, max_new_tokens=8, ar_baseline=True)
    path = out["download"]
    status, answer, tree, step, summary, *_ = app["client"].predict(handle_file(path), api_name="/load_trace")
    assert "Loaded" in status and len(answer) == 8 and "speedup" in summary and "identical" in summary
    assert str(path) not in status and "/tmp" not in status  # no server paths

    tmp = app["tmp"].mktemp("traces")
    cases = {
        "garbage.json": b"this is not json {",
        "binary.json": bytes(range(256)) * 4,
        "other.json": json.dumps({"schema": "something/else", "steps": []}).encode(),
        "wrongsteps.json": json.dumps({"schema": "specscope.trace/1", "steps": [{"x": 1}]}).encode(),
        "list.json": b"[1, 2, 3]",
    }
    for name, data in cases.items():
        p = tmp / name
        p.write_bytes(data)
        status = app["client"].predict(handle_file(str(p)), api_name="/load_trace")[0]
        assert "not a specscope trace" in status.lower() or "damaged" in status, (name, status)
    # a schema-valid trace whose steps do not add up
    tr = json.loads(open(path).read())
    tr["steps"][0]["accepted"] = [999]
    tr["steps"][0]["parents"] = [5, 5, 5]
    p = tmp / "inconsistent.json"
    p.write_text(json.dumps(tr))
    status = app["client"].predict(handle_file(str(p)), api_name="/load_trace")[0]
    assert "Loaded" in status or "damaged" in status
    assert "Done" in run(app, max_new_tokens=4, ar_baseline=False)[0]


def test_the_example_trace_reads_like_a_real_run():
    from ui.tabs import trace as tv

    out = tv.load_example()
    assert "Loaded the example trace" in out["status"] and out["file"] is None  # the file box is cleared
    text = "".join(piece for piece, _ in out["answer"])
    assert text.startswith("There are") and "shape" in text  # a real answer, not gibberish
    assert out["results"]["visible"] is True


def test_bad_inputs_give_clear_messages_and_the_app_keeps_serving(app):
    tmp = app["tmp"].mktemp("bad")
    corrupt = tmp / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    textfile = tmp / "notes.png"
    textfile.write_text("hello, I am not an image")
    wide = tmp / "wide.png"
    from PIL import Image

    Image.new("RGB", (2000, 20), "white").save(wide)

    cases = [
        (dict(prompt=""), "prompt"),
        (dict(prompt="   \n "), "prompt"),
        (dict(prompt="x" * 5000), "too long"),
        (dict(image=handle_file(str(corrupt))), "image"),
        (dict(image=handle_file(str(textfile))), "not an image"),
        (dict(image=handle_file(str(wide))), "aspect ratio"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(temperature=-1), "minimum"),  # rejected by the slider itself
        (dict(max_new_tokens=0), "at least 1"),
        (dict(max_new_tokens=-5), "at least 1"),
        (dict(branching="a,b", strategy="tree"), "branching"),
        (dict(branching="0,2", strategy="tree"), "branching"),
        (dict(branching="16,16,16", strategy="tree"), "too large"),
        (dict(target="not a model"), "unknown target"),
        (dict(target="someone/does-not-exist-xyz"), "default model still works"),
        (dict(target="/etc"), "allowed folder"),
        (dict(target="../../etc"), "allowed folder"),
        (dict(drafter="custom", custom_drafter="/tmp"), "allowed folder"),
        (dict(drafter="custom", custom_drafter="os:system"), "disabled"),
        (dict(drafter="custom", custom_drafter=""), "drafter"),
        (dict(drafter="no-such-drafter"), "not in the list of choices"),  # the dropdown refuses it
        (dict(mode="sideways"), "not in the list of choices"),
        (dict(strategy="zigzag"), "not in the list of choices"),
    ]
    for kw, needle in cases:
        msg = _message(lambda: run(app, **kw))
        assert needle.lower() in msg.lower(), (kw, msg)
        assert msg.lower().count("default model") <= 1, msg  # said once, not twice
    # a shipped drafter of the embedded model does not fit the tiny target: a clear message either way
    msg = _message(lambda: run(app, drafter="msd"))
    assert "drafter" in msg.lower() or "tokenizer" in msg.lower() or "not trained" in msg.lower(), msg
    # ... and a good request is still answered
    out = run_named(app, max_new_tokens=6)
    assert "Done" in out["status"] and len(out["result"]["token_ids"]) == 6
    # too many tokens: capped, and the page says so
    out = run_named(app, max_new_tokens=99999999, drafter="ngram", strategy="chain", ar_baseline=False)
    assert "capped at 512" in out["status"] and "99,999,999" in out["status"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a request
def test_nan_and_inf_parameters_reach_the_handler_as_clear_messages(app):
    """JSON clients cannot send NaN, but a handler must still refuse it (the UI's number boxes can)."""
    from ui.tabs import run as run_tab

    good = dict(
        image=app["image"],
        prompt="Describe.",
        target=app["target"],
        drafter="layerskip",
        custom_drafter="",
        mode="multimodal",
        dtype="float32",
        strategy="chain",
        gamma=3,
        branching="2,2",
        depth=3,
        top_k=3,
        budget=12,
        temperature=0,
        top_p=1,
        max_new_tokens=6,
        seed=0,
        ar_baseline=False,
    )
    for key, val, needle in (
        ("gamma", float("nan"), "gamma"),
        ("temperature", float("inf"), "temperature"),
        ("top_p", float("nan"), "top-p"),
        ("budget", -5, "budget"),
        ("max_new_tokens", None, "max new tokens"),
        ("seed", "abc", "seed"),
    ):
        outs = list(run_tab.run_decoding(**dict(good, **{key: val})))
        assert len(outs) == 1 and needle in outs[0]["status"].lower(), (key, outs[0]["status"])
    outs = list(run_tab.run_decoding(**good))
    assert "Done" in outs[-1]["status"]


def test_stop_event_cancels_a_run(app):
    from ui import session
    from ui.tabs import run as run_tab

    ev = session.new_stop(None)
    ev.set()
    from core import api

    pair = api.load_pair(app["target"], "layerskip")
    p = run_tab.parse_params(
        app["image"], "Describe.", app["target"], "layerskip", "", "multimodal", "float32", "chain", 3, "2,2", 3, 3, 12, 0, 1, 20, 0
    )
    items = list(api.stream(pair, p.prompt, p.image, p.spec, p.sampling, p.max_new_tokens, should_stop=ev.is_set))
    assert items[-1].stop_reason == "cancelled"


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a request
def test_presets_that_cannot_load_fall_back_to_the_default(app, monkeypatch):
    from ui import presets
    from ui.tabs import run as run_tab

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    keys = [p.key for p in presets.presets()]
    assert keys[0] == "default" and len(keys) >= 6
    assert all(p.target and p.drafter for p in presets.presets())
    out = run_tab.apply_preset("qwen-3b")
    assert out["preset"] == "default" and out["target"] == app["target"] and "unreachable" in out["preset_note"]
    out = run_tab.apply_preset("default")
    assert out["target"] == app["target"]


def test_model_id_rules(app, monkeypatch, tmp_path):
    from core.errors import InputError, ModelLoadError
    from ui import limits

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert limits.check_model_id(app["target"], "target") == app["target"]  # the operator's default
    assert limits.check_model_id("default", "target") == "default"
    assert limits.check_model_id("LayerSkip:2", "drafter") == "layerskip:2"
    assert limits.check_model_id("ngram", "drafter") == "ngram"
    for bad in ("/etc", "../..", "~/x", "a/b/c", "owner/../x", "x" * 400, "", "two words"):
        with pytest.raises((InputError, ModelLoadError)):
            limits.check_model_id(bad, "target")
    with pytest.raises(ModelLoadError, match="unreachable"):
        limits.check_model_id("owner/name", "target")
    with pytest.raises(InputError, match="disabled"):
        limits.check_model_id("os:system", "drafter")
    # an extra root from SPECSCOPE_MODEL_ROOTS makes a model folder there acceptable
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(InputError, match="allowed folder"):
        limits.check_model_id(str(model), "drafter")
    monkeypatch.setenv("SPECSCOPE_MODEL_ROOTS", str(tmp_path))
    assert limits.check_model_id(str(model), "drafter") == str(model.resolve())
    assert limits.parse_branching("3, 2 ,2,1") == (3, 2, 2, 1)


def test_differs_note_explains_each_cause():
    from core.divergence import explain
    from ui.render import differs_note, identity_kind

    same = explain([1, 2], [1, 2])
    tie = explain([1, 2, 3], [1, 2, 4], [5, 5, 0.02], [5, 5, 0.05], "bfloat16")
    real = explain([1, 2, 3], [1, 2, 4], [5, 5, 4.0], [5, 5, 0.05], "bfloat16")
    assert "sampling" in differs_note(0.7, real) and identity_kind(0.7, real) == "warn"
    assert differs_note(0.0, same) == "" and identity_kind(0.0, same) == "ok"
    assert "rounding tie at token 2" in differs_note(0.0, tie) and identity_kind(0.0, tie) == "warn"  # amber
    assert "report" in differs_note(0.0, real) and identity_kind(0.0, real) == "err"  # red


# ====================================================================== handlers without a page
@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a request
def test_an_error_clears_the_previous_result(app):
    """After a failed run no stale answer, tree or numbers stay below the error."""
    from ui.tabs import run as run_tab

    good = dict(
        image=app["image"],
        prompt="Describe.",
        target=app["target"],
        drafter="ngram",
        custom_drafter="",
        mode="multimodal",
        dtype="float32",
        strategy="chain",
        gamma=3,
        branching="2,2",
        depth=3,
        top_k=3,
        budget=12,
        temperature=0,
        top_p=1,
        max_new_tokens=6,
        seed=0,
        ar_baseline=False,
    )
    last = list(run_tab.run_decoding(**good))[-1]
    assert "Done" in last["status"] and last["answer"] and last["results"]["visible"] is True
    bad = list(run_tab.run_decoding(**dict(good, image=__file__)))[-1]  # not an image
    assert "ss-status err" in bad["status"]
    assert bad["answer"] == [] and bad["tree"] is None and bad["summary"] == "" and bad["state"] is None
    assert bad["results"]["visible"] is False and bad["more"]["visible"] is False
    assert bad["download"] is None and bad["result"] is None


def test_no_server_paths_in_messages():
    from core.errors import InputError
    from core.paths import ROOT
    from ui.messages import friendly

    for raw in (
        f"drafter 'msd' is not trained yet ({ROOT}/assets/drafters/msd is missing)",
        "cannot read /tmp/gradio/abc123/upload.png: broken",
        "no file at /srv/data/models/x/config.json",
    ):
        msg = friendly(InputError(raw))
        assert str(ROOT) not in msg and "/tmp/" not in msg and "/srv/" not in msg, msg
    assert "assets/drafters/msd" in friendly(InputError(f"x ({ROOT}/assets/drafters/msd is missing)"))


def test_max_new_tokens_is_refused_below_one_and_capped_above_the_limit():
    from core.errors import InputError
    from ui import limits

    assert limits.check_max_new(64) == (64, "")
    v, note = limits.check_max_new(99999999)
    assert v == limits.MAX_NEW_TOKENS and "capped at 512" in note
    for bad in (0, -5, 1.5, None, "x"):
        with pytest.raises(InputError):
            limits.check_max_new(bad)


def test_named_outputs_map_names_to_components():
    import gradio as gr
    from ui.outputs import Outputs

    with gr.Blocks():
        a, b = gr.Textbox(), gr.Number()
    outs = Outputs(None, status=a, count=b)
    assert outs.list == [a, b] and outs.names == ["status", "count"]

    def handler(x, request=None):
        return {"count": x}

    def streaming(x, request=None):
        yield {"status": "busy"}
        yield {"status": "done", "count": x}

    assert outs.bind(handler)(3) == {b: 3}
    assert list(outs.bind(streaming)(4)) == [{a: "busy"}, {a: "done", b: 4}]
    import inspect

    assert inspect.isgeneratorfunction(outs.bind(streaming)) and not inspect.isgeneratorfunction(outs.bind(handler))
    assert list(inspect.signature(outs.bind(handler)).parameters) == ["x", "request"]  # what Gradio inspects
    with pytest.raises(KeyError):
        outs.bind(lambda: {"nope": 1})()
