"""The SpecScope web app (Gradio Blocks): watch speculative decoding of a vision-language model.

    from ui.app import build_app, launch
    demo = build_app()
    launch(demo)                     # theme, css, queue and the background model loader

Tabs: Run (live decoding + speedup against plain decoding), Compare (several drafters /
strategies on one input), Teach (one step at a time, plain-language explanations), Trace
viewer (re-render a saved trace without a model), About.

Public API endpoints (gradio_client): /run (streaming), /compare (streaming), /teach_start,
/teach_step, /load_trace. Every handler turns bad input into a message in the page and
keeps the app serving; unexpected errors are logged and shown as a short generic message.
Each request's decoding has a time limit (``SPECSCOPE_MAX_SECONDS``, default 300 s): when it
is hit the run stops like the Stop button and the partial result is shown with a message.
"""
from __future__ import annotations

import html
import json
import logging
import math
import os
import tempfile
import threading
import time
import types
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from core import api
from core.adapters import InputError, ModelLoadError
from core.drafters import CHOICES, DraftSpec, spec_for
from core.images import load_image
from core.sampling import SamplingConfig
from core.trace import Trace
from core.tune import tuned_spec

from . import limits, presets, render

log = logging.getLogger("specscope.app")

try:  # Hugging Face ZeroGPU: a no-op decorator everywhere else
    import spaces  # type: ignore

    gpu = spaces.GPU(duration=120)
except Exception:  # not installed, or not on a Space
    def gpu(fn):
        return fn

EXAMPLES_DIR = api.ASSETS / "examples"
TRACE_DIR = Path(tempfile.gettempdir()) / "specscope-traces"
LIVE_EVERY = 0.25          # seconds between live updates of the text while decoding
TREE_EVERY = 0.75          # ... and of the draft tree (a plotly redraw costs the browser far more)
EXPECTED = (InputError, ModelLoadError, ValueError)
DEFAULT_MAX_SECONDS = 300.0  # per-request decoding time limit; SPECSCOPE_MAX_SECONDS overrides (<= 0: none)
GENERIC_ERROR = "Something went wrong on the server (it has been logged). Please try again."

STRATEGY_CHOICES = [("auto (measured)", "auto"), ("chain", "chain"), ("static tree", "tree"),
                    ("dynamic tree", "dynamic")]

HEADER = """
<div class="ss-header">
  <div class="ss-title"><span class="ss-logo">◆</span> SpecScope
    <span class="ss-sub">speculative decoding for vision-language models, live</span></div>
  <p>A small, fast <b>drafter</b> guesses the next few tokens; the big <b>target</b> model checks all the
  guesses in <b>one</b> forward pass and keeps the ones it agrees with, plus one token of its own.</p>
  <p>The answer is exactly what the target alone would write; it just needs fewer slow steps.
  Upload a picture, ask a question and watch every guess being accepted or rejected.</p>
</div>
"""

CSS = """
.gradio-container {max-width: 1480px !important}
.ss-header {padding: 6px 4px 2px 4px}
.ss-header .ss-title {font-size: 1.9rem; font-weight: 750; letter-spacing: -0.01em; color: #0f172a}
.ss-header .ss-logo {color: #2e9e5b}
.ss-header .ss-sub {font-size: 1rem; font-weight: 500; color: #64748b; margin-left: 10px}
.ss-header p {margin: 4px 0 0 0; font-size: 1.02rem; color: #334155; max-width: 1100px}
.ss-modelbar {font-size: 0.92rem}
.ss-pill {display: inline-block; padding: 3px 12px; border-radius: 999px; font-weight: 600;
          border: 1px solid transparent}
.ss-pill.ok {background: #ecfdf5; color: #166534; border-color: #bbf7d0}
.ss-pill.busy {background: #eff6ff; color: #1e40af; border-color: #bfdbfe}
.ss-pill.err {background: #fef2f2; color: #991b1b; border-color: #fecaca}
.ss-status {padding: 10px 14px; border-radius: 10px; border: 1px solid #e2e8f0; background: #f8fafc;
            font-size: 0.98rem; color: #1f2937; min-height: 22px}
.ss-status.ok {background: #f0fdf4; border-color: #bbf7d0}
.ss-status.busy {background: #eff6ff; border-color: #bfdbfe}
.ss-status.err {background: #fef2f2; border-color: #fecaca; color: #991b1b}
.ss-status.warn {background: #fffbeb; border-color: #fde68a; color: #92400e}
.ss-legend {display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 0.88rem; color: #475569;
            align-items: center; padding: 2px 2px}
.ss-legend .sw {display: inline-block; width: 13px; height: 13px; border-radius: 3px;
                vertical-align: -2px; margin-right: 5px}
#ss-answer .textfield, #tv-answer .textfield {font-size: 1.08rem; line-height: 1.9}
.ss-note {color: #64748b; font-size: 0.9rem}
.ss-teach-progress {font-size: 1.5rem; font-weight: 700; color: #0f172a}
.ss-teach-text {font-size: 1.75rem; line-height: 1.75; padding: 16px 20px; border-radius: 12px;
                background: #f8fafc; border: 1px solid #e2e8f0; white-space: pre-wrap;
                word-break: break-word; min-height: 70px; color: #0f172a}
.ss-teach-text .tk {border-radius: 6px; padding: 1px 3px; white-space: pre-wrap}
.ss-teach-text .tk.accepted {background: #7fd19b}
.ss-teach-text .tk.bonus {background: #8fb4f5}
.ss-teach-text .tk.correction {background: #f7b866}
.ss-teach-text .tk.prefill {background: #cbd5e1}
.ss-teach-text .tk.rejected {color: #b91c1c; text-decoration: line-through; text-decoration-thickness: 3px;
                              background: #fde4e4}
.ss-teach-text .old {color: #334155}
.ss-explain {font-size: 1.35rem; line-height: 1.55; color: #1f2937}
.ss-explain ol {margin: 4px 0 0 0; padding-left: 1.4em}
.ss-explain li {margin: 6px 0}
.ss-explain .q {font-family: ui-monospace, Menlo, Consolas, monospace; background: #eef2f6;
                border-radius: 6px; padding: 0 6px; white-space: pre-wrap; word-break: break-word}
.ss-explain .tally {margin-top: 10px; font-weight: 650; color: #0f172a}
.ss-big-btn button, button.ss-big-btn {font-size: 1.25rem !important; min-height: 56px}
footer {display: none !important}
"""

