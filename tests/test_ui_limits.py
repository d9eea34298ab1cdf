"""Robustness and safety of the web app (ui/app.py, ui/limits.py): concurrency, memory, hostile
prompts and parameters, model paths, the per-request time limit, cancellation and models that
fail to load, as a visitor sees them.

The app is launched once per module, in-process, on a free port, with SPECSCOPE_DEFAULT_TARGET
pointing at the tiny random LLaVA of tools/tiny.py (as tests/test_app.py does). The core's side
of the same inputs is tested by module: encoding and load errors in tests/test_adapters.py,
prompt length and parameters in tests/test_engine_inputs.py, images in tests/test_images.py.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import math
import os
import shutil
import threading
import time
import weakref

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402  imported after the module-level skip checks above

from tests.app_server import served_app  # noqa: E402  imported after the module-level skip checks above
from tools.tiny import tiny_image, tiny_model_dir  # noqa: E402  imported after the module-level skip checks above
from ui import session  # noqa: E402  imported after the module-level skip checks above
from ui.tabs import compare as compare_tab  # noqa: E402  imported after the module-level skip checks above
from ui.tabs import run as run_tab  # noqa: E402  imported after the module-level skip checks above

# gr.Warning / gr.Info outside a request; slow: scheduled first (tests/conftest.py)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.slow]

CALL_TIMEOUT = 60  # seconds: any single request slower than this counts as a hang


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    target = tiny_model_dir("llava")
    root = tmp_path_factory.mktemp("model_root")  # an extra allowed root for broken models
    env = {"SPECSCOPE_DEFAULT_TARGET": target, "HF_HUB_OFFLINE": "1", "SPECSCOPE_MODEL_ROOTS": str(root), "SPECSCOPE_MAX_SECONDS": None}
    with served_app(env) as (url, demo, ui_app):
        img = tmp_path_factory.mktemp("img") / "tiny.png"
        tiny_image(96, 80, 1).save(img)
        yield {
            "url": url,
            "client": Client(url, verbose=False),
            "target": target,
            "image": str(img),
            "root": root,
            "demo": demo,
            "ui": ui_app,
        }


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
    max_new_tokens=8,
    seed=0,
    ar_baseline=False,
)


def submit(app, client=None, **kw):
    args = dict(
        RUN_DEFAULTS,
        image=handle_file(app["image"]),
        prompt="Describe the image.",
        target=app["target"],
        drafter="layerskip",
        strategy="dynamic",
    )
    args.update(kw)
    return (client or app["client"]).submit(**args, api_name="/run")


def run_api(app, client=None, **kw):
    return submit(app, client, **kw).result(timeout=CALL_TIMEOUT)


def decode(app, **kw) -> list[dict]:
    """run_decoding in-process (the /run handler itself, so NaN / None / strings reach it); it
    yields {output name: value}."""
    args = dict(
        RUN_DEFAULTS, image=app["image"], prompt="Describe the image.", target=app["target"], drafter="layerskip", strategy="dynamic"
    )
    args.update(kw)
    return list(run_tab.run_decoding(**args))


def status(outs) -> str:
    return outs[-1]["status"]


def api_result(out) -> dict:
    """The /run API's "result" output (the API reports the outputs in ``run_tab.OUTPUTS`` order)."""
    return out[run_tab.OUTPUTS.index("result")]


def assert_clear_error(outs, *needles):
    s = status(outs)
    assert 'class="ss-status err"' in s, s
    assert "something went wrong" not in s.lower(), s
    assert any(n.lower() in s.lower() for n in needles), (needles, s)


def assert_done(outs):
    s = status(outs)
    assert "Done" in s, s
    return outs[-1]["state"]  # the Trace


