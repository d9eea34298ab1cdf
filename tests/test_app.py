"""End-to-end tests of the web app through its public API (gradio_client), on a tiny random model.

The app is launched once per module on a free port with SPECSCOPE_DEFAULT_TARGET pointing at a
tiny LLaVA-shaped model; every public endpoint is exercised, including bad input, and after
each bad request a good one must still be answered.
"""
from __future__ import annotations

import json
import os
import time

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from tests.app_server import served_app  # noqa: E402
from tests.tiny_models import tiny_image, tiny_model_dir  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "assets", "examples", "scene_describe_1.png")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    target = tiny_model_dir("llava")
    with served_app({"SPECSCOPE_DEFAULT_TARGET": target, "HF_HUB_OFFLINE": "1"}) as (url, demo, _):
        client = Client(url, verbose=False)
        img = tmp_path_factory.mktemp("img") / "tiny.png"
        tiny_image(96, 80, 1).save(img)
        yield {"url": url, "client": client, "target": target, "image": str(img), "tmp": tmp_path_factory}


RUN_DEFAULTS = dict(custom_drafter="", mode="multimodal", dtype="float32", gamma=3, branching="2,2,1", depth=3,
                    top_k=3, budget=12, temperature=0, top_p=1, max_new_tokens=12, seed=0, ar_baseline=True)


def run(app, client=None, **kw):
    args = dict(RUN_DEFAULTS, image=handle_file(app["image"]), prompt="Describe the image.",
                target=app["target"], drafter="layerskip", strategy="dynamic")
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
    t0 = time.time()
    args = dict(RUN_DEFAULTS, image=handle_file(app["image"]), prompt="Describe the image.", target=app["target"],
                drafter="layerskip", strategy="dynamic", max_new_tokens=16)
    job = app["client"].submit(**args, api_name="/run")
    out = job.result()
    updates = job.outputs()
    assert len(updates) >= 4          # loading, warm-up, decoding..., (live steps), baseline, final
    assert any("Loading" in u[0] for u in updates if isinstance(u[0], str))
    status, answer, tree, step, spec_text, ar_text, summary, *_figs, steps_html, download, result = out
    assert "Done" in status, status
    assert isinstance(result, dict)
    assert len(result["token_ids"]) == 16 and result["summary"]["new_tokens"] == 16
    assert result["identical"] is True               # greedy: lossless
    assert result["speedup"] > 0
    assert "speedup" in summary and "identical" in summary
    assert len(answer) == 16 and {a["class_or_confidence"] for a in answer} <= \
        {"accepted draft", "bonus", "correction", "prefill"}
    assert tree["type"] == "plotly" and "Step" in tree["plot"]
    assert _value(step) >= 1
    assert _value(spec_text) == _value(ar_text)
    assert "<table" in steps_html
    # the downloaded trace is a valid SpecScope trace that carries the baseline
    from core.trace import Trace
    tr = Trace.from_json(open(download).read())
    assert tr.output == result["token_ids"] and tr.meta["ar_baseline"]["output"] == tr.output
    assert result["trace_file"]
    assert time.time() - t0 < 30


def test_run_without_drafter_and_other_shapes(app):
    out = run(app, drafter="none", max_new_tokens=6)
    assert "Done" in out[0] and out[-1]["summary"]["target_forwards"] == 6
    assert "speedup" not in out[-1]                   # no baseline needed for plain decoding
    for strategy in ("chain", "tree"):
        out = run(app, drafter="ngram", strategy=strategy, max_new_tokens=8, ar_baseline=False)
        assert "Done" in out[0] and len(out[-1]["token_ids"]) == 8
    out = run(app, drafter="layerskip", strategy="auto", max_new_tokens=10)     # the default shape
    assert "Done" in out[0] and out[-1]["identical"] is True
    assert "auto" in out[0]


def test_run_without_an_image(app):
    out = run(app, image=None, prompt="Say something.", drafter="ngram", strategy="chain", max_new_tokens=6,
              ar_baseline=False)
    assert "Done" in out[0] and out[-1]["meta"]["has_image"] is False


def test_run_sampling_is_reported_honestly(app):
    out = run(app, temperature=0.9, top_p=0.9, seed=3, max_new_tokens=10)
    assert "Done" in out[0]
    summary = out[6]
    assert "identical" in summary or "expected when sampling" in summary


def test_compare(app):
    status, table, fig = app["client"].predict(
        image=handle_file(app["image"]), prompt="Describe the image.", target=app["target"], dtype="float32",
        configs=["n-gram · chain γ=4", "LayerSkip · chain γ=4"], max_new_tokens=10, temperature=0,
        api_name="/compare")
    assert "Done" in status, status
    rows = table["data"]
    assert [r[0] for r in rows] == ["n-gram · chain γ=4", "LayerSkip · chain γ=4"]
    assert all(r[6].startswith("✓") for r in rows)
    assert fig["type"] == "plotly" and "speedup" in fig["plot"]


