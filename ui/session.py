"""Per-visitor request plumbing: the Stop registry, the request deadline, the background model
loader and a workaround for a Gradio session leak. No rendering here.

    with stop_scope(request) as stop:     # the Stop buttons set it (request_stop)
        limit = Deadline(stop)            # should_stop for the engine: Stop OR the time limit
        ...
"""

from __future__ import annotations

import html
import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from core import api
from core.api import ModelLoadError

from . import limits
from .messages import scrub  # messages shown in the page carry no server paths

log = logging.getLogger("specscope.app")

DEFAULT_MAX_SECONDS = 300.0  # per-request decoding time limit; SPECSCOPE_MAX_SECONDS overrides (<= 0: none)

try:  # Hugging Face ZeroGPU: a no-op decorator everywhere else
    import spaces  # type: ignore

    gpu = spaces.GPU(duration=120)
except Exception:  # not installed, or not on a Space

    def gpu(fn):
        return fn


# ====================================================================== Stop buttons
def _stop_key(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "anonymous") if request is not None else "anonymous"


_stops: dict[str, threading.Event] = {}
_stops_lock = threading.Lock()


def new_stop(request) -> threading.Event:
    """A fresh stop event for this visitor's request (the Stop buttons set it)."""
    ev = threading.Event()
    with _stops_lock:
        if len(_stops) > 2000:
            _stops.clear()
        _stops[_stop_key(request)] = ev
    return ev


def end_stop(request, ev: threading.Event) -> None:
    with _stops_lock:
        if _stops.get(_stop_key(request)) is ev:
            del _stops[_stop_key(request)]


@contextmanager
def stop_scope(request):
    """A fresh stop event for this visitor's request, set and forgotten when the request ends
    (also when the page goes away mid-run: the decoding's worker thread then stops)."""
    stop = new_stop(request)
    try:
        yield stop
    finally:
        stop.set()
        end_stop(request, stop)


def request_stop(request: gr.Request):
    """The Stop buttons: ask this session's running decode to stop after its current step."""
    with _stops_lock:
        ev = _stops.get(_stop_key(request))
    if ev is not None:  # else nothing is running for this session
        ev.set()
        gr.Info("Stopping after the current step…")


# ====================================================================== time limit
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


# ====================================================================== default-model loader
class ModelWarmup:
    """Loads the default target in a background thread so the page is up at once."""

    def __init__(self):
        self.state = "idle"  # idle | loading | ready | missing | error
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
            self.message = scrub(str(e))
            log.warning("default model not available: %s", e)
        except Exception as e:
            self.state = "error"
            self.message = f"{type(e).__name__}: {scrub(str(e))}"
            log.exception("loading the default model failed")
        self.seconds = time.perf_counter() - t0

    def html(self) -> str:
        esc = lambda s: html.escape(str(s), quote=False)
        name = limits.default_target()
        shown = "embedded model (assets/target)" if name == "default" else Path(name).name or name
        if self.state == "ready":
            pill = f'<span class="ss-pill ok">● default model ready</span> {esc(shown)} · loaded in {self.seconds:.1f} s'
        elif self.state == "loading":
            pill = f'<span class="ss-pill busy">◌ loading the default model…</span> {esc(shown)} · the page works meanwhile'
        elif self.state == "missing":
            pill = (
                '<span class="ss-pill err">⚠ default model missing</span> '
                f'{esc(self.message)}. You can still pick a Hub model (when online) or open a saved '
                'trace in the <b>Trace viewer</b>.'
            )
        elif self.state == "error":
            pill = f'<span class="ss-pill err">⚠ default model failed to load</span> {esc(self.message)}'
        else:
            pill = f'<span class="ss-pill busy">default model loads on first use</span> {esc(shown)}'
        return f'<div class="ss-modelbar">{pill}</div>'

    @property
    def settled(self) -> bool:
        return self.state in ("ready", "missing", "error")


WARMUP = ModelWarmup()


# ====================================================================== Gradio session leak
def prune_session(demo, request) -> None:
    """Work around a Gradio 6.31 leak: an output skipped (``gr.skip()``) in one yield and given a
    value in a later one is re-registered in the visitor's session under a NEW block id, one
    component copy per output per request (~0.13 MB/request, measured with scripts/soak.py).
    Entries whose ids are not blocks of ``demo`` are dropped at the start of the visitor's next
    request; the live copies stay under the app's ids."""
    sid = getattr(request, "session_hash", None)
    if demo is None or not sid or sid not in demo.state_holder:
        return
    try:
        state = demo.state_holder.session_data[sid]
        for key in [k for k in state.blocks_config.blocks if k not in demo.blocks]:
            state.blocks_config.blocks.pop(key, None)
            state.config_values.pop(key, None)
    except Exception:  # internal layout changed: never fail a request over this
        log.debug("session pruning skipped", exc_info=True)
