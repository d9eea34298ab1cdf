"""Every view of a finished trace, shared by the Run tab and the Trace viewer: the views
themselves (with the trace's comparison to plain decoding when it has one), the step slider and
its navigation, the raw result, the saved file, and ``cleared``: every view emptied."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr

from core.api import InputError, Trace, result_json

from . import limits, render
from .messages import scrub_tree

TRACE_DIR = Path(tempfile.gettempdir()) / "specscope-traces"


def cleared(names, **empty) -> dict:
    """What an error leaves: each output of ``names`` (but the status) emptied and hidden, so no
    stale answer, tree or table of an earlier run stays below the message. ``empty``: a tab's own
    empty values (its placeholder text, an empty table)."""
    blank = dict(
        answer=[],
        tree=None,
        step=gr.update(visible=False, value=1),
        spec_text="",
        ar_text="",
        summary="",
        time_fig=None,
        acc_fig=None,
        depth_fig=None,
        steps_html="",
        download=None,
        result=None,
        visual=gr.update(value="", visible=False),
        state=None,
        results=gr.update(visible=False),
        more=gr.update(visible=False),
        shown=gr.update(visible=False),
        explain="",
        index=0,
        map=None,
    )
    return {n: blank.get(n) for n in names if n != "status"} | empty


# ====================================================================== the step slider
def step_slider_update(tr: Trace, value: int | None = None):
    """The step slider of a trace; ``value`` (1-based) defaults to the most informative step.
    Hidden while there is one step only (nothing to revisit; a slider needs two ends, and an end
    of 2 beside "1 to 1" would be untrue)."""
    n = len(tr.steps)
    v = render.most_informative_step(tr) + 1 if value is None else min(max(int(value), 1), max(n, 1))
    return gr.update(
        minimum=1,
        maximum=max(n, 2),
        value=v,
        visible=n > 1,
        label=f"Step (1 to {n})" if n else "Step",
        info="drag to revisit any step's draft tree",
    )


def show_step(tr, step, compact=False):
    """Re-draw the draft tree of step ``step`` (1-based) of the stored trace."""
    if not isinstance(tr, Trace) or not tr.steps:
        return gr.skip()
    try:
        k = limits.check_int("step", step, 1, len(tr.steps))
    except InputError:
        return gr.skip()
    return render.tree_figure(tr, k - 1, compact=bool(compact))


def nudge_step(tr, step, compact=False, delta: int = 1):
    """◀ / ▶ beside the slider: the step ``delta`` away, clamped to the run's steps."""
    if not isinstance(tr, Trace) or not tr.steps:
        return {"step": gr.skip()}
    try:
        k = int(step) + delta
    except (TypeError, ValueError):
        k = len(tr.steps)
    k = min(max(k, 1), len(tr.steps))
    return {"step": gr.update(value=k), "tree": render.tree_figure(tr, k - 1, compact=bool(compact))}


# ====================================================================== the views
def full_views(tr: Trace, compact: bool = False) -> dict:
    """Every view of a finished trace (Run tab and Trace viewer share it). The tree opens on
    the most informative step (the longest accepted path), not the last. The plain answer and
    the speedup are the trace's comparison's (``tr.comparison``), when it has one."""
    s = tr.summary()
    k = render.most_informative_step(tr)
    views = {
        "answer": render.highlighted_tokens(tr),
        "tree": render.tree_figure(tr, k, compact=bool(compact)),
        "step": step_slider_update(tr, k + 1),
        "summary": render.summary_markdown(tr),
        "time_fig": render.time_figure(tr),
        "acc_fig": render.accept_length_figure(tr),
        "depth_fig": render.depth_figure(tr),
        "steps_html": render.rejected_html(tr, max_rows=400),
    }
    spec_label = (
        f"{'Speculative' if tr.steps and any(st.tokens for st in tr.steps) else 'This run'} · "
        f"{s['tokens_per_s']:.1f} tokens/s · {s['target_forwards']} target forwards"
    )
    views["spec_text"] = gr.update(value=tr.text, label=spec_label)
    c = tr.comparison
    if c is not None:
        views["ar_text"] = gr.update(
            value=c.plain_text, label=f"Plain autoregressive · {c.plain.tokens_per_s:.1f} tokens/s · {c.plain.new_tokens} target forwards"
        )
    else:
        views["ar_text"] = gr.update(value="", label="Plain autoregressive (baseline not run)")
    return views


def result_payload(tr: Trace, path: str | None) -> dict:
    """The /run result and the page's "Raw result (JSON)": the run (``result_json``), its meta,
    its comparison's verdict when it has one; no server path in it (model folders and the trace
    file by their short names, ``messages.scrub_tree``)."""
    out = result_json(tr)
    out["meta"] = dict(tr.meta)
    c = tr.comparison
    if c is not None:
        out["divergence"] = c.divergence.to_json()
        out["ar"] = {"text": c.plain_text, "tokens_per_s": c.plain.tokens_per_s, "wall_s": c.plain.wall_s}
        out["speedup"] = c.speedup
        out["speedups"] = list(c.speedups)
        out["identical"] = c.divergence.identical
        out["first_difference"] = c.divergence.position
    out["trace_file"] = path
    return scrub_tree(out)


def save_trace(tr: Trace) -> str:
    TRACE_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in TRACE_DIR.glob("specscope-trace-*.json"):  # keep the temp folder small
        try:
            if now - old.stat().st_mtime > 3600:
                old.unlink()
        except OSError:
            pass
    path = TRACE_DIR / f"specscope-trace-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(scrub_tree(tr.to_dict())))  # the download names no server path
    return str(path)