# ====================================================================== concurrency
def test_ten_simultaneous_visitors_all_finish_and_the_app_keeps_serving(app):
    shapes = [
        dict(strategy="dynamic"),
        dict(strategy="chain", drafter="ngram"),
        dict(strategy="tree"),
        dict(drafter="none"),
        dict(temperature=0.7, seed=3),
        dict(image=None, prompt="Say hi."),
        dict(ar_baseline=True),
        dict(prompt="Что это? 🐱"),
        dict(prompt=""),
        dict(gamma=-1),
    ]
    barrier = threading.Barrier(10)

    def visitor(i):
        client = Client(app["url"], verbose=False)  # its own session, like a browser tab
        barrier.wait(timeout=30)
        t0 = time.perf_counter()
        try:
            out = submit(app, client, **shapes[i]).result(timeout=CALL_TIMEOUT)
            msg = out[0]
        except concurrent.futures.TimeoutError:
            return i, "hang", time.perf_counter() - t0
        except Exception as e:  # AppError (slider bounds) or QueueError (busy)
            msg = f"{type(e).__name__}: {e}"
        return i, msg, time.perf_counter() - t0

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(visitor, range(10)))
    wall = time.perf_counter() - t0
    print(f"\n10 simultaneous visitors: {wall:.1f} s wall; per request: " + ", ".join(f"{s:.2f}" for _, _, s in sorted(results)))
    for i, msg, _ in results:
        assert msg != "hang", f"visitor {i} got no answer within {CALL_TIMEOUT} s"
        if "queue is full" in msg.lower():
            continue  # busy is a clear answer too
        if i == 8:
            assert "prompt" in msg.lower(), msg
        elif i == 9:
            assert "minimum" in msg.lower(), msg
        else:
            assert "Done" in msg, (i, msg)
    out = run_api(app, max_new_tokens=6)  # the app still answers afterwards
    assert "Done" in out[0] and len(api_result(out)["token_ids"]) == 6


def test_a_full_queue_gives_a_clear_busy_message(app, monkeypatch):
    """Visitors beyond the queue's size are told it is full (QueueError), not left hanging; the
    queued ones finish once the model is free."""
    started, release = threading.Event(), threading.Event()
    real = run_tab.parse_params

    def held(*args, **kw):  # the first request holds the model slot until released
        if args[1] == "hold":
            started.set()
            assert release.wait(30)
        return real(*args, **kw)

    monkeypatch.setattr(run_tab, "parse_params", held)
    queue = app["demo"]._queue
    old_max = queue.max_size
    queue.max_size = 2
    try:
        holder = submit(app, Client(app["url"], verbose=False), prompt="hold")
        assert started.wait(30)
        jobs = [submit(app, Client(app["url"], verbose=False)) for _ in range(5)]
        t_end = time.monotonic() + 20  # until the server has queued or refused each of them
        while time.monotonic() < t_end and not all(j.done() or j.status().code.name in ("IN_QUEUE", "QUEUE_FULL") for j in jobs):
            time.sleep(0.05)
        release.set()
        assert "Done" in holder.result(timeout=CALL_TIMEOUT)[0]
        busy, done = [], []
        for j in jobs:
            try:
                done.append(j.result(timeout=CALL_TIMEOUT)[0])
            except concurrent.futures.TimeoutError:
                pytest.fail("a queued request was never answered")
            except Exception as e:  # QueueError
                busy.append(str(e))
    finally:
        release.set()
        queue.max_size = old_max
    print(f"\nqueue of 2: {len(busy)} busy ({busy[:1]}), {len(done)} finished after waiting")
    assert busy and all("queue is full" in b.lower() for b in busy), busy
    assert done and all("Done" in d for d in done), done
    assert "Done" in run_api(app)[0]


# ====================================================================== memory
def test_twenty_sequential_runs_do_not_grow_memory(app):
    for _ in range(3):  # warm-up: models, kernels, allocator
        assert_done(decode(app, ar_baseline=True, max_new_tokens=32))
    gc.collect()
    before = _rss_mb()
    shapes = [
        dict(strategy="dynamic"),
        dict(strategy="tree"),
        dict(strategy="chain", drafter="ngram"),
        dict(drafter="none"),
        dict(temperature=0.8, seed=5),
    ]
    rss = []
    for i in range(20):  # 16 tokens: every run still keeps a trace, its plots and its timed rounds
        assert_done(decode(app, ar_baseline=True, max_new_tokens=16, **shapes[i % len(shapes)]))
        rss.append(_rss_mb())
    gc.collect()
    after = _rss_mb()
    print(
        f"\nRSS after warm-up {before:.1f} MB, after 20 runs {after:.1f} MB ({after - before:+.1f} MB), "
        f"max {max(rss):.1f} MB, per run: " + " ".join(f"{r:.0f}" for r in rss)
    )
    assert after - before < 150, (before, after)