THEME = gr.themes.Soft(
    primary_hue="emerald", secondary_hue="blue", neutral_hue="slate",
    font=["Inter", "Segoe UI", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["DejaVu Sans Mono", "Menlo", "Consolas", "monospace"],
).set(body_text_color="#1f2937", block_title_text_weight="600", button_large_text_weight="650",
       block_label_background_fill="transparent", block_label_text_color="*neutral_600",
       block_title_background_fill="transparent", block_title_text_color="*neutral_700",
       block_label_border_width="0px", block_title_padding="0px", block_label_padding="2px 0px")


# ====================================================================== small helpers
def _esc(s: str) -> str:
    return html.escape(str(s), quote=False)


def status_html(msg: str, kind: str = "") -> str:
    icon = {"ok": "✓", "busy": "⏳", "err": "⚠", "warn": "⚠"}.get(kind, "")
    return f'<div class="ss-status {kind}">{icon + " " if icon else ""}{msg}</div>'


def legend_html() -> str:
    """Legend of the Teach tab's text: the same colours as the Run tab's answer."""
    items = [("accepted draft", render.COLOR_MAP["accepted draft"], "", "the drafter's guess, kept by the target"),
             ("bonus", render.COLOR_MAP["bonus"], "", "the target's own token after a fully accepted draft"),
             ("correction", render.COLOR_MAP["correction"], "", "the target's token in place of a rejected guess"),
             ("rejected guess", "#fde4e4", "text-decoration:line-through;color:#b91c1c",
              "a guess the target refused (not part of the answer)")]
    return '<div class="ss-legend">' + "".join(
        f'<span title="{_esc(tip)}"><span class="sw" style="background:{c}"></span>'
        f'<span style="{style}">{_esc(n)}</span></span>' for n, c, style, tip in items) + "</div>"


def load_examples() -> list[dict]:
    try:
        data = json.loads((EXAMPLES_DIR / "examples.json").read_text())
    except (OSError, ValueError):
        return []
    out = []
    for ex in data.get("examples", []):
        path = EXAMPLES_DIR / str(ex.get("file", ""))
        if path.is_file() and ex.get("prompt"):
            out.append({**ex, "path": str(path)})
    return out


def _raw_path_preprocess(self, payload):
    if payload is None:
        return None
    path = getattr(payload, "path", None)
    if path:
        return str(path)
    try:
        return gr.Image.preprocess(self, payload)
    except Exception:
        raise gr.Error("cannot read this image") from None


def SafeImage(**kw) -> gr.Image:
    """A ``gr.Image`` that hands the raw upload path to the handler, so a corrupt, huge or odd
    file is judged by ``core.images.load_image`` (a clear message) instead of failing inside
    Gradio's own preprocessing (a generic error). Patched per instance: a subclass would make
    Gradio write a .pyi stub next to this file."""
    img = gr.Image(**kw)
    img.preprocess = types.MethodType(_raw_path_preprocess, img)
    return img


def read_image(path):
    """The handler side of SafeImage: None (no image) or an RGB PIL image, else InputError."""
    if path is None or path == "":
        return None
    if isinstance(path, dict):        # {"path": ...} from some clients
        path = path.get("path")
    if hasattr(path, "size") and hasattr(path, "mode"):
        return load_image(path)
    return load_image(str(path))


def _stop_key(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "anonymous") if request is not None else "anonymous"


_stops: dict[str, threading.Event] = {}
_stops_lock = threading.Lock()


def _new_stop(request) -> threading.Event:
    ev = threading.Event()
    with _stops_lock:
        if len(_stops) > 2000:
            _stops.clear()
        _stops[_stop_key(request)] = ev
    return ev


def _end_stop(request, ev: threading.Event) -> None:
    with _stops_lock:
        if _stops.get(_stop_key(request)) is ev:
            del _stops[_stop_key(request)]


def request_stop(request: gr.Request):
    """The Stop buttons: ask this session's running decode to stop after its current step."""
    with _stops_lock:
        ev = _stops.get(_stop_key(request))
    if ev is not None:                 # else nothing is running for this session
        ev.set()
        gr.Info("Stopping after the current step…")


def max_seconds() -> float:
    """The per-request decoding time limit in seconds (``SPECSCOPE_MAX_SECONDS``, default 300;
    0 or less disables it). Read per request, so the operator's value applies without a restart."""
    raw = os.environ.get("SPECSCOPE_MAX_SECONDS", "").strip()
    if not raw:
        return DEFAULT_MAX_SECONDS
    try:
        v = float(raw)
    except ValueError:
        log.warning("SPECSCOPE_MAX_SECONDS=%r is not a number; using %g s", raw, DEFAULT_MAX_SECONDS)
        return DEFAULT_MAX_SECONDS
    if math.isnan(v):
        return DEFAULT_MAX_SECONDS
    return v if v > 0 else math.inf


class Deadline:
    """``should_stop`` for the engine: the user's Stop button OR the request's time limit.
    ``hit`` tells the two apart afterwards (the user's stop wins when both apply)."""

    def __init__(self, stop: threading.Event, seconds: float | None = None):
        self.stop = stop
        self.seconds = max_seconds() if seconds is None else seconds
        self.t_end = time.monotonic() + self.seconds
        self.hit = False

    def __call__(self) -> bool:
        if self.stop.is_set():
            return True
        if time.monotonic() >= self.t_end:
            self.hit = True
            return True
        return False

    def message(self) -> str:
        return f"Time limit reached: this server stops a request after {self.seconds:g} s of decoding"


def _fallback_hint(e: BaseException, target) -> str:
    """After a model that could not load: point back to the default, which keeps working."""
    if isinstance(e, ModelLoadError) and isinstance(target, str) \
            and target.strip() not in ("", "default", limits.default_target()):
        return " The embedded default model still works: pick the 'SpecScope default' preset (Model settings)."
    return ""


def _friendly(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    return msg[0].upper() + msg[1:] if msg else msg


# ====================================================================== default-model loader
class ModelWarmup:
    """Loads the default target in a background thread so the page is up at once."""

    def __init__(self):
        self.state = "idle"          # idle | loading | ready | missing | error
        self.message = ""
        self.seconds = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self.state = "loading"
        self._thread = threading.Thread(target=self._load, name="specscope-warmup", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            api.load_target(limits.default_target())
            self.state = "ready"
            log.info("default model %s ready in %.1f s", limits.default_target(), time.perf_counter() - t0)
        except ModelLoadError as e:
            self.state = "missing" if "missing" in str(e) else "error"
            self.message = str(e)
            log.warning("default model not available: %s", e)
        except Exception as e:  # noqa: BLE001
            self.state = "error"
            self.message = f"{type(e).__name__}: {e}"
            log.exception("loading the default model failed")
        self.seconds = time.perf_counter() - t0

    def html(self) -> str:
        name = limits.default_target()
        shown = "embedded model (assets/target)" if name == "default" else Path(name).name or name
        if self.state == "ready":
            pill = (f'<span class="ss-pill ok">● default model ready</span> {_esc(shown)}'
                    f' · loaded in {self.seconds:.1f} s')
        elif self.state == "loading":
            pill = (f'<span class="ss-pill busy">◌ loading the default model…</span> {_esc(shown)}'
                    ' · the page works meanwhile')
        elif self.state == "missing":
            pill = ('<span class="ss-pill err">⚠ default model missing</span> '
                    f'{_esc(self.message)}. You can still pick a Hub model (when online) or open a saved '
                    'trace in the <b>Trace viewer</b>.')
        elif self.state == "error":
            pill = f'<span class="ss-pill err">⚠ default model failed to load</span> {_esc(self.message)}'
        else:
            pill = f'<span class="ss-pill busy">default model loads on first use</span> {_esc(shown)}'
        return f'<div class="ss-modelbar">{pill}</div>'

    @property
    def settled(self) -> bool:
        return self.state in ("ready", "missing", "error")


WARMUP = ModelWarmup()


# ====================================================================== parameters
@dataclass
class RunParams:
    prompt: str
    image: object
    target: str
    drafter: str | None
    mode: str
    dtype: str
    spec: DraftSpec
    sampling: SamplingConfig
    max_new_tokens: int

    def meta(self) -> dict:
        return {"temperature": self.sampling.temperature, "prompt": self.prompt,
                "has_image": self.image is not None, "app": "specscope"}


def resolve_drafter(drafter, custom_drafter) -> str | None:
    choice = (drafter or "none").strip() if isinstance(drafter, str) else "none"
    if choice == "custom":
        name = limits.check_model_id(custom_drafter, "drafter")
    else:
        name = limits.check_model_id(choice, "drafter")
    return None if name in ("none", "ar") else name


def parse_params(image, prompt, target, drafter, custom_drafter, mode, dtype, strategy, gamma, branching,
                 depth, top_k, budget, temperature, top_p, max_new_tokens, seed) -> RunParams:
    prompt = limits.check_prompt(prompt)
    target = limits.check_model_id(target or limits.default_target(), "target")
    drafter_name = resolve_drafter(drafter, custom_drafter)
    if mode not in ("multimodal", "text-only"):
        raise InputError(f"drafter mode must be 'multimodal' or 'text-only', got {mode!r}")
    if dtype not in ("float32", "bfloat16"):
        raise InputError(f"precision must be float32 or bfloat16, got {dtype!r}")
    if strategy not in CHOICES:
        raise InputError(f"strategy must be one of {', '.join(CHOICES)}, got {strategy!r}")
    gamma = limits.check_int("gamma (draft length)", gamma, 1, 16)
    spec = spec_for(strategy, None if strategy == "auto" else gamma,   # auto: up to AUTO_CAP, per step
                    branching=limits.parse_branching(branching),
                    depth=limits.check_int("depth", depth, 1, 12),
                    top_k=limits.check_int("top-k (expansions per depth)", top_k, 1, 16),
                    budget=limits.check_int("node budget", budget, 1, 256))
    sampling = SamplingConfig(temperature=limits.check_float("temperature", temperature, 0.0, 2.0),
                              top_p=limits.check_float("top-p", top_p, 0.0, 1.0, lo_open=True),
                              seed=limits.check_int("seed", seed, 0, 2**31 - 1))
    max_new = limits.check_int("max new tokens", max_new_tokens, 1, limits.MAX_NEW_TOKENS)
    img = read_image(image)
    return RunParams(prompt, img, target, drafter_name, mode, dtype, spec, sampling, max_new)


def drafter_display(name: str | None, pair) -> str:
    """A short drafter name for the page: the registry name rather than a local path."""
    full = getattr(pair.drafter, "name", None) or str(name)
    if name in api.SHIPPED_DRAFTERS or ("/" in full and full.split(" ")[0].startswith(str(api.ROOT))):
        return f"the {name} drafter"
    return full


_warmed: set = set()


def _warm(pair, p: RunParams) -> None:
    """First use of a pair: a few tokens of each kind, so one-off costs stay out of the timing."""
    key = (pair.target_name, p.drafter, p.mode, p.dtype)
    if key in _warmed:
        return
    n = min(8, p.max_new_tokens)
    api.run(pair, p.prompt, p.image, p.spec, p.sampling, n, speculative=False, detail=False)
    if pair.drafter is not None:
        api.run(pair, p.prompt, p.image, p.spec, p.sampling, n, detail=False)
    _warmed.add(key)


# ====================================================================== live decoding
class _Live:
    """Run the engine in a worker thread and hand the generator a snapshot every LIVE_EVERY s."""

    def __init__(self, target_adapter):
        self.target = target_adapter
        self.vocab: dict[str, str] = {}

    def piece_all(self, ids) -> None:
        for i in ids:
            k = str(i)
            if k not in self.vocab:
                try:
                    self.vocab[k] = self.target.decode_piece(int(i))
                except Exception:  # noqa: BLE001
                    self.vocab[k] = f"<{i}>"

    def snapshot(self, tr: Trace) -> Trace:
        steps = list(tr.steps)
        out = list(tr.output)
        snap = Trace(meta=dict(tr.meta), prompt_tokens=tr.prompt_tokens, first_token=tr.first_token,
                     steps=steps, output=out, vocab=self.vocab)
        self.piece_all(out)
        if steps:
            self.piece_all(steps[-1].tokens)
            self.piece_all([steps[-1].token])
        return snap

    def run(self, pair, p: RunParams, stop, speculative: bool):
        """Generator: yields snapshots while decoding; returns the finished Trace.
        ``stop``: a threading.Event or a ``should_stop`` callable (e.g. a Deadline)."""
        box: dict = {"trace": None, "n": 0, "error": None, "result": None}
        should_stop = stop.is_set if isinstance(stop, threading.Event) else stop

        def on_step(tr):
            box["trace"] = tr
            box["n"] += 1

        def work():
            try:
                box["result"] = api.run(pair, p.prompt, p.image, p.spec, p.sampling, p.max_new_tokens,
                                        speculative=speculative, on_step=on_step, should_stop=should_stop,
                                        meta=p.meta())
            except BaseException as e:  # noqa: BLE001  (re-raised in the handler thread)
                box["error"] = e

        th = threading.Thread(target=work, name="specscope-decode", daemon=True)
        th.start()
        shown = 0
        while th.is_alive():
            th.join(LIVE_EVERY)
            if box["trace"] is not None and box["n"] != shown and th.is_alive():
                shown = box["n"]
                yield self.snapshot(box["trace"])
        if box["error"] is not None:
            raise box["error"]
        return box["result"]


# ====================================================================== rendering a finished trace
def ar_from_meta(tr: Trace) -> Trace | None:
    d = (tr.meta or {}).get("ar_baseline")
    if not isinstance(d, dict) or not isinstance(d.get("output"), list):
        return None
    try:
        return Trace(output=[int(x) for x in d["output"]], wall_s=float(d.get("wall_s", 0.0)),
                     text=str(d.get("text", "")), meta={"strategy": "ar"})
    except (TypeError, ValueError):
        return None


def step_slider_update(tr: Trace, value: int | None = None):
    n = len(tr.steps)
    v = n if value is None else min(max(int(value), 1), max(n, 1))
    return gr.update(minimum=1, maximum=max(n, 2), value=v, visible=n > 0,
                     label=f"Step (1 to {n}): drag to revisit any step's draft tree" if n else "Step")


def full_views(tr: Trace, ar: Trace | None) -> dict:
    """Every view of a finished trace (Run tab and Trace viewer share it)."""
    s = tr.summary()
    views = {
        "answer": render.highlighted_tokens(tr),
        "tree": render.tree_figure(tr, len(tr.steps) - 1),
        "step": step_slider_update(tr),
        "summary": render.summary_markdown(tr, ar),
        "time_fig": render.time_figure(tr),
        "acc_fig": render.accept_length_figure(tr),
        "depth_fig": render.depth_figure(tr),
        "steps_html": render.rejected_html(tr, max_rows=400),
    }
    spec_label = f"{'Speculative' if tr.steps and any(st.tokens for st in tr.steps) else 'This run'} · " \
                 f"{s['tokens_per_s']:.1f} tokens/s · {s['target_forwards']} target forwards"
    views["spec_text"] = gr.update(value=tr.text, label=spec_label)
    if ar is not None:
        a = ar.summary()
        views["ar_text"] = gr.update(value=ar.text, label=f"Plain autoregressive · {a['tokens_per_s']:.1f} tokens/s"
                                                          f" · {a['new_tokens']} target forwards")
    else:
        views["ar_text"] = gr.update(value="", label="Plain autoregressive (baseline not run)")
    return views


def differs_note(temperature: float, dtype) -> str:
    """Why a speculative output can differ from plain decoding's (shown next to "differs")."""
    if temperature > 0:
        return "sampling: only the distributions match, so the texts may differ"
    if str(dtype).replace("torch.", "") in ("bfloat16", "float16"):
        return ("low precision: a many-token verify rounds differently from a one-token step, "
                "which can flip a near-tie; choose float32 for token-identical output")
    return "a near-tie in the target's logits rounded differently (float32); please report it"


def result_payload(tr: Trace, ar: Trace | None, path: str | None) -> dict:
    out = api.result_json(tr)
    out["meta"] = {k: v for k, v in tr.meta.items() if k != "ar_baseline"}
    if ar is not None:
        same, where = render.outputs_identical(tr, ar)
        out["ar"] = {"text": ar.text, "tokens_per_s": ar.summary()["tokens_per_s"], "wall_s": round(ar.wall_s, 6)}
        out["speedup"] = round(ar.wall_s / tr.wall_s, 4) if tr.wall_s > 0 else None
        out["identical"] = same
        out["first_difference"] = where
    out["trace_file"] = path
    return out


def save_trace(tr: Trace) -> str:
    TRACE_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in TRACE_DIR.glob("specscope-trace-*.json"):   # keep the temp folder small
        try:
            if now - old.stat().st_mtime > 3600:
                old.unlink()
        except OSError:
            pass
    path = TRACE_DIR / f"specscope-trace-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
    path.write_text(tr.to_json())
    return str(path)


# ====================================================================== Run tab handler
RUN_KEYS = ("status", "answer", "tree", "step", "spec_text", "ar_text", "summary", "time_fig", "acc_fig",
            "depth_fig", "steps_html", "download", "result", "state")


_APP: dict = {}   # the Blocks built by build_app()


def _prune_session(request) -> None:
    """Work around a Gradio 6.31 leak: an output skipped (``gr.skip()``) in one yield and given a
    value in a later one is re-registered in the visitor's session under a NEW block id, one
    component copy per output per request (~0.13 MB/request, measured with scripts/soak.py).
    Entries whose ids are not blocks of the app are dropped at the start of the visitor's next
    request; the live copies stay under the app's ids."""
    demo = _APP.get("demo")
    sid = getattr(request, "session_hash", None)
    if demo is None or not sid or sid not in demo.state_holder:
        return
    try:
        state = demo.state_holder.session_data[sid]
        for key in [k for k in state.blocks_config.blocks if k not in demo.blocks]:
            state.blocks_config.blocks.pop(key, None)
            state.config_values.pop(key, None)
    except Exception:  # noqa: BLE001  internal layout changed: never fail a request over this
        log.debug("session pruning skipped", exc_info=True)


def _pack(keys, **kw):
    return tuple(kw[k] if k in kw else gr.skip() for k in keys)


@gpu
def run_decoding(image, prompt, target, drafter, custom_drafter, mode, dtype, strategy, gamma, branching,
                 depth, top_k, budget, temperature, top_p, max_new_tokens, seed, ar_baseline,
                 request: gr.Request = None):
    """Decode once (live), then optionally the same input autoregressively for the speedup."""
    _prune_session(request)
    out = lambda **kw: _pack(RUN_KEYS, **kw)  # noqa: E731
    stop = _new_stop(request)
    try:
        p = parse_params(image, prompt, target, drafter, custom_drafter, mode, dtype, strategy, gamma,
                         branching, depth, top_k, budget, temperature, top_p, max_new_tokens, seed)
        yield out(status=status_html("Loading the models (the first use takes a few seconds)…", "busy"))
        t0 = time.perf_counter()
        pair = api.load_pair(p.target, p.drafter, dtype=p.dtype, mode=p.mode)
        if time.perf_counter() - t0 > 0.5:
            log.info("loaded %s + %s in %.1f s", p.target, p.drafter, time.perf_counter() - t0)
        speculative = pair.drafter is not None
        if ar_baseline or speculative:
            yield out(status=status_html("Warming up (one-off costs are kept out of the timings)…", "busy"))
            _warm(pair, p)
        shape = {"chain": f"chain, γ={p.spec.gamma}", "tree": "static tree " + ",".join(map(str, p.spec.branching)),
                 "dynamic": f"dynamic tree, depth {p.spec.depth}, top-{p.spec.top_k}, {p.spec.budget} nodes"}
        if p.spec.adaptive:
            shape["chain"] = f"auto: a chain of 0-{p.spec.gamma} tokens per step, sized by the measured costs"
        who = _esc(drafter_display(p.drafter, pair))
        what = (f"Speculative decoding with <b>{who}</b> ({shape[p.spec.strategy]})"
                if speculative else "Plain autoregressive decoding (no drafter)")
        yield out(status=status_html(f"{what}: decoding…", "busy"), answer=[], ar_text=gr.update(value=""),
                  spec_text=gr.update(value=""))

        live = _Live(pair.target)
        limit = Deadline(stop)           # covers both decoding passes of this request
        gen = live.run(pair, p, limit, speculative)
        last_tree = 0.0
        while True:
            try:
                snap = next(gen)
            except StopIteration as fin:
                tr = fin.value
                break
            n = len(snap.steps)
            extra = {}
            if time.monotonic() - last_tree >= TREE_EVERY:
                last_tree = time.monotonic()
                extra = dict(tree=render.tree_figure(snap, n - 1), step=step_slider_update(snap))
            yield out(status=status_html(f"{what}: {len(snap.output)} tokens after {n} target "
                                         f"forward{'s' if n != 1 else ''}…", "busy"),
                      answer=render.highlighted_tokens(snap), **extra)

        ar = None
        timed_out = tr.stop_reason == "cancelled" and limit.hit
        if timed_out:
            tr.stop_reason = "time_limit"
        cancelled = tr.stop_reason == "cancelled"
        baseline_cut = False
        if ar_baseline and speculative and not cancelled and not timed_out:
            yield out(status=status_html("Now the same input with plain autoregressive decoding "
                                         "(the baseline for the speedup)…", "busy"),
                      **{k: v for k, v in full_views(tr, None).items() if k != "ar_text"},
                      ar_text=gr.update(value="", label="Plain autoregressive · decoding…"))
            gen = _Live(pair.target).run(pair, p, limit, False)
            while True:
                try:
                    snap = next(gen)
                except StopIteration as fin:
                    ar = fin.value
                    break
                yield out(ar_text=gr.update(value=pair.target.decode(snap.output),
                                            label=f"Plain autoregressive · {len(snap.output)} tokens so far…"))
            if ar is not None and ar.stop_reason == "cancelled":
                baseline_cut = limit.hit
                ar = None
        if ar is not None:
            tr.meta["ar_baseline"] = {"output": list(ar.output), "wall_s": round(ar.wall_s, 6), "text": ar.text,
                                      "stop_reason": ar.stop_reason}
        path = save_trace(tr)
        views = full_views(tr, ar)
        sm = tr.summary()
        msg = f"Done: {sm['new_tokens']} tokens in {sm['wall_s']:.2f} s, τ = {sm['tau']:.2f} tokens per target forward"
        if ar is not None and tr.wall_s > 0:
            same, _ = render.outputs_identical(tr, ar)
            msg += (f"; <b>{ar.wall_s / tr.wall_s:.2f}× speedup</b> over plain decoding, output "
                    f"{'identical ✓' if same else 'differs (' + _esc(differs_note(p.sampling.temperature, pair.target.dtype)) + ')'}")
        if p.spec.adaptive and tr.steps:
            lens = [len(st.tokens) for st in tr.steps]
            msg += (f"; auto drafted {sum(lens) / len(lens):.1f} tokens per step on average "
                    f"({min(lens)}-{max(lens)}; {sum(1 for n in lens if n == 0)} plain steps)")
        if cancelled:
            msg = f"Stopped by you after {sm['new_tokens']} tokens. Everything decoded so far is shown"
        elif timed_out:
            msg = f"{limit.message()}: stopped after {sm['new_tokens']} tokens. Everything decoded so far is shown"
        elif baseline_cut:
            msg += (f". {limit.message()}: the plain-decoding baseline was cut short, so no speedup is shown")
        warn = cancelled or timed_out or baseline_cut
        yield out(status=status_html(msg + ".", "warn" if warn else "ok"), **views,
                  download=path,
                  result=result_payload(tr, ar, path), state=tr)
    except EXPECTED as e:
        msg = _friendly(e) + _fallback_hint(e, target)
        gr.Warning(msg)
        yield out(status=status_html(_esc(msg), "err"))
    except Exception:  # noqa: BLE001
        log.exception("run failed")
        gr.Warning(GENERIC_ERROR)
        yield out(status=status_html(GENERIC_ERROR, "err"))
    finally:             # also when the page goes away mid-run: stop the worker thread
        stop.set()
        _end_stop(request, stop)


def show_step(tr, step):
    """Re-draw the draft tree of step ``step`` (1-based) of the stored trace."""
    if not isinstance(tr, Trace) or not tr.steps:
        return gr.skip()
    try:
        k = limits.check_int("step", step, 1, len(tr.steps))
    except InputError:
        return gr.skip()
    return render.tree_figure(tr, k - 1)


def nudge_step(tr, step, delta: int):
    if not isinstance(tr, Trace) or not tr.steps:
        return gr.skip(), gr.skip()
    try:
        k = int(step) + delta
    except (TypeError, ValueError):
        k = len(tr.steps)
    k = min(max(k, 1), len(tr.steps))
    return gr.update(value=k), render.tree_figure(tr, k - 1)


# ====================================================================== Compare tab
@dataclass(frozen=True)
class CompareConfig:
    label: str
    drafter: str
    spec: DraftSpec
    mode: str = "multimodal"


def default_shapes() -> tuple[DraftSpec, DraftSpec]:
    """(chain, dynamic) defaults: what ``python -m core.tune`` measured fastest on this machine for
    the default pair, else ``core.tune``'s defaults: gamma 6 and depth 8 / top-4 / 20 nodes (sized
    for CPUs: a verify forward costs more per token there than on a GPU)."""
    tgt, d = limits.default_target(), presets.default_drafter()
    return tuned_spec(tgt, d, "chain"), tuned_spec(tgt, d, "dynamic")


def compare_configs() -> list[CompareConfig]:
    chain, tree, dyn = DraftSpec("chain", gamma=4), DraftSpec("tree", branching=(3, 2, 2, 1)), default_shapes()[1]
    out = [CompareConfig("n-gram · chain γ=4", "ngram", chain),
           CompareConfig("LayerSkip · chain γ=4", "layerskip", chain),
           CompareConfig("LayerSkip · static tree 3,2,2,1", "layerskip", tree),
           CompareConfig("LayerSkip · dynamic tree", "layerskip", dyn)]
    for name, nice in (("msd", "MSD"), ("small-vlm", "small VLM"), ("massv", "MASSV"), ("text-lm", "text LM")):
        out.append(CompareConfig(f"{nice} · chain γ=4", name, chain))
        out.append(CompareConfig(f"{nice} · dynamic tree", name, dyn))
    return out


def compare_choices() -> list[tuple[str, str]]:
    """(shown label, value) per configuration; untrained shipped drafters are marked."""
    return [(c.label + ("" if c.drafter not in api.SHIPPED_DRAFTERS or presets.shipped_available(c.drafter)
                        else " (not trained yet)"), c.label) for c in compare_configs()]


def default_compare_selection() -> list[str]:
    cfgs = compare_configs()
    keep = [cfgs[0].label, cfgs[1].label, cfgs[3].label]
    best = presets.default_drafter()
    if best != "layerskip":
        keep += [c.label for c in cfgs if c.drafter == best]
    return keep


def refresh_choices():
    """On page load: drafters trained since the app started lose their "(not trained yet)" mark."""
    return (gr.update(choices=presets.drafter_choices()),
            gr.update(choices=[c for c in presets.drafter_choices() if c[1] not in ("none", "custom")]),
            gr.update(choices=compare_choices()))


COMPARE_COLUMNS = ["configuration", "τ", "accepted / step", "tokens/s", "plain tokens/s", "speedup", "identical",
                   "note"]


@gpu
def run_compare(image, prompt, target, dtype, configs, max_new_tokens, temperature,
                request: gr.Request = None):
    """Decode the same input with each selected configuration (plus plain decoding each time)."""
    _prune_session(request)
    stop = _new_stop(request)
    rows: list[list] = []
    fig_rows: list[dict] = []
    try:
        prompt = limits.check_prompt(prompt)
        target = limits.check_model_id(target or limits.default_target(), "target")
        if dtype not in ("float32", "bfloat16"):
            raise InputError(f"precision must be float32 or bfloat16, got {dtype!r}")
        max_new = limits.check_int("max new tokens", max_new_tokens, 1, limits.MAX_NEW_TOKENS)
        temp = limits.check_float("temperature", temperature, 0.0, 2.0)
        if isinstance(configs, str):
            configs = [configs]
        configs = [str(c) for c in (configs or [])]
        if not configs:
            raise InputError("tick at least one configuration to compare")
        if len(configs) > limits.MAX_COMPARE_CONFIGS:
            raise InputError(f"at most {limits.MAX_COMPARE_CONFIGS} configurations at once")
        by_label = {c.label: c for c in compare_configs()}
        chosen = []
        for c in configs:
            key = c.replace(" (not trained yet)", "")
            if key not in by_label:
                raise InputError(f"unknown configuration {c!r}")
            chosen.append(by_label[key])
        img = read_image(image)
        sampling = SamplingConfig(temperature=temp, seed=0)
        yield (status_html("Loading the target…", "busy"), gr.skip(), gr.skip())
        limit = Deadline(stop)           # one time limit for all configurations of this request
        for i, cfg in enumerate(chosen):
            if limit():
                break
            yield (status_html(f"Configuration {i + 1} of {len(chosen)}: <b>{_esc(cfg.label)}</b> "
                               "(plain decoding, then speculative)…", "busy"), gr.skip(), gr.skip())
            try:
                pair = api.load_pair(target, cfg.drafter, dtype=dtype, mode=cfg.mode)
                res = api.compare(pair, prompt, img, cfg.spec, sampling, max_new, should_stop=limit,
                                  meta={"temperature": temp})
            except EXPECTED as e:
                rows.append([cfg.label, None, None, None, None, None, "", _friendly(e)])
                continue
            sp, ar = res["spec"], res["ar"]
            if sp.stop_reason == "cancelled" or ar.stop_reason == "cancelled":
                break
            s, a = sp.summary(), ar.summary()
            note = "" if res["identical"] else differs_note(temp, pair.target.dtype)
            rows.append([cfg.label, round(s["tau"], 2), round(s["accepted_per_step"], 2), round(s["tokens_per_s"], 1),
                         round(a["tokens_per_s"], 1), round(res["speedup"], 2),
                         "✓ yes" if res["identical"] else "✗ no", note])
            fig_rows.append({"config": cfg.label, "tau": s["tau"], "speedup": res["speedup"],
                             "tokens_per_s": s["tokens_per_s"], "identical": res["identical"]})
            yield (gr.skip(), rows, render.compare_figure(fig_rows))
        done = "Stopped." if stop.is_set() else f"{limit.message()}." if limit.hit else "Done."
        yield (status_html(f"{done} {len(fig_rows)} configuration(s) measured on the same input. "
                           "Speedup = plain wall time / speculative wall time, each measured warm.",
                           "warn" if stop.is_set() or limit.hit else "ok"), rows, render.compare_figure(fig_rows))
    except EXPECTED as e:
        msg = _friendly(e) + _fallback_hint(e, target)
        gr.Warning(msg)
        yield (status_html(_esc(msg), "err"), gr.skip(), gr.skip())
    except Exception:  # noqa: BLE001
        log.exception("compare failed")
        gr.Warning(GENERIC_ERROR)
        yield (status_html(GENERIC_ERROR, "err"), gr.skip(), gr.skip())
    finally:             # also when the page goes away mid-run: stop the worker thread
        stop.set()
        _end_stop(request, stop)


# ====================================================================== Teach tab
TEACH_SHAPES = {"chain": DraftSpec("chain", gamma=4), "tree": DraftSpec("tree", branching=(2, 2, 1))}


def _q(tr: Trace, toks) -> str:
    text = "".join(render.piece(tr, t) for t in toks)
    return f'<span class="q">{_esc(text)}</span>'


def _children(s) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for i, par in enumerate(s.parents):
        kids.setdefault(par, []).append(i)
    return kids


def explain_step(tr: Trace, k: int) -> str:
    """Plain-language account of step ``k`` (0-based) of a trace: draft, verify, accept/reject, add."""
    s = tr.steps[k]
    n, m = len(s.tokens), len(s.accepted)
    kids = _children(s)
    fav, node = [], -1                         # the drafter's favourite path: most likely child each time
    while kids.get(node):
        node = max(kids[node], key=lambda i: s.q[i])
        fav.append(node)
    items = []
    if n == 0:
        items.append("<b>Draft:</b> the drafter had no guess this time.")
        items.append("<b>Verify:</b> the target simply took one ordinary step.")
    else:
        depth = max(s.depths)
        if len(fav) == n:
            items.append(f"<b>Draft:</b> the drafter guessed the next {n} token{'s' if n > 1 else ''}: "
                         f"{_q(tr, [s.tokens[i] for i in fav])}.")
        else:
            items.append(f"<b>Draft:</b> the drafter proposed a tree of {n} candidate tokens, up to {depth} deep. "
                         f"Its favourite path: {_q(tr, [s.tokens[i] for i in fav])}.")
        items.append("<b>Verify:</b> the target checked all of them in <b>one</b> forward pass.")
        last = s.accepted[-1] if s.accepted else -1
        refused = [i for i in kids.get(last, []) if i in set(s.rejected)]
        refused.sort(key=lambda i: -s.q[i])
        if m == 0:
            what = (f"{_q(tr, [s.tokens[refused[0]]])}" if len(refused) == 1 else
                    ", ".join(_q(tr, [s.tokens[i]]) for i in refused[:4]) + (" …" if len(refused) > 4 else ""))
            items.append(f"<b>Reject:</b> it disagreed right away: {what} "
                         f"{'was' if len(refused) == 1 else 'were'} rejected"
                         f"{', so nothing below was even checked' if n > len(refused) else ''}.")
        elif s.kind == "bonus":
            items.append(f"<b>Accept:</b> it agreed with the whole path {_q(tr, [s.tokens[i] for i in s.accepted])}"
                         f" ({m} token{'s' if m > 1 else ''}).")
        else:
            rej = (f"rejected {_q(tr, [s.tokens[refused[0]]])}" if refused else "rejected the rest")
            items.append(f"<b>Accept / reject:</b> it agreed with {_q(tr, [s.tokens[i] for i in s.accepted])} "
                         f"({m} token{'s' if m > 1 else ''}) and {rej}.")
    if s.kind == "bonus" and n:
        items.append(f"<b>Bonus:</b> because every checked guess was right, the same forward pass also gives "
                     f"the next token for free: {_q(tr, [s.token])}.")
    elif s.kind == "bonus":
        items.append(f"<b>Result:</b> the target wrote {_q(tr, [s.token])}.")
    else:
        items.append(f"<b>Correction:</b> in place of the rejected guess the target wrote its own token "
                     f"{_q(tr, [s.token])}.")
    committed = len(s.committed)
    total = 1 + sum(len(x.committed) for x in tr.steps[: k + 1])
    fwd = k + 2
    tally = (f"This step: {committed} new token{'s' if committed != 1 else ''} for one target forward. "
             f"So far: {total} tokens in {fwd} forwards = {total / fwd:.2f} tokens per forward "
             f"(plain decoding: 1.00).")
    if committed < m + 1:
        tally += " The answer ends here."
    return ('<div class="ss-explain"><ol>' + "".join(f"<li>{x}</li>" for x in items) + "</ol>"
            f'<div class="tally">{tally}</div></div>')


def explain_prefill(tr: Trace) -> str:
    first = _q(tr, [tr.first_token]) if tr.first_token is not None else "nothing"
    n = len(tr.steps)
    return ('<div class="ss-explain"><ol>'
            f"<li><b>Prefill:</b> the target read your prompt and the picture ({tr.prompt_tokens} tokens, "
            "image patches included) in one forward pass.</li>"
            f"<li>It chose the first token of the answer: {first}.</li>"
            "<li>From here on every step is the same: the drafter <b>guesses</b> a few tokens, the target "
            "<b>checks</b> them all at once, keeps the good ones and adds one of its own.</li></ol>"
            f'<div class="tally">{n} step{"s" if n != 1 else ""} to go. Press <b>Next ▶</b>.</div></div>')


def teach_text_html(tr: Trace, k: int) -> str:
    """The answer so far (steps < k plain), step k's tokens coloured, a rejected guess struck through."""
    origins = tr.token_origins()
    parts = []
    for tok, origin, step in origins:
        if step > k - 1:
            break
        txt = _esc(render.piece(tr, tok))
        if step == k - 1 or (k == 0 and step == -1):
            parts.append(f'<span class="tk {origin}">{txt}</span>')
        else:
            parts.append(f'<span class="old">{txt}</span>')
    if k >= 1:
        s = tr.steps[k - 1]
        if s.kind == "correction":
            kids = _children(s)
            last = s.accepted[-1] if s.accepted else -1
            refused = sorted((i for i in kids.get(last, []) if i in set(s.rejected)), key=lambda i: -s.q[i])
            if refused:
                # show the refused guess just before the correction token
                strike = f'<span class="tk rejected">{_esc(render.piece(tr, s.tokens[refused[0]]))}</span>'
                for j in range(len(parts) - 1, -1, -1):
                    if 'class="tk correction"' in parts[j]:
                        parts.insert(j, strike)
                        break
    body = "".join(parts) or '<span class="old">(nothing yet)</span>'
    return f'<div class="ss-teach-text">{body}</div>'


TEACH_KEYS = ("status", "progress", "tree", "text", "explain", "index", "state")


def _projector(fig, scale: float = 1.25):
    """Larger node labels and title for the Teach tab (read from the back of a room)."""
    try:
        for a in fig.layout.annotations:
            if a.font is not None and a.font.size:
                a.font.size = round(a.font.size * scale)
        fig.layout.title.font.size = 20
        fig.layout.legend.font.size = 15
    except Exception:  # noqa: BLE001  cosmetic only
        log.debug("could not enlarge the tree figure", exc_info=True)
    return fig


def teach_view(tr: Trace, k: int, status: str | None = None):
    n = len(tr.steps)
    k = min(max(int(k), 0), n)
    if k == 0:
        tree = render._placeholder("Press Next ▶ to see the first draft tree", 380)
        progress = f'<div class="ss-teach-progress">Start · the prompt is read ({n} steps follow)</div>'
        explain = explain_prefill(tr)
    else:
        tree = _projector(render.tree_figure(tr, k - 1))
        progress = f'<div class="ss-teach-progress">Step {k} of {n}</div>'
        explain = explain_step(tr, k - 1)
    return _pack(TEACH_KEYS, status=status if status is not None else gr.skip(), progress=progress, tree=tree,
                 text=teach_text_html(tr, k), explain=explain, index=k)


@gpu
def teach_start(image, prompt, drafter, shape, request: gr.Request = None):
    """Decode once (greedy) on the default model and show the prefill; then walk with teach_step."""
    _prune_session(request)
    stop = _new_stop(request)
    try:
        prompt = limits.check_prompt(prompt)
        drafter_name = resolve_drafter(drafter, None) if drafter != "custom" else None
        if drafter_name is None:
            raise InputError("teach mode needs a drafter (n-gram, LayerSkip or a trained drafter)")
        if shape not in TEACH_SHAPES:
            raise InputError(f"draft shape must be one of {', '.join(TEACH_SHAPES)}, got {shape!r}")
        img = read_image(image)
        pair = api.load_pair(limits.default_target(), drafter_name)
        tr = api.run(pair, prompt, img, TEACH_SHAPES[shape], SamplingConfig(temperature=0.0), 48,
                     should_stop=stop.is_set, meta={"temperature": 0.0, "prompt": prompt, "teach": True})
        msg = (f"Decoded {len(tr.output)} tokens in {len(tr.steps)} steps with "
               f"{_esc(drafter_display(drafter_name, pair))}. "
               "Walk through them with <b>Next ▶</b>.")
        return (*teach_view(tr, 0, status_html(msg, "ok"))[:-1], tr)
    except EXPECTED as e:
        gr.Warning(_friendly(e))
        return _pack(TEACH_KEYS, status=status_html(_esc(_friendly(e)), "err"))
    except Exception:  # noqa: BLE001
        log.exception("teach failed")
        gr.Warning(GENERIC_ERROR)
        return _pack(TEACH_KEYS, status=status_html(GENERIC_ERROR, "err"))
    finally:             # also when the page goes away mid-run: stop the worker thread
        stop.set()
        _end_stop(request, stop)


def teach_step(tr, step):
    """Show step ``step`` of the stored teach run (0 = the prefill)."""
    if not isinstance(tr, Trace):
        return _pack(TEACH_KEYS, status=status_html("Press <b>Start</b> first: it decodes the answer once, "
                                                    "then you walk through it.", "warn"))
    try:
        k = limits.check_int("step", step, 0, len(tr.steps))
    except InputError as e:
        return _pack(TEACH_KEYS, status=status_html(_esc(_friendly(e)), "err"))
    return teach_view(tr, k)


def teach_next(tr, idx):
    return teach_step(tr, (int(idx or 0) + 1) if isinstance(tr, Trace) and int(idx or 0) < len(tr.steps)
                      else int(idx or 0))


def teach_prev(tr, idx):
    return teach_step(tr, max(int(idx or 0) - 1, 0))


# ====================================================================== Trace viewer
TV_KEYS = ("status", "answer", "tree", "step", "summary", "time_fig", "acc_fig", "depth_fig", "steps_html",
           "state")


def _trace_text(file) -> str:
    if file is None:
        raise InputError("choose a trace file (.json) saved from the Run tab")
    if isinstance(file, dict):
        path = file.get("path")
    else:
        path = file if isinstance(file, str) else getattr(file, "name", None)
    if not path or not Path(path).is_file():
        raise InputError("the uploaded trace file could not be read")
    if Path(path).stat().st_size > limits.MAX_TRACE_BYTES:
        raise InputError(f"trace file too large (limit {limits.MAX_TRACE_BYTES // 2**20} MB)")
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("this is not a SpecScope trace: the file is not UTF-8 JSON text") from None


def render_trace(tr: Trace, source: str):
    views = full_views(tr, ar_from_meta(tr))
    s = tr.summary()
    m = tr.meta or {}
    who = f"{m.get('target', '?')}" + (f" with {m['drafter']}" if m.get("drafter") else " (no drafter)")
    msg = (f"Loaded {_esc(source)}: {s['new_tokens']} tokens, {len(tr.steps)} steps, τ = {s['tau']:.2f}. "
           f"Model: {_esc(who)}.")
    if m.get("prompt"):
        msg += f" Prompt: “{_esc(str(m['prompt'])[:200])}”."
    return _pack(TV_KEYS, status=status_html(msg, "ok"), state=tr,
                 **{k: v for k, v in views.items() if k in TV_KEYS})


def load_trace(file):
    """Re-render every view from a saved trace JSON; no model needed."""
    try:
        text = _trace_text(file)
        tr = Trace.from_json(text)
        if not isinstance(tr.steps, list) or not isinstance(tr.output, list):
            raise ValueError("not a SpecScope trace: steps / output are not lists")
        try:
            return render_trace(tr, "the trace")
        except Exception as e:  # noqa: BLE001  a schema-valid file with inconsistent content
            log.info("inconsistent trace: %r", e)
            raise InputError("this trace file is damaged: its steps are inconsistent "
                             f"({type(e).__name__}); nothing was loaded") from None
    except EXPECTED as e:
        gr.Warning(_friendly(e))
        return _pack(TV_KEYS, status=status_html(_esc(_friendly(e)), "err"))
    except Exception:  # noqa: BLE001
        log.exception("load_trace failed")
        return _pack(TV_KEYS, status=status_html(GENERIC_ERROR, "err"))


def load_synthetic():
    from .synthetic import synthetic_trace
    tr = synthetic_trace(n_steps=24, seed=3, strategy="dynamic")
    ar = synthetic_trace(max_new_tokens=len(tr.output), seed=3, strategy="ar")
    tr.meta["ar_baseline"] = {"output": list(ar.output), "wall_s": ar.wall_s, "text": ar.text}
    return render_trace(tr, "a synthetic example trace (made up, no model)")


# ====================================================================== presets
def apply_preset(key):
    """Fill the model fields from a preset; a preset that cannot run here falls back to the default."""
    try:
        p = presets.get(key)
    except KeyError:     # "custom"
        return (gr.skip(),) * 6 + (status_html("Type a target (Hub id or model folder) and a drafter below.", ""),)
    problem = presets.check_loadable(p)
    if problem:
        problem = problem.replace("**", "")
        gr.Warning(problem)
        d = presets.get("default")
        return ("default", d.target, d.drafter, "", d.mode, d.dtype, status_html(_esc(problem), "warn"))
    if p.key == "default":
        return (gr.skip(), p.target, p.drafter, "", p.mode, p.dtype, status_html(_esc(p.note), ""))
    note = status_html(_esc(p.note) + " Press <b>Run</b> to load it.", "")
    return (gr.skip(), p.target, "custom", p.drafter, p.mode, p.dtype, note)


# ====================================================================== About
ABOUT = """
### What you are looking at

**Speculative decoding** speeds up text generation without changing it. A cheap **drafter** proposes the next
few tokens (a *chain*, or a *tree* of alternatives); the expensive **target** model scores all of them in a single
forward pass, keeps the longest prefix it agrees with, and adds one token of its own. With greedy decoding
(temperature 0) the output is *identical* to what the target produces alone; with sampling, a rejection rule
keeps the output *distribution* identical.

**Colours** (the same everywhere):

| colour | meaning |
|---|---|
| 🟩 green | accepted draft token (the target agreed) |
| 🟦 blue | *bonus* token: the target's own token after a fully accepted draft |
| 🟧 orange | *correction*: the target's token in place of a rejected draft |
| 🟥 red | rejected draft token (in the tree) |
| ⬜ grey | drafted below a rejected token: never checked |
| ⬛ slate | the root (last committed token) / the first token from the prefill |

**Numbers**

* **τ, tokens per target forward (incl. bonus)**: new tokens / target forwards (the prefill counts as one). Plain decoding has τ = 1.
* **accepted draft tokens per step (excl. bonus)**: how many drafted tokens survive verification on average.
* **speedup**: wall time of plain autoregressive decoding / wall time of speculative decoding, same target, same input, both measured warm.
* **identical**: at temperature 0 the two outputs must match token for token (they do, unless low-precision arithmetic rounds a near-tie differently).

**Drafters** (drop-down on the Run tab)

* *n-gram*: copies continuations seen earlier in the prompt / answer; free, no model.
* *LayerSkip*: the target's own first layers + its output head (self-speculation).
* *MSD* (arXiv 2505.14260): an EAGLE-style one-layer head fed with the target's hidden states; image tokens are treated separately from text.
* *MASSV* (arXiv 2505.10526): a small LM given the target's vision encoder through a trained projector.
* *small VLM* (Spec-LLaVA, arXiv 2509.11961): a complete tiny VLM that reads the image itself; pairs well with a dynamic tree.
* *text LM*: a small text-only model that never sees the image.

**Draft shapes**: *chain* (γ tokens in a row), *static tree* (e.g. `3,2,2,1` children per depth) and *dynamic tree*
(EAGLE-2 style: expand the `top-k` best nodes at each of `depth` levels, keep the `budget` most likely nodes).

**Traces**: every run can be downloaded as JSON and re-opened in the *Trace viewer* without any model.

**Privacy**: images and prompts stay on the machine running this app; traces are written to its temp folder and
deleted after an hour.
"""


# ====================================================================== the Blocks
def build_app() -> gr.Blocks:
    examples = load_examples()
    ex_rows = [[e["path"], e["prompt"]] for e in examples]
    first = examples[0] if examples else None
    drafter_default = presets.default_drafter()
    chain_default, dyn_default = default_shapes()
    preset_list = presets.choices()

    with gr.Blocks(title="SpecScope: speculative decoding for VLMs", delete_cache=(3600, 3600)) as demo:
        gr.HTML(HEADER)
        model_bar = gr.HTML(WARMUP.html())
        timer = gr.Timer(1.5, active=True)

        with gr.Tabs():
            # ---------------------------------------------------------------- Run
            with gr.Tab("Run", id="run"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=340):
                        image = SafeImage(type="filepath", label="Image", height=240, elem_id="ss-image",
                                          value=first["path"] if first else None, sources=["upload", "clipboard"])
                        prompt = gr.Textbox(label="Prompt", lines=2, max_lines=8,
                                            value=first["prompt"] if first else "Describe the image in detail.",
                                            placeholder="Ask something about the image…")
                        drafter = gr.Dropdown(presets.drafter_choices(), value=drafter_default, label="Drafter")
                        strategy = gr.Radio(STRATEGY_CHOICES, value="auto", label="Draft shape",
                                            info="auto: each step's draft length chosen from this machine's "
                                                 "measured costs and the drafter's confidence")
                        with gr.Row():
                            run_btn = gr.Button("▶ Run", variant="primary", scale=3)
                            stop_btn = gr.Button("■ Stop", variant="stop", scale=1, elem_id="ss-stop")
                        ar_baseline = gr.Checkbox(value=True, label="Also run plain autoregressive decoding "
                                                                    "(measures the speedup, checks the output)")
                        if ex_rows:
                            gr.Examples(ex_rows, inputs=[image, prompt], label="Examples: click one",
                                        examples_per_page=4, cache_examples=False)
                        with gr.Accordion("Model: target, presets, precision", open=False):
                            preset = gr.Dropdown(preset_list, value="default", label="Preset pair")
                            preset_note = gr.HTML(status_html(_esc(presets.get("default").note)))
                            target = gr.Textbox(value=limits.default_target(), label="Target model",
                                                info="'default' = the embedded model; or a Hub id (owner/name)")
                            custom_drafter = gr.Textbox(value="", label="Custom drafter (Hub id or model folder)",
                                                        info="used when the drafter is 'custom'",
                                                        placeholder="e.g. HuggingFaceTB/SmolVLM-256M-Instruct")
                            with gr.Row():
                                mode = gr.Radio(["multimodal", "text-only"], value="multimodal",
                                                label="Drafter sees the image?")
                                dtype = gr.Radio(["float32", "bfloat16"], value=presets.auto_dtype(), label="Precision",
                                                 info="default: bfloat16 where this CPU/GPU computes it natively")
                        with gr.Accordion("Draft shape parameters", open=False):
                            with gr.Row():
                                gamma = gr.Slider(1, 16, value=chain_default.gamma, step=1, label="Chain: γ tokens",
                                                  info="fixed chains only (auto drafts up to 16, per step)")
                                branching = gr.Textbox(value="3,2,2,1", label="Static tree: children per depth")
                            with gr.Row():
                                depth = gr.Slider(1, 12, value=dyn_default.depth, step=1, label="Dynamic: depth")
                                top_k = gr.Slider(1, 16, value=dyn_default.top_k, step=1, label="Dynamic: top-k")
                            budget = gr.Slider(1, 256, value=dyn_default.budget, step=1, label="Dynamic: node budget",
                                               info="default: the fastest on this machine (python -m core.tune)")
                        with gr.Accordion("Sampling", open=False):
                            with gr.Row():
                                temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0 = greedy)")
                                top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p")
                            with gr.Row():
                                max_new = gr.Slider(1, limits.MAX_NEW_TOKENS, value=128, step=1, label="Max new tokens",
                                                    elem_id="ss-maxnew")
                                seed = gr.Number(value=0, label="Seed")

                    with gr.Column(scale=7, min_width=480):
                        run_status = gr.HTML(status_html("Pick an example or upload an image, then press <b>Run</b>."))
                        answer = gr.HighlightedText(label="Answer: every token coloured by where it came from",
                                                    color_map=render.COLOR_MAP, show_legend=True,
                                                    combine_adjacent=False, elem_id="ss-answer")
                        tree_plot = gr.Plot(show_label=False, elem_id="ss-tree")
                        with gr.Row(equal_height=True):
                            prev_btn = gr.Button("◀", scale=0, min_width=50, size="sm")
                            step = gr.Slider(1, 2, value=1, step=1, label="Step", visible=False, scale=8,
                                             elem_id="ss-step")
                            next_btn = gr.Button("▶", scale=0, min_width=50, size="sm")

                gr.Markdown("### Speculative vs plain decoding\n"
                            "Same target, same input. At temperature 0 speculative decoding is lossless: both "
                            "answers must be identical, token for token. With sampling only their distributions "
                            "match, so the texts may differ.", elem_classes=["ss-note"])
                with gr.Row():
                    spec_text = gr.Textbox(label="Speculative", lines=3, max_lines=8, interactive=False,
                                           buttons=["copy"])
                    ar_text = gr.Textbox(label="Plain autoregressive", lines=3, max_lines=8, interactive=False,
                                         buttons=["copy"])
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4):
                        summary = gr.Markdown("Numbers appear here after a run.", elem_id="ss-summary")
                        with gr.Row():
                            download = gr.DownloadButton("⬇ Download trace (JSON)", variant="secondary",
                                                         elem_id="ss-download")
                    with gr.Column(scale=5):
                        time_fig = gr.Plot(show_label=False)
                with gr.Row():
                    acc_fig = gr.Plot(show_label=False)
                    depth_fig = gr.Plot(show_label=False)
                with gr.Accordion("Every step: accepted and rejected drafts", open=False):
                    steps_html = gr.HTML()
                with gr.Accordion("Raw result (JSON, as returned by the /run API)", open=False):
                    result = gr.JSON(label="result")
                run_state = gr.State(None, time_to_live=limits.STATE_TTL_SECONDS)

            # ---------------------------------------------------------------- Compare
            with gr.Tab("Compare", id="compare"):
                gr.Markdown("Decode the **same input** with several drafters and draft shapes. Each configuration "
                            "is timed against plain decoding by the same target (the target and precision come "
                            "from the *Model* settings on the Run tab).")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=320):
                        c_image = SafeImage(type="filepath", label="Image", height=220,
                                            value=first["path"] if first else None, sources=["upload", "clipboard"])
                        c_prompt = gr.Textbox(label="Prompt", lines=2,
                                              value=first["prompt"] if first else "Describe the image in detail.")
                        c_configs = gr.CheckboxGroup(compare_choices(), value=default_compare_selection(),
                                                     label="Configurations")
                        with gr.Row():
                            c_max_new = gr.Slider(8, 256, value=48, step=1, label="Max new tokens")
                            c_temp = gr.Slider(0, 2, value=0, step=0.05, label="Temperature")
                        with gr.Row():
                            c_btn = gr.Button("▶ Compare", variant="primary", scale=3)
                            c_stop = gr.Button("■ Stop", variant="stop", scale=1)
                        if ex_rows:
                            gr.Examples(ex_rows, inputs=[c_image, c_prompt], label="Examples",
                                        examples_per_page=4, cache_examples=False)
                    with gr.Column(scale=7):
                        c_status = gr.HTML(status_html("Tick configurations and press <b>Compare</b>."))
                        c_fig = gr.Plot(show_label=False, value=render.compare_figure([]))
                        c_table = gr.Dataframe(headers=COMPARE_COLUMNS, value=[], interactive=False, wrap=True,
                                               label="Results", elem_id="ss-compare-table",
                                               column_widths=["27%", "8%", "11%", "10%", "10%", "10%", "10%", "14%"])
                        gr.Markdown("τ = tokens per target forward (incl. bonus) · accepted / step = accepted draft "
                                    "tokens per step (excl. bonus) · speedup = plain wall time / speculative wall "
                                    "time · identical = same token ids as plain decoding. Shapes: chain γ=4; static "
                                    f"tree 3,2,2,1; dynamic tree = depth {dyn_default.depth}, top-{dyn_default.top_k}, {dyn_default.budget} nodes.", elem_classes=["ss-note"])

            # ---------------------------------------------------------------- Teach
            with gr.Tab("Teach", id="teach"):
                gr.Markdown("**Step through speculative decoding one step at a time.** Press *Start*: the default "
                            "model answers once (greedy). Then *Next ▶* replays it: what the drafter guessed, what "
                            "the target kept, and what that bought.")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=280):
                        t_image = SafeImage(type="filepath", label="Image", height=220,
                                            value=first["path"] if first else None, sources=["upload", "clipboard"])
                        t_prompt = gr.Textbox(label="Prompt", lines=2,
                                              value=first["prompt"] if first else "Describe the image in detail.")
                        t_choices = [c for c in presets.drafter_choices() if c[1] not in ("none", "custom")]
                        t_drafter = gr.Dropdown(t_choices, value=drafter_default, label="Drafter")
                        t_shape = gr.Radio([("chain of 4 guesses", "chain"), ("small tree (2·2·1)", "tree")],
                                           value="chain", label="Draft shape")
                        t_start = gr.Button("Start", variant="primary", elem_classes=["ss-big-btn"])
                        if ex_rows:
                            gr.Examples(ex_rows, inputs=[t_image, t_prompt], label="Examples",
                                        examples_per_page=4, cache_examples=False)
                    with gr.Column(scale=8):
                        t_status = gr.HTML(status_html("Press <b>Start</b>."))
                        with gr.Row(equal_height=True):
                            t_prev = gr.Button("◀ Previous", elem_classes=["ss-big-btn"], scale=1)
                            t_progress = gr.HTML('<div class="ss-teach-progress">Not started</div>')
                            t_next = gr.Button("Next ▶", variant="primary", elem_classes=["ss-big-btn"], scale=1)
                        t_text = gr.HTML('<div class="ss-teach-text"><span class="old">The answer will grow here, '
                                         'new tokens coloured.</span></div>')
                        gr.HTML(legend_html())
                        t_explain = gr.HTML()
                        t_tree = gr.Plot(show_label=False)
                        t_index = gr.Number(value=0, precision=0, label="Step shown (0 = prefill)",
                                            minimum=0, elem_id="ss-teach-index")
                t_state = gr.State(None, time_to_live=limits.STATE_TTL_SECONDS)

            # ---------------------------------------------------------------- Trace viewer
            with gr.Tab("Trace viewer", id="traces"):
                gr.Markdown("Open a trace saved from the Run tab (*Download trace*) to re-draw every view. "
                            "No model runs here, so this works even without one.")
                with gr.Row():
                    tv_file = gr.File(label="Trace file (.json)", file_types=[".json"], type="filepath", scale=3)
                    with gr.Column(scale=2):
                        tv_btn = gr.Button("Open trace", variant="primary")
                        tv_synth = gr.Button("…or open a synthetic example trace")
                tv_status = gr.HTML(status_html("No trace loaded."))
                tv_answer = gr.HighlightedText(label="Answer", color_map=render.COLOR_MAP, show_legend=True,
                                               elem_id="tv-answer")
                tv_tree = gr.Plot(show_label=False)
                tv_step = gr.Slider(1, 2, value=1, step=1, label="Step", visible=False)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4):
                        tv_summary = gr.Markdown()
                    with gr.Column(scale=5):
                        tv_time = gr.Plot(show_label=False)
                with gr.Row():
                    tv_acc = gr.Plot(show_label=False)
                    tv_depth = gr.Plot(show_label=False)
                with gr.Accordion("Every step", open=False):
                    tv_steps = gr.HTML()
                tv_state = gr.State(None, time_to_live=limits.STATE_TTL_SECONDS)

            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)

        # ---------------------------------------------------------------- events
        model = dict(concurrency_id="model", concurrency_limit=1)
        light = dict(concurrency_limit=8)

        run_inputs = [image, prompt, target, drafter, custom_drafter, mode, dtype, strategy, gamma, branching,
                      depth, top_k, budget, temperature, top_p, max_new, seed, ar_baseline]
        run_outputs = [run_status, answer, tree_plot, step, spec_text, ar_text, summary, time_fig, acc_fig,
                       depth_fig, steps_html, download, result, run_state]
        assert len(run_outputs) == len(RUN_KEYS)
        run_btn.click(run_decoding, run_inputs, run_outputs, api_name="run", show_progress="minimal", **model)
        stop_btn.click(request_stop, None, None, api_visibility="private", concurrency_limit=None)
        step.input(show_step, [run_state, step], tree_plot, api_visibility="private",
                   trigger_mode="always_last", show_progress="hidden", **light)
        prev_btn.click(lambda tr, s: nudge_step(tr, s, -1), [run_state, step], [step, tree_plot],
                       api_visibility="private", show_progress="hidden", **light)
        next_btn.click(lambda tr, s: nudge_step(tr, s, +1), [run_state, step], [step, tree_plot],
                       api_visibility="private", show_progress="hidden", **light)
        preset.select(apply_preset, preset, [preset, target, drafter, custom_drafter, mode, dtype, preset_note],
                      api_visibility="private", show_progress="hidden", **light)

        c_btn.click(run_compare, [c_image, c_prompt, target, dtype, c_configs, c_max_new, c_temp],
                    [c_status, c_table, c_fig], api_name="compare", show_progress="minimal", **model)
        c_stop.click(request_stop, None, None, api_visibility="private", concurrency_limit=None)

        teach_outputs = [t_status, t_progress, t_tree, t_text, t_explain, t_index, t_state]
        t_start.click(teach_start, [t_image, t_prompt, t_drafter, t_shape], teach_outputs,
                      api_name="teach_start", **model)
        t_index.submit(teach_step, [t_state, t_index], teach_outputs, api_name="teach_step", **light)
        t_next.click(teach_next, [t_state, t_index], teach_outputs, api_visibility="private",
                     show_progress="hidden", **light)
        t_prev.click(teach_prev, [t_state, t_index], teach_outputs, api_visibility="private",
                     show_progress="hidden", **light)

        tv_outputs = [tv_status, tv_answer, tv_tree, tv_step, tv_summary, tv_time, tv_acc, tv_depth, tv_steps,
                      tv_state]
        tv_btn.click(load_trace, tv_file, tv_outputs, api_name="load_trace", **light)
        tv_file.upload(load_trace, tv_file, tv_outputs, api_visibility="private", **light)
        tv_synth.click(load_synthetic, None, tv_outputs, api_visibility="private", **light)
        tv_step.input(show_step, [tv_state, tv_step], tv_tree, api_visibility="private",
                      trigger_mode="always_last", show_progress="hidden", **light)

        def tick():
            return WARMUP.html(), gr.Timer(active=not WARMUP.settled)
        timer.tick(tick, None, [model_bar, timer], api_visibility="private", show_progress="hidden",
                   concurrency_limit=None)
        demo.load(tick, None, [model_bar, timer], api_visibility="private", show_progress="hidden",
                  concurrency_limit=None)
        demo.load(refresh_choices, None, [drafter, t_drafter, c_configs], api_visibility="private",
                  show_progress="hidden", concurrency_limit=None)
    _APP["demo"] = demo
    return demo


def launch(demo: gr.Blocks | None = None, warm: bool = True, **kw):
    """Queue and launch with the app's theme and CSS; loads the default model in the background."""
    demo = demo or build_app()
    if warm:
        WARMUP.start()
    demo.queue(default_concurrency_limit=1, max_size=32)
    kw.setdefault("max_file_size", limits.MAX_UPLOAD_BYTES)
    kw.setdefault("state_session_capacity", limits.max_sessions())   # bounds the memory sessions keep
    kw.setdefault("show_error", True)
    return demo.launch(theme=THEME, css=CSS, **kw)
