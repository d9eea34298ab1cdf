"""The Teach tab: one decoding replayed step by step with plain-language explanations (for a
class: large text, one step per click). Public API: /teach_start, /teach_step."""

from __future__ import annotations

import gradio as gr

from core import api
from core.api import DraftSpec, InputError, SamplingConfig, Trace

from .. import limits, presets, render
from ..insight import TEACH, speedup_map
from ..inputs import NO_IMAGE, SafeImage, defaults, drafter_display, read_image, resolve_drafter
from ..messages import esc, friendly, guarded, status_html
from ..outputs import Outputs
from ..session import gpu, stop_scope
from ..views import cleared
from .teach_text import explain_prefill, explain_step, teach_text_html

OUTPUTS = ("status", "progress", "tree", "text", "explain", "index", "map", "state", "shown")
EMPTY_TEXT = '<div class="ss-teach-text"><div><span class="old">The answer will grow here, new tokens coloured.</span></div></div>'
NOT_STARTED = '<div class="ss-teach-progress">Not started</div>'


SCROLL_TO_STEP_VIEW = "() => { document.querySelector('#ss-teach-status')?.scrollIntoView({block: 'start'}) }"
TREE_SHAPE = (2, 2, 1)
TREE_WIDTH = 440  # px the Teach tree is laid out for (its plot is ~500 px wide at 1440 px)


def teach_shapes() -> dict[str, DraftSpec]:
    """The Teach tab's shapes: a chain of the app's default length, or a small static tree."""
    return {"chain": DraftSpec("chain", gamma=defaults().gamma), "tree": DraftSpec("tree", branching=TREE_SHAPE)}


def teach_view(tr: Trace, k: int, status: str | None = None, compact: bool = False):
    n = len(tr.steps)
    k = min(max(int(k), 0), n)
    if k == 0:
        tree = render.placeholder("Press Next ▶ to see the first draft tree", 300)
        progress = f'<div class="ss-teach-progress">Start · the prompt is read ({n} steps follow)</div>'
        explain = explain_prefill(tr)
    else:
        tree = render.tree_figure(tr, k - 1, compact=compact, width=None if compact else TREE_WIDTH, font=15)
        progress = f'<div class="ss-teach-progress">Step {k} of {n}</div>'
        explain = explain_step(tr, k - 1)
    out = dict(progress=progress, tree=tree, text=teach_text_html(tr, k), explain=explain, index=k, shown=gr.update(visible=True))
    if status is not None:
        out["status"] = status
    return out


def speedup_map_of(pair, tr: Trace):
    """ui/insight.py's map for this run (``api.predicted_speedups``): the target's measured cost
    curve, the run's own draft cost ratio, and its (alpha, gamma) marked."""
    m = api.predicted_speedups(pair, tr)
    return speedup_map(
        m["grid"],
        m["point"],
        title="Predicted speedup on this machine",
        subtitle=f"verify cost c(9)/c(1) = {m['verify_ratio']:.2f}<br>★ = your run",
    )


def emptied() -> dict:
    """What an error leaves: no stale answer, tree or explanation of an earlier run."""
    return cleared(OUTPUTS, progress=NOT_STARTED, text=EMPTY_TEXT)


@gpu
@guarded("teach", emptied)
def teach_start(image, prompt, drafter, shape, compact=False, request: gr.Request = None):
    """Decode once (greedy) on the default model and show the prefill; then walk with teach_step."""
    with stop_scope(request) as stop:
        prompt = limits.check_prompt(prompt)
        drafter_name = resolve_drafter(drafter, None) if drafter != "custom" else None
        if drafter_name is None:
            raise InputError("teach mode needs a drafter (n-gram, LayerSkip or a trained drafter)")
        shapes = teach_shapes()
        if shape not in shapes:
            raise InputError(f"draft shape must be one of {', '.join(shapes)}, got {shape!r}")
        img = read_image(image)
        if img is None:
            gr.Warning(NO_IMAGE)
        pair = api.load_pair(limits.default_target(), drafter_name)
        tr = api.run(
            pair,
            prompt,
            img,
            shapes[shape],
            SamplingConfig(temperature=0.0),
            defaults().max_new_tokens,
            should_stop=stop.is_set,
            meta={"temperature": 0.0, "prompt": prompt, "teach": True},
        )
        msg = (
            f"Decoded {len(tr.output)} tokens in {len(tr.steps)} steps with "
            f"{esc(drafter_display(drafter_name, pair))}. "
            "Walk through them with <b>Next ▶</b>."
        )
        status = status_html(msg, "ok") + (status_html(NO_IMAGE, "warn") if img is None else "")
        return {**teach_view(tr, 0, status, bool(compact)), "state": tr, "map": speedup_map_of(pair, tr)}


def teach_step(tr, step, compact=False):
    """Show step ``step`` of the stored teach run (0 = the prefill)."""
    if not isinstance(tr, Trace):
        return dict(status=status_html("Press <b>Start</b> first: it decodes the answer once, then you walk through it.", "warn"))
    try:
        k = limits.check_int("step", step, 0, len(tr.steps))
    except InputError as e:
        return dict(status=status_html(esc(friendly(e)), "err"))
    return teach_view(tr, k, compact=bool(compact))


def nav_state(tr, idx):
    """◀ Previous and Next ▶ enabled only where they lead somewhere: no Next on the last step."""
    n = len(tr.steps) if isinstance(tr, Trace) else -1
    try:
        k = int(idx or 0)
    except (TypeError, ValueError):
        k = 0
    return gr.update(interactive=n >= 0 and k > 0), gr.update(interactive=0 <= k < n)