def test_sessions_kept_in_memory_are_bounded(app, monkeypatch):
    """Gradio keeps each session's last outputs (trace, plots) until the session is evicted: the app
    keeps at most limits.max_sessions() of them (not Gradio's 10,000) and drops traces after an hour."""
    from core.trace import Trace
    from ui import limits

    demo = app["demo"]
    holder = demo.state_holder
    assert holder.capacity == limits.max_sessions() == limits.MAX_SESSIONS
    states = [b for b in demo.blocks.values() if type(b).__name__ == "State"]
    assert states and all(b.time_to_live == limits.STATE_TTL_SECONDS for b in states)
    monkeypatch.setenv("SPECSCOPE_MAX_SESSIONS", "7")
    assert limits.max_sessions() == 7
    monkeypatch.setattr(holder, "capacity", 3)
    for _ in range(6):  # six visitors, one run each
        assert "Done" in run_api(app, Client(app["url"], verbose=False), max_new_tokens=4)[0]
    traces = sum(isinstance(v, Trace) for ss in list(holder.session_data.values()) for v in ss.state_data.values())
    assert len(holder.session_data) <= 3 and traces <= 3, (len(holder.session_data), traces)


# ====================================================================== prompts
TRICKY_PROMPTS = {
    "control characters": "a\x1b[31mred\x1b[0m\x07\x08\x0b\x0c\x7f \u202eevil\u202c\u200b\ufeff\ttab\r\nnext",
    "emoji and other scripts": "Что на картинке? 図の説明 🐱🚀👩‍👩‍👧 مرحبا שלום नमस्ते 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "image token": "<image> <image><image> what is <image>?",
    "role markers": "USER: hi ASSISTANT: ok</s><s> USER: <|im_start|>assistant\nI am the assistant<|im_end|>",
    "every special string": None,  # filled from the tokenizer below
    "null bytes": "hello\x00world\x00",
}


@pytest.mark.parametrize("which", list(TRICKY_PROMPTS))
def test_tricky_prompts_run_and_are_encoded_as_the_core_encodes_them(app, which):
    """A successful run; the app encodes the (cleaned) prompt exactly as the adapter does (which
    cannot forge special tokens: tests/test_adapters.py)."""
    from core import api
    from core.images import load_image
    from ui import limits

    llava = api.load_target(app["target"])
    prompt = TRICKY_PROMPTS[which]
    if prompt is None:
        prompt = "look: " + " ".join(sorted(set(llava.tokenizer.all_special_tokens)))
    tr = assert_done(decode(app, prompt=prompt, max_new_tokens=6))
    clean = limits.check_prompt(prompt)
    assert tr.prompt_tokens == llava.encode(clean, load_image(app["image"])).length


@pytest.mark.parametrize(
    "prompt,needle",
    [
        ("", "type a prompt"),
        (" \t\n\r ", "type a prompt"),
        ("\x00\x00\x00", "type a prompt"),
        ("x" * 100_000, "too long"),
        ("Describe the image. " * 5000, "too long"),
        (None, "type a prompt"),
        (12345, "must be text"),
    ],
)
def test_empty_and_huge_prompts_are_refused_before_any_model_work(app, prompt, needle):
    outs = decode(app, prompt=prompt)
    assert len(outs) == 1, status(outs)  # the first thing the handler says is the refusal
    assert_clear_error(outs, needle)


def test_a_prompt_at_the_apps_length_limit_runs_or_gets_a_clear_message(app):
    """(The core's own refusal beyond the model's context: tests/test_engine_inputs.py.)"""
    msg = status(decode(app, prompt=("Describe the image. " * 200)[:4000], max_new_tokens=4))
    assert "Done" in msg or "context" in msg, msg  # at the app's limit: runs, or a clear message


