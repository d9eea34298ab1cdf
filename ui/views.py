"""Every view of a finished trace, shared by the Run tab and the Trace viewer (no handlers)."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr

from core import api
from core.trace import Trace

from . import render
from .common import scrub_tree

TRACE_DIR = Path(tempfile.gettempdir()) / "specscope-traces"


def ar_from_meta(tr: Trace) -> Trace | None:
    d = (tr.meta or {}).get("ar_baseline")
    if not isinstance(d, dict) or not isinstance(d.get("output"), list):
        return None
    try:
        return Trace(
            output=[int(x) for x in d["output"]], wall_s=float(d.get("wall_s", 0.0)), text=str(d.get("text", "")), meta={"strategy": "ar"}
        )
    except (TypeError, ValueError):
        return None


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


def speedups_of(tr: Trace) -> tuple[float | None, list[float]]:
    """(median speedup, per-round speedups) recorded with the trace's plain-decoding baseline."""
    d = (tr.meta or {}).get("ar_baseline")
    if not isinstance(d, dict):
        return None, []
    try:
        rounds = [float(x) for x in d.get("speedups") or []]
        med = d.get("speedup")
        return (float(med) if med is not None else None), rounds
    except (TypeError, ValueError):
        return None, []


def full_views(tr: Trace, ar: Trace | None, compact: bool = False) -> dict:
    """Every view of a finished trace (Run tab and Trace viewer share it). The tree opens on
    the most informative step (the longest accepted path), not the last."""
    s = tr.summary()
    k = render.most_informative_step(tr)
    med, rounds = speedups_of(tr)
    views = {
        "answer": render.highlighted_tokens(tr),
        "tree": render.tree_figure(tr, k, compact=bool(compact)),
        "step": step_slider_update(tr, k + 1),
        "summary": render.summary_markdown(tr, ar, speedup=med, speedups=rounds),
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
    if ar is not None:
        a = ar.summary()
        views["ar_text"] = gr.update(
            value=ar.text, label=f"Plain autoregressive · {a['tokens_per_s']:.1f} tokens/s · {a['new_tokens']} target forwards"
        )
    else:
        views["ar_text"] = gr.update(value="", label="Plain autoregressive (baseline not run)")
    return views


def result_payload(tr: Trace, ar: Trace | None, path: str | None) -> dict:
    """The /run result and the page's "Raw result (JSON)": no server path in it (model folders
    and the trace file by their short names, ``common.scrub_tree``)."""
    return scrub_tree(_result_payload(tr, ar, path))


def _result_payload(tr: Trace, ar: Trace | None, path: str | None) -> dict:
    out = api.result_json(tr)
    out["meta"] = {k: v for k, v in tr.meta.items() if k != "ar_baseline"}
    if ar is not None:
        same, where = render.outputs_identical(tr, ar)
        div = (tr.meta.get("ar_baseline") or {}).get("divergence")
        if isinstance(div, dict):  # against the identity reference (core.api.compare)
            same, where = div.get("kind") == "identical", div.get("position")
            out["divergence"] = div
        out["ar"] = {"text": ar.text, "tokens_per_s": ar.summary()["tokens_per_s"], "wall_s": round(ar.wall_s, 6)}
        med, rounds = speedups_of(tr)
        if med is None and tr.wall_s > 0:
            med = api.speedup(ar, tr)
        out["speedup"] = round(med, 4) if med is not None else None
        out["speedups"] = [round(x, 4) for x in rounds]
        out["identical"] = same
        out["first_difference"] = where
    out["trace_file"] = path
    return out


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
