"""The Run tab's layout: the inputs that start a run beside the live answer, the rest below or in
accordions. Components only; ``ui/tabs/run.py`` wires the events."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from .. import limits, presets, render
from ..inputs import SafeImage
from ..messages import esc, status_html

STRATEGY_CHOICES = [("auto (measured)", "auto"), ("chain", "chain"), ("static tree", "tree"), ("dynamic tree", "dynamic")]


def layout(ctx) -> SimpleNamespace:
    """The Run tab's components (inside ``gr.Tab``), by name; ``run.build`` wires them.

    Layout: the inputs that start a run (image, prompt, Run) and the live answer sit side by
    side at the top; everything else waits below or in accordions. On a phone the CSS puts the
    answer right after the Run button (ui/style.py). Result sections are hidden until there is
    a result."""
    first, ex_rows, d = ctx.first, ctx.ex_rows, ctx.defaults
    dyn_default = ctx.dyn_default
    compact = gr.Checkbox(False, visible=False, elem_id="ss-compact")  # set on load: a narrow screen
    with gr.Row(equal_height=False, elem_id="ss-run-row"):
        with gr.Column(scale=4, min_width=320, elem_id="ss-left"):
            image = SafeImage(
                type="filepath",
                label="Image",
                height=190,
                elem_id="ss-image",
                value=first["path"] if first else None,
                sources=["upload", "clipboard"],
                elem_classes=["ss-first"],
            )
            prompt = gr.Textbox(
                label="Prompt",
                lines=2,
                max_lines=6,
                elem_classes=["ss-first"],
                value=first["prompt"] if first else "Describe the image in detail.",
                placeholder="Ask something about the image…",
            )
            with gr.Row(elem_classes=["ss-first", "ss-actions"]):
                run_btn = gr.Button("▶ Run", variant="primary", scale=3, elem_id="ss-run")
                stop_btn = gr.Button("■ Stop", variant="stop", scale=1, elem_id="ss-stop")
            with gr.Group(elem_classes=["ss-rest"]):
                drafter = gr.Dropdown(presets.drafter_choices(), value=ctx.drafter_default, label="Drafter", elem_classes=["ss-drafter"])
                strategy = gr.Radio(
                    STRATEGY_CHOICES,
                    value=d.strategy,
                    label="Draft shape",
                    info="auto: each step's draft length chosen from this machine's measured costs and the drafter's confidence",
                )
                ar_baseline = gr.Checkbox(
                    value=True, label=f"Also run plain decoding: measures the speedup ({d.repeats} timed runs each), checks the output"
                )
                visual = gr.Checkbox(
                    value=False,
                    label="Which tokens need the image?",
                    elem_id="ss-visual-toggle",
                    info="marks the answer's image-dependent tokens and their acceptance; costs "
                    "two target forwards after the timed runs (the seconds are shown)",
                )
            if ex_rows:
                with gr.Column(elem_classes=["ss-rest"]):
                    gr.Examples(ex_rows, inputs=[image, prompt], label="Examples: click one", examples_per_page=4, cache_examples=False)
            with gr.Accordion("Model: target, presets, precision", open=False, elem_classes=["ss-rest"]):
                preset = gr.Dropdown(presets.choices(), value="default", label="Preset pair")
                preset_note = gr.HTML(status_html(esc(presets.get("default").note)))
                target = gr.Textbox(
                    value=limits.default_target(), label="Target model", info="'default' = the embedded model; or a Hub id (owner/name)"
                )
                custom_drafter = gr.Textbox(
                    value="",
                    label="Custom drafter (Hub id or model folder)",
                    info="used when the drafter is 'custom'",
                    placeholder="e.g. HuggingFaceTB/SmolVLM-256M-Instruct",
                )
                with gr.Row():
                    mode = gr.Radio(["multimodal", "text-only"], value="multimodal", label="Drafter sees the image?")
                    dtype = gr.Radio(
                        ["float32", "bfloat16"],
                        value=presets.auto_dtype(),
                        label="Precision",
                        info="default: bfloat16 where this CPU/GPU computes it natively",
                    )
            with gr.Accordion("Draft shape parameters", open=False, elem_classes=["ss-rest"]):
                with gr.Row():
                    gamma = gr.Slider(
                        1, 16, value=d.gamma, step=1, label="Chain: γ tokens", info="fixed chains only (auto drafts up to 16, per step)"
                    )
                    branching = gr.Textbox(value="3,2,2,1", label="Static tree: children per depth")
                with gr.Row():
                    depth = gr.Slider(1, 12, value=dyn_default.depth, step=1, label="Dynamic: depth")
                    top_k = gr.Slider(1, 16, value=dyn_default.top_k, step=1, label="Dynamic: top-k")
                budget = gr.Slider(
                    1,
                    256,
                    value=dyn_default.budget,
                    step=1,
                    label="Dynamic: node budget",
                    info="default: the fastest on this machine (python -m tools.tune)",
                )
            with gr.Accordion("Sampling, length and timing", open=False, elem_classes=["ss-rest"]):
                with gr.Row():
                    temperature = gr.Slider(0, 2, value=d.temperature, step=0.05, label="Temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p")
                with gr.Row():
                    max_new = gr.Number(
                        value=d.max_new_tokens,
                        precision=0,
                        label="Max new tokens",
                        info=f"1 to {limits.MAX_NEW_TOKENS}",
                        elem_id="ss-maxnew",
                    )
                    seed = gr.Number(value=0, label="Seed")
                    repeats = gr.Number(
                        value=d.repeats,
                        precision=0,
                        minimum=1,
                        maximum=9,
                        label="Timed runs",
                        info="plain and speculative, alternating; the median is shown",
                    )

        with gr.Column(scale=7, min_width=340, elem_id="ss-right"):
            run_status = gr.HTML(status_html("Pick an example or upload an image, then press <b>Run</b>."), elem_id="ss-run-status")
            answer = gr.HighlightedText(
                label="Answer: every token coloured by where it came from",
                color_map=render.COLOR_MAP,
                show_legend=True,
                combine_adjacent=False,
                elem_id="ss-answer",
                visible=False,
            )  # shown by the first yield of a run
            visual_html = gr.HTML(visible=False, elem_id="ss-visual")
            with gr.Column(visible=False, elem_id="ss-results") as results:
                tree_plot = gr.Plot(show_label=False, elem_id="ss-tree")
                with gr.Row(equal_height=True, elem_id="ss-stepnav"):
                    prev_btn = gr.Button("◀", scale=0, min_width=50, size="sm")
                    step = gr.Slider(1, 2, value=1, step=1, label="Step", visible=False, scale=8, elem_id="ss-step")
                    next_btn = gr.Button("▶", scale=0, min_width=50, size="sm")

    with gr.Column(visible=False, elem_id="ss-more") as more:
        gr.Markdown(
            "### Speculative vs plain decoding\n"
            "Same target, same input. At temperature 0 speculative decoding is lossless: both "
            "answers must be identical, token for token. With sampling only their distributions "
            "match, so the texts may differ.",
            elem_classes=["ss-note"],
        )
        with gr.Row():
            spec_text = gr.Textbox(label="Speculative", lines=3, max_lines=8, interactive=False, buttons=["copy"])
            ar_text = gr.Textbox(label="Plain autoregressive", lines=3, max_lines=8, interactive=False, buttons=["copy"])
        with gr.Row(equal_height=False):
            with gr.Column(scale=4):
                summary = gr.Markdown("", elem_id="ss-summary")
                download = gr.DownloadButton("⬇ Download trace (JSON)", variant="secondary", elem_id="ss-download")
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
    return SimpleNamespace(
        compact=compact,
        image=image,
        prompt=prompt,
        run_btn=run_btn,
        stop_btn=stop_btn,
        drafter=drafter,
        strategy=strategy,
        ar_baseline=ar_baseline,
        visual=visual,
        preset=preset,
        preset_note=preset_note,
        target=target,
        custom_drafter=custom_drafter,
        mode=mode,
        dtype=dtype,
        gamma=gamma,
        branching=branching,
        depth=depth,
        top_k=top_k,
        budget=budget,
        temperature=temperature,
        top_p=top_p,
        max_new=max_new,
        seed=seed,
        repeats=repeats,
        run_status=run_status,
        answer=answer,
        visual_html=visual_html,
        results=results,
        tree_plot=tree_plot,
        prev_btn=prev_btn,
        step=step,
        next_btn=next_btn,
        more=more,
        spec_text=spec_text,
        ar_text=ar_text,
        summary=summary,
        download=download,
        time_fig=time_fig,
        acc_fig=acc_fig,
        depth_fig=depth_fig,
        steps_html=steps_html,
        result=result,
        run_state=run_state,
    )