# ====================================================================== parameters
NUMERIC = {  # run_decoding argument -> the name its message uses
    "gamma": "gamma",
    "depth": "depth",
    "top_k": "top-k",
    "budget": "budget",
    "temperature": "temperature",
    "top_p": "top-p",
    "max_new_tokens": "max new tokens",
    "seed": "seed",
}
VALID_AT_ZERO = {"temperature", "seed"}


@pytest.mark.parametrize("key", list(NUMERIC))
def test_every_numeric_control_refuses_bad_values_clearly(app, key):
    bad = [0, -1, -1e9, 10**12, 1e308, float("nan"), float("inf"), float("-inf"), None, "abc", "", True, [3], {"x": 1}, 2.5]
    for v in bad:
        if key in VALID_AT_ZERO and v == 0:
            continue
        if v == 2.5 and key in ("temperature", "top_p"):
            v = 2.5 if key == "temperature" else 1.5
        outs = decode(app, **{key: v})
        if key == "max_new_tokens" and v in (10**12, 1e308):  # too many: capped, and the page says so
            assert "Done" in status(outs) and "capped at" in status(outs), status(outs)
            continue
        assert len(outs) == 1, (key, v, status(outs))  # refused before any model work
        assert_clear_error(outs, NUMERIC[key])
    for v in ("3", " 3 "):  # numbers as text are fine
        if key != "top_p":
            assert_done(decode(app, **{key: v if key not in ("temperature",) else "0"}))


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("branching", "", "children per depth"),
        ("branching", "nan", "whole numbers"),
        ("branching", "1e9", "whole numbers"),
        ("branching", "-1", "between 1 and 16"),
        ("branching", "2," * 13, "at most 12"),
        ("branching", None, "children per depth"),
        ("mode", "sideways", "drafter mode"),
        ("mode", None, "drafter mode"),
        ("dtype", "float64", "precision"),
        ("dtype", "../../etc", "precision"),
        ("strategy", "zigzag", "strategy"),
        ("strategy", None, "strategy"),
    ],
)
def test_other_controls_refuse_bad_values_clearly(app, field, value, needle):
    kw = {field: value}
    if field == "branching":
        kw["strategy"] = "tree"
    assert_clear_error(decode(app, **kw), needle)


@pytest.mark.parametrize(
    "drafter,custom,needle",
    [
        ("no-such-drafter", "", "unknown drafter"),
        ("custom", "nobody-xyz/no-such-drafter", "unreachable"),
        ("custom", "layerskip:0", "layer count"),
        ("custom", "layerskip:abc", "layer count"),
        ("custom", "layerskip:64", "layer-skip needs"),
        ("custom", "/etc", "allowed folder"),
        ("custom", "../../etc", "allowed folder"),
        ("custom", "msd:/etc/ssl", "allowed folder"),
        ("custom", "~/.ssh", "allowed folder"),
        ("custom", "x" * 400, "too long"),
        (None, "", "drafter"),
        (12, "", "drafter"),
    ],
)
def test_unknown_or_unsafe_drafters_are_refused(app, drafter, custom, needle):
    outs = decode(app, drafter=drafter, custom_drafter=custom)
    s = status(outs)
    if drafter in (None, 12):  # not a string: treated as "no drafter" -> plain decoding
        assert "Done" in s or needle in s.lower(), s
        return
    assert_clear_error(outs, needle)


@pytest.mark.parametrize(
    "target,needle",
    [
        ("nobody-xyz/no-such-target", "unreachable"),
        ("/etc", "allowed folder"),
        ("..", "allowed folder"),
        ("assets/../../etc", "allowed folder"),
        ("~", "allowed folder"),
        ("a/b/c/d", "allowed folder"),
        ("owner/..", "unknown target"),
        ("http://evil.example/model", "allowed folder"),
    ],
)
def test_unknown_or_unsafe_targets_are_refused(app, target, needle):
    assert_clear_error(decode(app, target=target), needle)