def test_compare_bad_config(app):
    msg = _message(lambda: app["client"].predict(
        image=None, prompt="hi", target=app["target"], dtype="float32", configs=[], max_new_tokens=10,
        temperature=0, api_name="/compare"))
    assert "at least one" in msg


def test_teach(app):
    client = Client(app["url"], verbose=False)       # its own session: teach state is per session
    before = client.predict(step=1, api_name="/teach_step")
    assert "Start" in before[0]
    status, progress, tree, text, explain, idx = client.predict(
        image=handle_file(app["image"]), prompt="Describe the image.", drafter="layerskip", shape="chain",
        api_name="/teach_start")
    assert "Decoded" in status and idx == 0 and "Prefill" in explain
    status, progress, tree, text, explain, idx = client.predict(step=1, api_name="/teach_step")
    assert idx == 1 and "Step 1 of" in progress
    assert "Draft" in explain and "one target forward" in explain
    assert 'class="tk' in text and tree["type"] == "plotly"
    bad = client.predict(step=10_000, api_name="/teach_step")
    assert "step must be between" in bad[0].lower()
    tree_out = client.predict(image=None, prompt="", drafter="layerskip", shape="chain", api_name="/teach_start")
    assert "prompt" in tree_out[0]


def test_load_trace_good_and_bad(app):
    out = run(app, max_new_tokens=8, ar_baseline=True)
    path = out[11]
    status, answer, tree, step, summary, *_ = app["client"].predict(handle_file(path), api_name="/load_trace")
    assert "Loaded" in status and len(answer) == 8 and "speedup" in summary and "identical" in summary

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
        (dict(temperature=-1), "minimum"),          # rejected by the slider itself
        (dict(max_new_tokens=100000), "maximum"),
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
        (dict(drafter="no-such-drafter"), "not in the list of choices"),   # the dropdown refuses it
        (dict(mode="sideways"), "not in the list of choices"),
        (dict(strategy="zigzag"), "not in the list of choices"),
    ]
    for kw, needle in cases:
        msg = _message(lambda: run(app, **kw))
        assert needle.lower() in msg.lower(), (kw, msg)
    # a shipped drafter of the embedded model does not fit the tiny target: a clear message either way
    msg = _message(lambda: run(app, drafter="msd"))
    assert "drafter" in msg.lower() or "tokenizer" in msg.lower() or "not trained" in msg.lower(), msg
    # ... and a good request is still answered
    out = run(app, max_new_tokens=6)
    assert "Done" in out[0] and len(out[-1]["token_ids"]) == 6


@pytest.mark.filterwarnings("ignore::UserWarning")   # gr.Warning outside a request
def test_nan_and_inf_parameters_reach_the_handler_as_clear_messages(app):
    """JSON clients cannot send NaN, but a handler must still refuse it (the UI's number boxes can)."""
    from ui.tabs import run as run_tab
    good = dict(image=app["image"], prompt="Describe.", target=app["target"], drafter="layerskip",
                custom_drafter="", mode="multimodal", dtype="float32", strategy="chain", gamma=3, branching="2,2",
                depth=3, top_k=3, budget=12, temperature=0, top_p=1, max_new_tokens=6, seed=0, ar_baseline=False)
    for key, val, needle in (("gamma", float("nan"), "gamma"), ("temperature", float("inf"), "temperature"),
                             ("top_p", float("nan"), "top-p"), ("budget", -5, "budget"),
                             ("max_new_tokens", None, "max new tokens"), ("seed", "abc", "seed")):
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
    p = run_tab.parse_params(app["image"], "Describe.", app["target"], "layerskip", "", "multimodal", "float32",
                             "chain", 3, "2,2", 3, 3, 12, 0, 1, 20, 0)
    items = list(api.stream(pair, p.prompt, p.image, p.spec, p.sampling, p.max_new_tokens, should_stop=ev.is_set))
    assert items[-1].stop_reason == "cancelled"


def test_stream_yields_snapshots_then_the_finished_trace(app):
    from core import api
    from core.drafters import DraftSpec
    pair = api.load_pair(app["target"], "ngram")
    items = list(api.stream(pair, "Describe.", None, DraftSpec("chain", gamma=3), None, 24, every=0.0))
    assert items and items[-1].stop_reason and len(items[-1].output) == 24
    for snap in items[:-1]:
        assert snap.stop_reason == "" and len(snap.output) <= 24
        assert all(str(t) in snap.vocab for t in snap.output)       # pieces resolved for what it holds


@pytest.mark.filterwarnings("ignore::UserWarning")   # gr.Warning outside a request
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
    from core.adapters import InputError, ModelLoadError
    from ui import limits
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert limits.check_model_id(app["target"], "target") == app["target"]   # the operator's default
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
    import torch
    from ui.common import differs_note
    assert "sampling" in differs_note(0.7, torch.float32)
    low = differs_note(0.0, torch.bfloat16)
    assert "low precision" in low and "float32" in low
    assert differs_note(0.0, "float16") == low
    assert "report" in differs_note(0.0, torch.float32)