def teach_next(tr, idx, compact=False):
    return teach_step(tr, (int(idx or 0) + 1) if isinstance(tr, Trace) and int(idx or 0) < len(tr.steps) else int(idx or 0), compact)


def teach_prev(tr, idx, compact=False):
    return teach_step(tr, max(int(idx or 0) - 1, 0), compact)


# ====================================================================== layout and wiring
def build(ctx, compact) -> dict:
    """Teach: the inputs on the left; on the right the step, the answer so far, and the
    explanation next to the tree, all on one screen of 900 px."""
    first, ex_rows, drafter_default, d = ctx.first, ctx.ex_rows, ctx.drafter_default, ctx.defaults
    with gr.Row(equal_height=False, elem_classes=["ss-stack-row"]):
        with gr.Column(scale=3, min_width=260, elem_classes=["ss-stack-left"]):
            gr.Markdown(
                "**One step at a time.** *Start* decodes once (greedy); *Next ▶* replays it: what the "
                "drafter guessed, what the target kept, what that bought.",
                elem_classes=["ss-note"],
            )
            t_image = SafeImage(
                type="filepath", label="Image", height=150, value=first["path"] if first else None, sources=["upload", "clipboard"]
            )
            t_prompt = gr.Textbox(label="Prompt", lines=2, value=first["prompt"] if first else "Describe the image in detail.")
            t_choices = [c for c in presets.drafter_choices() if c[1] not in ("none", "custom")]
            t_drafter = gr.Dropdown(t_choices, value=drafter_default, label="Drafter", elem_classes=["ss-drafter"])
            t_shape = gr.Radio(
                [(f"chain of {d.gamma} guesses", "chain"), ("small tree (" + "·".join(map(str, TREE_SHAPE)) + ")", "tree")],
                value="chain",
                label="Draft shape",
            )
            t_start = gr.Button("Start", variant="primary", elem_classes=["ss-big-btn"], elem_id="ss-teach-start")
            if ex_rows:
                with gr.Column(elem_classes=["ss-later"]):
                    gr.Examples(ex_rows, inputs=[t_image, t_prompt], label="Examples", examples_per_page=4, cache_examples=False)
        with gr.Column(scale=9, elem_classes=["ss-stack-right"]):
            t_status = gr.HTML(status_html("Press <b>Start</b>."), elem_id="ss-teach-status")
            with gr.Row(equal_height=True, elem_classes=["ss-teach-nav"]):
                t_prev = gr.Button(
                    "◀ Previous", elem_classes=["ss-big-btn"], scale=1, min_width=120, interactive=False, elem_id="ss-teach-prev"
                )
                t_progress = gr.HTML(NOT_STARTED)
                t_next = gr.Button(
                    "Next ▶",
                    variant="primary",
                    elem_classes=["ss-big-btn"],
                    scale=1,
                    min_width=120,
                    interactive=False,
                    elem_id="ss-teach-next",
                )
            t_text = gr.HTML(EMPTY_TEXT, elem_id="ss-teach-text")
            gr.HTML(render.legend_html())
            with gr.Row(equal_height=False, visible=False) as t_shown:
                with gr.Column(scale=6, min_width=300):
                    t_explain = gr.HTML(elem_id="ss-teach-explain")
                with gr.Column(scale=5, min_width=300):
                    t_tree = gr.Plot(show_label=False, elem_id="ss-teach-tree")
                    t_index = gr.Number(value=0, precision=0, label="Step shown (0 = prefill)", minimum=0, elem_id="ss-teach-index")
            # below the step view, collapsed: the step text and the tree keep their one screen
            with gr.Accordion("Where the speedup comes from", open=False, elem_id="ss-teach-insight"):
                t_map = gr.Plot(show_label=False, elem_id="ss-teach-map")
                gr.Markdown(TEACH, elem_classes=["ss-teach-insight-text"])
    t_state = gr.State(None, time_to_live=limits.STATE_TTL_SECONDS)

    outs = Outputs(
        ctx.demo,
        status=t_status,
        progress=t_progress,
        tree=t_tree,
        text=t_text,
        explain=t_explain,
        index=t_index,
        map=t_map,
        state=t_state,
        shown=t_shown,
    )
    model, light = ctx.model, ctx.light
    nav = dict(
        fn=nav_state, inputs=[t_state, t_index], outputs=[t_prev, t_next], api_visibility="private", show_progress="hidden", queue=False
    )
    t_start.click(
        outs.bind(teach_start), [t_image, t_prompt, t_drafter, t_shape, compact], outs.list, api_name="teach_start", **model
    ).then(**nav)
    # the step view is what a class reads: bring it to the top of the window (status, buttons,
    # answer, explanation and tree then fit one 900 px screen)
    t_start.click(None, None, None, js=SCROLL_TO_STEP_VIEW, api_visibility="private", queue=False)
    t_index.submit(outs.bind(teach_step), [t_state, t_index, compact], outs.list, api_name="teach_step", **light).then(**nav)
    t_next.click(
        outs.bind(teach_next), [t_state, t_index, compact], outs.list, api_visibility="private", show_progress="hidden", **light
    ).then(**nav)
    t_prev.click(
        outs.bind(teach_prev), [t_state, t_index, compact], outs.list, api_visibility="private", show_progress="hidden", **light
    ).then(**nav)
    return {"t_drafter": t_drafter}
