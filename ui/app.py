"""The SpecScope web app (Gradio Blocks): watch speculative decoding of a vision-language model.

    from ui.app import build_app, launch
    demo = build_app()
    launch(demo)                     # theme, css, queue and the background model loader

This module only builds and launches the page; each tab lives in ``ui/tabs/`` (its handlers,
layout and events; tabs share only ``ui/`` modules, never each other), rendering in
``ui/render/``, the look in ``ui/style.py``, the texts in ``ui/about.py``, what the page says and
the one error wrapper in ``ui/messages.py``, the shared inputs in ``ui/inputs.py`` and the
request plumbing (Stop, time limit, model loader) in ``ui/session.py``. Decoding itself is
``core``'s, reached through its facade ``core.api`` only.

Tabs: Run (live decoding + speedup against plain decoding), Compare (several drafters /
strategies on one input), Teach (one step at a time, plain-language explanations), Trace
viewer (re-render a saved trace without a model), About.

Public API endpoints (gradio_client): /run (streaming), /compare (streaming), /replay_sweep, /teach_start,
/teach_step, /load_trace. Every handler turns bad input into a message in the page and
keeps the app serving; unexpected errors are logged and shown as a short generic message.
Each request's decoding has a time limit (``SPECSCOPE_MAX_SECONDS``, default 300 s): when it
is hit the run stops like the Stop button and the partial result is shown with a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from . import limits, presets, render
from .about import ABOUT, HEADER
from .inputs import Defaults, default_shapes, defaults, load_examples
from .outputs import Outputs
from .session import WARMUP
from .style import CSS, THEME
from .tabs import compare, run, teach, trace


COMPACT_BELOW_PX = 1300  # window width below which trees use the compact layout


@dataclass
class BuildContext:
    """What the tabs' ``build`` functions share while the page is built."""

    demo: gr.Blocks
    examples: list
    defaults: Defaults
    drafter_default: str
    chain_default: object
    dyn_default: object
    model: dict = field(default_factory=lambda: dict(concurrency_id="model", concurrency_limit=1))
    light: dict = field(default_factory=lambda: dict(concurrency_limit=8))

    @property
    def first(self):
        return self.examples[0] if self.examples else None

    @property
    def ex_rows(self):
        return [[e["path"], e["prompt"]] for e in self.examples]


def build_app() -> gr.Blocks:
    chain_default, dyn_default = default_shapes()
    with gr.Blocks(title="SpecScope: speculative decoding for VLMs", delete_cache=(3600, 3600)) as demo:
        ctx = BuildContext(demo, load_examples(), defaults(), presets.default_drafter(), chain_default, dyn_default)
        gr.HTML(HEADER)
        model_bar = gr.HTML(WARMUP.html())
        # an empty plot drawn off screen as the page loads: the browser fetches and starts plotly
        # then, so the first draft tree of a run is drawn at once (not a blank box for seconds)
        gr.Plot(render.empty_figure(), show_label=False, elem_id="ss-plotly-preload", container=False)
        timer = gr.Timer(1.5, active=True)

        with gr.Tabs():
            with gr.Tab("Run", id="run"):
                shared = run.build(ctx)
            with gr.Tab("Compare", id="compare"):
                shared |= compare.build(ctx, shared["target"], shared["dtype"])
            with gr.Tab("Teach", id="teach"):
                shared |= teach.build(ctx, shared["compact"])
            with gr.Tab("Trace viewer", id="traces"):
                trace.build(ctx, shared["compact"])
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT, elem_id="ss-about")

        # a screen too narrow for the desktop tree layout (DESKTOP_WIDTH px of plot in the Run tab:
        # a phone, a tablet, a small laptop) gets compact trees; the page tells the server once, on load
        demo.load(
            None,
            None,
            shared["compact"],
            js=f"() => window.innerWidth < {COMPACT_BELOW_PX}",
            api_visibility="private",
            show_progress="hidden",
        )

        def tick():
            return WARMUP.html(), gr.Timer(active=not WARMUP.settled)

        timer.tick(tick, None, [model_bar, timer], api_visibility="private", show_progress="hidden", concurrency_limit=None)
        demo.load(tick, None, [model_bar, timer], api_visibility="private", show_progress="hidden", concurrency_limit=None)
        choices = Outputs(demo, drafter=shared["drafter"], t_drafter=shared["t_drafter"], configs=shared["configs"])
        demo.load(
            choices.bind(compare.refresh_choices),
            None,
            choices.list,
            api_visibility="private",
            show_progress="hidden",
            concurrency_limit=None,
        )
    return demo


def launch(demo: gr.Blocks | None = None, warm: bool = True, **kw):
    """Queue and launch with the app's theme and CSS; loads the default model in the background."""
    demo = demo or build_app()
    if warm:
        WARMUP.start()
    demo.queue(default_concurrency_limit=1, max_size=32)
    kw.setdefault("max_file_size", limits.MAX_UPLOAD_BYTES)
    kw.setdefault("state_session_capacity", limits.max_sessions())  # bounds the memory sessions keep
    kw.setdefault("show_error", True)
    return demo.launch(theme=THEME, css=CSS, **kw)
