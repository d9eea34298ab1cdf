"""The Trace viewer: re-draw every view of a saved trace, no model needed. Public API: /load_trace."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from core.api import ASSETS, InputError, Trace

from .. import limits, render
from ..messages import esc, guarded, scrub, status_html
from ..outputs import Outputs
from ..views import cleared, full_views, show_step

log = logging.getLogger("specscope.app")
OUTPUTS = ("status", "answer", "tree", "step", "summary", "time_fig", "acc_fig", "depth_fig", "steps_html", "state", "results")


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


EXAMPLE_TRACE = ASSETS / "examples" / "example_trace.json"


def render_trace(tr: Trace, source: str, compact: bool = False):
    views = full_views(tr, compact)
    s = tr.summary()
    m = tr.meta or {}
    who = f"{m.get('target', '?')}" + (f" with {m['drafter']}" if m.get("drafter") else " (no drafter)")
    msg = f"Loaded {esc(source)}: {s['new_tokens']} tokens, {len(tr.steps)} steps, τ = {s['tau']:.2f}. Model: {esc(scrub(who))}."
    if m.get("prompt"):
        msg += f" Prompt: “{esc(str(m['prompt'])[:200])}”."
    if tr.steps:
        msg += f" Showing step {render.most_informative_step(tr) + 1}, the longest accepted draft."
    return {
        "status": status_html(msg, "ok"),
        "state": tr,
        "results": gr.update(visible=True),
        **{k: v for k, v in views.items() if k in OUTPUTS},
    }


@guarded("load_trace", lambda: cleared(OUTPUTS))
def load_trace(file, compact=False):
    """Re-render every view from a saved trace JSON; no model needed."""
    text = _trace_text(file)
    try:
        tr = Trace.from_json(text)
    except (KeyError, TypeError, AttributeError):  # a step without the fields of a trace step
        raise InputError("this is not a SpecScope trace: its steps lack the fields of a decoding step") from None
    if not isinstance(tr.steps, list) or not isinstance(tr.output, list):
        raise ValueError("not a SpecScope trace: steps / output are not lists")
    try:
        return render_trace(tr, "the trace", bool(compact))
    except Exception as e:  # a schema-valid file with inconsistent content
        log.info("inconsistent trace: %r", e)
        raise InputError(f"this trace file is damaged: its steps are inconsistent ({type(e).__name__}); nothing was loaded") from None


def load_example(compact=False):
    """The example: a real run of the default pair, recorded (assets/examples/example_trace.json);
    a synthetic trace only if that file is missing. Clears the file box (no stale file name)."""
    try:
        tr = Trace.from_json(EXAMPLE_TRACE.read_text(encoding="utf-8"))
        out = render_trace(tr, "the example trace (a recorded run of the default model)", bool(compact))
    except (OSError, ValueError):
        from ..synthetic import synthetic_trace, timed

        tr = timed(synthetic_trace(n_steps=24, seed=3, strategy="dynamic"), seed=3)
        out = render_trace(tr, "a synthetic example trace (made up, no model)", bool(compact))
    return {**out, "file": None}


# ====================================================================== layout and wiring
def build(ctx, compact) -> None:
    gr.Markdown(
        "Open a trace saved from the Run tab (*Download trace*) to re-draw every view. No model runs here, so this works even without one."
    )
    with gr.Row():
        tv_file = gr.File(label="Trace file (.json)", file_types=[".json"], type="filepath", scale=3, height=120)
        with gr.Column(scale=2):
            tv_btn = gr.Button("Open trace", variant="primary")
            tv_example = gr.Button("…or open the example trace (a recorded run)", elem_id="tv-example")
    tv_status = gr.HTML(status_html("No trace loaded."))
    with gr.Column(visible=False) as tv_results:
        tv_answer = gr.HighlightedText(label="Answer", color_map=render.COLOR_MAP, show_legend=True, elem_id="tv-answer")
        tv_tree = gr.Plot(show_label=False, elem_id="tv-tree")
        tv_step = gr.Slider(1, 2, value=1, step=1, label="Step", visible=False, elem_id="tv-step")
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

    outs = Outputs(
        ctx.demo,
        status=tv_status,
        answer=tv_answer,
        tree=tv_tree,
        step=tv_step,
        summary=tv_summary,
        time_fig=tv_time,
        acc_fig=tv_acc,
        depth_fig=tv_depth,
        steps_html=tv_steps,
        state=tv_state,
        results=tv_results,
    )
    light = ctx.light
    tv_btn.click(outs.bind(load_trace), [tv_file, compact], outs.list, api_name="load_trace", **light)
    tv_file.upload(outs.bind(load_trace), [tv_file, compact], outs.list, api_visibility="private", **light)
    ex = Outputs(ctx.demo, file=tv_file, **outs.by_name)
    tv_example.click(ex.bind(load_example), compact, ex.list, api_visibility="private", **light)
    tv_step.input(
        show_step,
        [tv_state, tv_step, compact],
        tv_tree,
        api_visibility="private",
        trigger_mode="always_last",
        show_progress="hidden",
        **light,
    )