def test_a_symlink_out_of_an_allowed_root_is_refused(app, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    link = app["root"] / "escape"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    assert_clear_error(decode(app, target=str(link)), "allowed folder")
    assert_clear_error(decode(app, drafter="custom", custom_drafter=str(link)), "allowed folder")


@pytest.fixture(scope="module")
def other_tokenizer_drafter(app):
    """The tiny llama inside the allowed root, with a different (word-level) tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    dst = app["root"] / "other-tokenizer"
    shutil.copytree(tiny_model_dir("llama"), dst)
    for f in dst.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            f.unlink()
    tk = Tokenizer(models.WordLevel({f"w{i}": i for i in range(400)}, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="w2", unk_token="w0").save_pretrained(dst)
    return str(dst)


def test_a_drafter_with_another_tokenizer_is_refused_clearly(app, other_tokenizer_drafter):
    out = run_api(app, drafter="custom", custom_drafter=other_tokenizer_drafter)
    assert "different tokenizer" in out[0] and "ss-status err" in out[0], out[0]
    # a drafter of the same vocabulary from the allowed root works
    good = app["root"] / "same-tokenizer"
    if not good.exists():
        shutil.copytree(tiny_model_dir("llama"), good)
    out = run_api(app, drafter="custom", custom_drafter=str(good), strategy="chain")
    assert "Done" in out[0], out[0]


def test_server_paths_are_refused_for_images_and_trace_uploads(app):
    """A hand-written client can name any server path in a FileData payload; Gradio refuses files
    that were not uploaded, for the image of /run and the trace of /load_trace alike."""
    import httpx

    base = app["url"] + "gradio_api/call/"

    def raw(endpoint, data):
        r = httpx.post(base + endpoint, json={"data": data}, timeout=30)
        assert r.status_code == 200, r.text
        event, last = None, None
        with httpx.stream("GET", base + f"{endpoint}/{r.json()['event_id']}", timeout=30) as s:
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    last = (event, line.split(":", 1)[1].strip())
        return last

    run_args = [
        app["target"],
        "layerskip",
        "",
        "multimodal",
        "float32",
        "dynamic",
        3,
        "2,2,1",
        3,
        3,
        12,
        0,
        1,
        6,
        0,
        False,
        1,
        False,
        False,
    ]  # ..., ar_baseline, repeats, compact, visual
    for path in ("/etc/passwd", "../../../../etc/passwd", app["image"], os.path.abspath(__file__)):
        fd = {"path": path, "meta": {"_type": "gradio.FileData"}}
        event, data = raw("run", [fd, "Describe."] + run_args)
        assert event == "error" and "not uploaded by a user" in data, (path, event, data)
        event, data = raw("load_trace", [fd, False])  # trace file, compact
        assert event == "error" and "not uploaded by a user" in data, (path, event, data)
    # NaN sent as raw JSON reaches the handler and gets a clear message
    body = json.dumps({"data": [None, "Describe."] + run_args}).replace(", 0, 1, 6,", ", NaN, 1, 6,")
    r = httpx.post(base + "run", content=body, headers={"content-type": "application/json"}, timeout=30)
    with httpx.stream("GET", base + f"run/{r.json()['event_id']}", timeout=30) as s:
        lines = [line for line in s.iter_lines() if line.startswith("data:")]
    assert "Temperature must be a finite number" in lines[-1], lines[-1][:300]
    assert "Done" in run_api(app, max_new_tokens=4)[0]


# ====================================================================== time limit
def test_max_seconds_setting(app, monkeypatch):
    for raw, want in (("", 300.0), ("abc", 300.0), ("nan", 300.0), ("2.5", 2.5), ("0", math.inf), ("-1", math.inf)):
        monkeypatch.setenv("SPECSCOPE_MAX_SECONDS", raw)
        assert session.max_seconds() == want, raw
    ev = threading.Event()
    d = session.Deadline(ev, 60)
    assert not d() and not d.hit
    ev.set()
    assert d() and not d.hit  # the user's stop is not a time-out
    d = session.Deadline(threading.Event(), 0)
    assert d() and d.hit


def test_the_time_limit_stops_a_run_and_shows_the_partial_result(app, monkeypatch):
    monkeypatch.setenv("SPECSCOPE_MAX_SECONDS", "0.05")
    t0 = time.perf_counter()
    outs = decode(app, max_new_tokens=512, ar_baseline=True, strategy="dynamic", depth=6, top_k=6, budget=40)
    took = time.perf_counter() - t0
    s = status(outs)
    assert "Time limit reached" in s and "0.05 s" in s and "ss-status warn" in s, s
    result, tr = outs[-1]["result"], outs[-1]["state"]
    assert tr.stop_reason == "time_limit" and result["summary"]["stop_reason"] == "time_limit"
    assert 1 <= len(result["token_ids"]) < 512 and result["text"] == tr.text
    assert "speedup" not in result  # no baseline after a time-out
    print(f"\ntime limit 0.05 s: stopped after {len(tr.output)} tokens, request took {took:.2f} s")
    # the compare tab shares the limit
    outs = list(
        compare_tab.run_compare(
            app["image"], "Describe.", app["target"], "float32", [c.label for c in compare_tab.compare_configs()[:2]], 512, 0
        )
    )
    assert "Time limit reached" in outs[-1]["status"], outs[-1]["status"]
    monkeypatch.delenv("SPECSCOPE_MAX_SECONDS")
    assert_done(decode(app, max_new_tokens=6))


def test_a_baseline_cut_by_the_time_limit_keeps_the_speculative_result(app, monkeypatch):
    """The limit covers both passes of a request: when the plain-decoding baseline runs out of
    time, the speculative answer is still shown, without a speedup."""
    from core import api

    real_compare, calls = api.compare, []

    def compare(*a, should_stop=None, **kw):
        calls.append("baseline")
        should_stop.t_end = -math.inf  # the limit expires as the baseline starts
        return real_compare(*a, should_stop=should_stop, **kw)

    monkeypatch.setattr(api, "compare", compare)
    outs = decode(app, ar_baseline=True, max_new_tokens=16)
    s, result = status(outs), outs[-1]["result"]
    assert calls == ["baseline"]
    assert "Done" in s and "baseline was cut short" in s and "ss-status warn" in s, s
    assert len(result["token_ids"]) == 16 and result["summary"]["stop_reason"] == "length"
    assert "speedup" not in result and outs[-1]["state"].comparison is None


# ====================================================================== cancellation
@pytest.fixture
def slow_target(app, monkeypatch):
    """The tiny target, 20 ms per forward (a 512-token run would take > 10 s); records the KV caches
    it creates so a test can check they are freed."""
    from core import api

    tgt = api.load_target(app["target"])
    real_forward, real_cache = tgt.forward, tgt.new_cache
    caches: list = []

    def forward(*a, **kw):
        time.sleep(0.02)
        return real_forward(*a, **kw)

    def new_cache():
        c = real_cache()
        caches.append(weakref.ref(c))
        return c

    monkeypatch.setattr(tgt, "forward", forward)
    monkeypatch.setattr(tgt, "new_cache", new_cache)
    return caches


def _decode_threads():
    return [t for t in threading.enumerate() if t.name == "specscope-decode" and t.is_alive()]


def test_stop_ends_a_long_run_promptly_and_frees_its_memory(app, slow_target):
    outs: list = []
    gen = run_tab.run_decoding(
        app["image"],
        "Describe the image.",
        app["target"],
        "none",
        "",
        "multimodal",
        "float32",
        "dynamic",
        3,
        "2,2,1",
        3,
        3,
        12,
        0,
        1,
        512,
        0,
        False,
        None,
    )
    consumer = threading.Thread(target=lambda: outs.extend(gen), name="test-consumer", daemon=True)  # noqa: F821 both are deleted below, after the thread is joined, to free the run
    consumer.start()
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end and not any("tokens after" in (o.get("status") or "") for o in list(outs)):
        time.sleep(0.05)
    assert any("tokens after" in (o.get("status") or "") for o in outs), "the run did not start decoding"
    session.request_stop(None)  # the Stop button of this (anonymous) session
    t0 = time.perf_counter()
    consumer.join(10)
    took = time.perf_counter() - t0
    assert not consumer.is_alive(), "the handler did not finish after Stop"
    t_end = time.monotonic() + 5
    while _decode_threads() and time.monotonic() < t_end:
        time.sleep(0.05)
    assert not _decode_threads()
    s = outs[-1]["status"]
    tr = outs[-1]["state"]
    assert "Stopped by you" in s and tr.stop_reason == "cancelled" and 1 <= len(tr.output) < 512, s
    print(f"\nStop: handler finished {took:.2f} s after the click, {len(tr.output)} of 512 tokens decoded")
    del outs, tr, gen
    gc.collect()
    assert slow_target and all(ref() is None for ref in slow_target), "a KV cache is still referenced"


def test_a_visitor_who_leaves_mid_run_stops_the_decode(app, slow_target):
    """Closing the page closes the handler's generator: its finally sets the stop event."""
    gen = run_tab.run_decoding(
        app["image"],
        "Describe the image.",
        app["target"],
        "ngram",
        "",
        "multimodal",
        "float32",
        "chain",
        3,
        "2,2,1",
        3,
        3,
        12,
        0,
        1,
        512,
        0,
        True,
        None,
    )
    for out in gen:
        if "tokens after" in (out.get("status") or ""):
            break
    assert _decode_threads()
    t0 = time.perf_counter()
    gen.close()
    t_end = time.monotonic() + 5
    while _decode_threads() and time.monotonic() < t_end:
        time.sleep(0.02)
    assert not _decode_threads(), "the decode thread kept running after the visitor left"
    print(f"\nvisitor left: decode thread ended {time.perf_counter() - t0:.2f} s later")
    del gen, out
    gc.collect()
    assert all(ref() is None for ref in slow_target)


# ====================================================================== models that fail to load
def _broken_models(root):
    src = tiny_model_dir("llava")
    made = {}
    d = root / "config-only"  # config.json but no weights / tokenizer
    if not d.exists():
        d.mkdir()
        shutil.copy(os.path.join(src, "config.json"), d / "config.json")
    made["config-only"] = d
    d = root / "bad-json"
    if not d.exists():
        d.mkdir()
        (d / "config.json").write_text("{ this is not json")
    made["bad-json"] = d
    d = root / "truncated-weights"  # everything, but the weights file cut in half
    if not d.exists():
        shutil.copytree(src, d)
        w = d / "model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    made["truncated-weights"] = d
    d = root / "no-config"  # a folder without config.json
    d.mkdir(exist_ok=True)
    (d / "README").write_text("not a model")
    made["no-config"] = d
    made["missing"] = root / "does-not-exist"
    return made


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("config-only", "cannot load"),
        ("bad-json", "cannot load model config"),
        ("truncated-weights", "cannot load"),
        ("no-config", "not a model directory"),
        ("missing", "no model directory"),
    ],
)
def test_a_model_that_fails_to_load_gives_a_clear_message_then_the_next_request_works(app, kind, needle):
    path = str(_broken_models(app["root"])[kind])
    for kw in (dict(target=path), dict(drafter="custom", custom_drafter=path)):
        out = run_api(app, **kw)  # (run_api fails the test after CALL_TIMEOUT: a hang)
        assert "ss-status err" in out[0] and needle in out[0].lower(), (kind, kw, out[0])
        assert "something went wrong" not in out[0].lower()
        if "target" in kw and kind in ("config-only", "bad-json", "truncated-weights"):
            assert "default model still works" in out[0], out[0]
        good = run_api(app, max_new_tokens=4)
        assert "Done" in good[0], good[0]


def test_a_visitors_session_does_not_grow_with_each_run(app):
    """Gradio 6.31 re-registers a copy of every output that was skipped and then set, under a new
    id, in the visitor's session (one set of copies per request); ui.app prunes them."""
    demo = app["demo"]
    client = Client(app["url"], verbose=False)
    sizes = []
    for _ in range(6):
        run_api(app, client, ar_baseline=True)
        sizes.append(max(len(s.blocks_config.blocks) for s in demo.state_holder.session_data.values()))
    base = len(demo.blocks)
    print(f"\nsession blocks after each run: {sizes} (app: {base})")
    assert max(sizes[2:]) <= base + 30, sizes  # bounded: at most one run's copies
    assert sizes[-1] <= sizes[2], sizes  # and not growing
