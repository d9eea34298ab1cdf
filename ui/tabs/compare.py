"""The Compare tab: the same input decoded with several drafters / draft shapes, each timed
against plain decoding (one shared baseline). Public API: /compare (streaming); the offline
shape sweep beside it is ``compare_replay.py`` (/replay_sweep)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr

from core import api
from core.api import SHIPPED_DRAFTERS, DraftSpec, InputError, SamplingConfig

from .. import limits, presets, render
from ..inputs import SafeImage, checked_inputs, default_shapes, defaults, notes_of, read_image
from ..messages import EXPECTED, esc, friendly, guarded, status_html, with_notes
from ..outputs import Outputs
from ..session import Deadline, gpu, request_stop, stop_scope
from ..style import scroll_on_phone
from ..views import cleared
from . import compare_replay

OUTPUTS = ("status", "table", "fig")


# ====================================================================== the configurations
@dataclass(frozen=True)
class CompareConfig:
    label: str
    drafter: str
    spec: DraftSpec
    mode: str = "multimodal"


def compare_configs() -> list[CompareConfig]:
    """The configurations offered; the chain length is the app's one default (``inputs.defaults``)."""
    g = defaults().gamma
    chain, tree, dyn = DraftSpec("chain", gamma=g), DraftSpec("tree", branching=(3, 2, 2, 1)), default_shapes()[1]
    out = [
        CompareConfig(f"n-gram · chain γ={g}", "ngram", chain),
        CompareConfig(f"LayerSkip · chain γ={g}", "layerskip", chain),
        CompareConfig("LayerSkip · static tree 3,2,2,1", "layerskip", tree),
        CompareConfig("LayerSkip · dynamic tree", "layerskip", dyn),
    ]
    for name, nice in (("msd", "MSD"), ("small-vlm", "small VLM"), ("massv", "MASSV"), ("text-lm", "text LM")):
        out.append(CompareConfig(f"{nice} · chain γ={g}", name, chain))
        out.append(CompareConfig(f"{nice} · dynamic tree", name, dyn))
    return out


def compare_choices() -> list[tuple[str, str]]:
    """(shown label, value) per configuration; untrained shipped drafters are marked."""
    return [
        (c.label + ("" if c.drafter not in SHIPPED_DRAFTERS or presets.shipped_available(c.drafter) else " (not trained yet)"), c.label)
        for c in compare_configs()
    ]


def default_compare_selection() -> list[str]:
    cfgs = compare_configs()
    keep = [cfgs[0].label, cfgs[1].label, cfgs[3].label]
    best = presets.default_drafter()
    if best != "layerskip":
        keep += [c.label for c in cfgs if c.drafter == best]
    return keep


def chosen_configs(configs) -> list[CompareConfig]:
    """The ticked configurations, checked (at least one, at most ``MAX_COMPARE_CONFIGS``, known)."""
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
    return chosen


def refresh_choices():
    """On page load: drafters trained since the app started lose their "(not trained yet)" mark."""
    return {
        "drafter": gr.update(choices=presets.drafter_choices()),
        "t_drafter": gr.update(choices=[c for c in presets.drafter_choices() if c[1] not in ("none", "custom")]),
        "configs": gr.update(choices=compare_choices()),
    }


# ====================================================================== the table
COLUMNS = ["configuration", "τ", "accepted per step", "tok/s", "plain tok/s", "speedup (range)", "same output"]
VISUAL_COLUMNS = ["acc. image-dep.", "acc. other"]
# in px, not %: a phone scrolls the table sideways instead of squeezing each column to a letter
WIDTHS = ["170px", "60px", "86px", "66px", "70px", "112px", "72px"]
VISUAL_WIDTHS = ["96px", "86px"]
NOTE_WIDTH = "280px"
DECIMALS = {1: 2, 2: 2, 3: 1, 4: 1}  # τ, accepted per step, tok/s, plain tok/s: as shown


def table_update(rows: list[list], visual: bool = False):
    """The results table; the "note" column only when some row has a note. ``visual``: the rows
    carry the acceptance on image-dependent / other tokens before the note."""
    cols = COLUMNS + (VISUAL_COLUMNS if visual else [])
    widths = WIDTHS + (VISUAL_WIDTHS if visual else [])
    note_widths = widths + [NOTE_WIDTH]
    if any(r[-1] for r in rows):
        return gr.update(value=render.table_value(cols + ["note"], rows, DECIMALS), column_widths=note_widths)
    return gr.update(value=render.table_value(cols, [r[:-1] for r in rows], DECIMALS), column_widths=widths)


def rate_cell(c: dict) -> str:
    """ "86% (6/7)": a class's accept_rate with its drafted positions (``split_acceptance``)."""
    if c["accept_rate"] is None:
        return "n/a (not drafted)"
    return f"{100 * c['accept_rate']:.0f}% ({round(c['accept_rate'] * c['tried'])}/{c['tried']})"


def visual_cells(cache: api.VisualCache, pair, prompt, image, cmp: api.Comparison) -> tuple[list, dict]:
    """The two acceptance cells of a row and its split (``split_acceptance`` with the classification
    of the row's own output). At T=0 every row reproduces the shared plain baseline's output, so
    one classification (two target forwards) serves all rows; an output that differs gets its own."""
    res = cache.get(pair, prompt, image, cmp.spec_trace.output)
    split = api.split_acceptance(cmp.spec_trace, res)
    return [rate_cell(split["image_dependent"]), rate_cell(split["other"])], split


def row_of(label: str, cmp: api.Comparison, temperature: float) -> tuple[list, dict]:
    """(table row without its note, chart row) of one measured configuration."""
    s = cmp.spec
    row = [
        label,
        round(s.tau, 2),
        round(cmp.spec_trace.summary()["accepted_per_step"], 2),
        round(s.tokens_per_s, 1),
        round(cmp.plain_tokens_per_s, 1),
        render.speed_cell(cmp),
        render.same_cell(cmp, temperature),
    ]
    fig_row = {
        "config": label,
        "tau": s.tau,
        "speedup": cmp.speedup,
        "speedups": cmp.speedups,
        "tokens_per_s": s.tokens_per_s,
        "identical": cmp.identical,
    }
    return row, fig_row


def emptied() -> dict:
    return cleared(OUTPUTS, table=table_update([]), fig=render.compare_figure([]))


# ====================================================================== the handler
@gpu
@guarded("compare", emptied)
def run_compare(image, prompt, target, dtype, configs, max_new_tokens, temperature, repeats=3, visual=False, request: gr.Request = None):
    """Decode the same input with each selected configuration. One plain-decoding baseline for
    the input, measured ``repeats`` times interleaved with the first configuration's runs, is
    shared by every row, so the rows' speedups are comparable."""
    rows: list[list] = []
    fig_rows: list[dict] = []
    with stop_scope(request) as stop:
        prompt, target, max_new, capped, temp = checked_inputs(prompt, target, dtype, max_new_tokens, temperature)
        rounds_n = limits.check_int("timing runs", repeats if repeats is not None else 3, 1, 9)
        chosen = chosen_configs(configs)
        img = read_image(image)
        notes = notes_of(capped, img)
        for n in notes:
            gr.Warning(n)
        noted = functools.partial(with_notes, notes=notes)
        sampling = SamplingConfig(temperature=temp, seed=0)
        vis = api.VisualCache() if visual and img is not None else None
        if visual and img is None:
            notes.append("Which tokens need the image: no image, so there is nothing to measure.")
        yield {
            "status": noted(status_html("Loading the target…", "busy")),
            "table": table_update([], vis is not None),
            "fig": render.compare_figure([]),
        }
        limit = Deadline(stop)  # one time limit for all configurations of this request
        baseline = reference = None  # plain runs of this input and its identity reference, shared by every row
        for i, cfg in enumerate(chosen):
            if limit():
                break
            what = (
                "plain and speculative decoding, alternating"
                if baseline is None
                else "speculative decoding (against the shared plain baseline)"
            )
            yield {
                "status": noted(
                    status_html(
                        f"Configuration {i + 1} of {len(chosen)}: <b>{esc(cfg.label)}</b>: {rounds_n} timed run"
                        f"{'s' if rounds_n != 1 else ''} of {what}…",
                        "busy",
                    )
                )
            }
            try:
                pair = api.load_pair(target, cfg.drafter, dtype=dtype, mode=cfg.mode)
                cmp = api.compare(
                    pair,
                    prompt,
                    img,
                    cfg.spec,
                    sampling,
                    max_new,
                    repeats=rounds_n,
                    baseline=baseline,
                    reference=reference,
                    should_stop=limit,
                    meta={"temperature": temp},
                )
            except EXPECTED as e:  # this configuration cannot run here: a row says why, the others go on
                rows.append([cfg.label, None, None, None, None, None, ""] + (["", ""] if vis else []) + [friendly(e)])
                continue
            if any(r.stop_reason == "cancelled" for r in cmp.plain_traces + cmp.spec_traces):
                break
            if baseline is None:
                baseline, reference = cmp.plain_traces, cmp.reference_trace
            row, fig_row = row_of(cfg.label, cmp, temp)
            if vis is not None:  # after this row's timed runs: never inside a timed region
                cells, fig_row["split"] = visual_cells(vis, pair, prompt, img, cmp)
                row += cells
            rows.append(row + ["; ".join(x for x in (render.differs_note(temp, cmp.divergence), render.bound_note(cmp)) if x)])
            fig_rows.append(fig_row)
            yield {"table": table_update(rows, vis is not None), "fig": render.compare_figure(fig_rows)}
        done = "Stopped." if stop.is_set() else f"{limit.message()}." if limit.hit else "Done."
        slower = [r["config"] for r in fig_rows if r["speedup"] < 1]
        kind = "warn" if stop.is_set() or limit.hit or slower else "ok"
        msg = (
            f"{done} {len(fig_rows)} configuration(s) measured on the same input, against one shared "
            f"plain-decoding baseline ({rounds_n} timed run{'s' if rounds_n != 1 else ''} each, median shown). "
            "Speedup = speculative tokens/s ÷ plain tokens/s."
        )
        if slower:
            msg += f" <b>{len(slower)} slower than plain decoding</b> here: " + ", ".join(esc(c) for c in slower) + "."
        if vis is not None and vis.records:
            first = next(iter(vis.records.values()))
            msg += (
                f" Which tokens need the image: {first['n_dependent']} of {len(first['tokens'])} output "
                f"tokens (classified from the plain baseline's output, {vis.seconds:.2f} s of target "
                "forwards after the timed runs); acc. = drafted positions where a draft was accepted."
            )
        yield {
            "status": noted(status_html(msg, kind)),
            "table": table_update(rows, vis is not None),
            "fig": render.compare_figure(fig_rows),
        }


# ====================================================================== layout and wiring
def build(ctx, target, dtype) -> dict:
    first, ex_rows, dyn_default, d = ctx.first, ctx.ex_rows, ctx.dyn_default, ctx.defaults
    gr.Markdown(
        "Decode the **same input** with several drafters and draft shapes. Every configuration "
        "is timed against one plain-decoding baseline of the same target (the target and precision "
        "come from the *Model* settings on the Run tab)."
    )
    with gr.Row(equal_height=False, elem_classes=["ss-stack-row"]):
        with gr.Column(scale=4, min_width=320, elem_classes=["ss-stack-left"]):
            c_image = SafeImage(
                type="filepath", label="Image", height=190, value=first["path"] if first else None, sources=["upload", "clipboard"]
            )
            c_prompt = gr.Textbox(label="Prompt", lines=2, value=first["prompt"] if first else "Describe the image in detail.")
            with gr.Row(elem_classes=["ss-actions"]):  # one row, as Run / Stop, on a phone too
                c_btn = gr.Button("▶ Compare", variant="primary", scale=3, elem_id="ss-compare-btn")
                c_stop = gr.Button("■ Stop", variant="stop", scale=1)
            c_configs = gr.CheckboxGroup(compare_choices(), value=default_compare_selection(), label="Configurations")
            with gr.Row():
                c_max_new = gr.Number(value=d.max_new_tokens, precision=0, label="Max new tokens", info=f"1 to {limits.MAX_NEW_TOKENS}")
                c_temp = gr.Slider(0, 2, value=d.temperature, step=0.05, label="Temperature")
                c_repeats = gr.Number(value=d.repeats, precision=0, minimum=1, maximum=9, label="Timed runs")
            c_visual = gr.Checkbox(
                value=False,
                label="Which tokens need the image?",
                elem_id="ss-compare-visual",
                info="adds acceptance on image-dependent vs other tokens per row; two target forwards once per input, after the timed runs",
            )
            # a phone: the results come right after the inputs that start a run; the offline sweep
            # and the examples after them (ui/style.py's ss-stack classes)
            with gr.Column(elem_classes=["ss-later"]):
                with gr.Accordion("Sweep shapes offline (replay)", open=False, elem_id="ss-replay"):
                    gr.Markdown(
                        "One recorded target run scores the drafter on "
                        + "; ".join(compare_replay.shape_name(x) for x in compare_replay.SWEEP_SHAPES)
                        + " in seconds, without running the target again: "
                        f"{compare_replay.LABEL}.",
                        elem_classes=["ss-note"],
                    )
                    # one above the other: side by side the drafter's name was cut to a few words
                    r_drafter = gr.Dropdown(
                        [c for c in presets.drafter_choices() if c[1] not in ("none", "custom")],
                        value=ctx.drafter_default,
                        label="Drafter",
                        elem_classes=["ss-drafter"],
                        elem_id="ss-replay-drafter",
                    )
                    r_btn = gr.Button("Sweep shapes offline (replay)", elem_id="ss-replay-btn")
                if ex_rows:
                    gr.Examples(ex_rows, inputs=[c_image, c_prompt], label="Examples", examples_per_page=4, cache_examples=False)
        with gr.Column(scale=7, elem_classes=["ss-stack-right"]):
            c_status = gr.HTML(status_html("Tick configurations and press <b>Compare</b>."), elem_id="ss-compare-status")
            c_fig = gr.Plot(show_label=False, value=render.compare_figure([]), elem_id="ss-compare-fig")
            c_table = gr.Dataframe(
                headers=COLUMNS, value=[], interactive=False, wrap=True, label="Results", elem_id="ss-compare-table", column_widths=WIDTHS
            )
            r_status = gr.HTML("", elem_id="ss-replay-status")
            r_table = gr.Dataframe(
                headers=compare_replay.COLUMNS,
                value=[],
                interactive=False,
                wrap=True,
                label=f"Shapes ranked by speedup, {compare_replay.LABEL}",
                elem_id="ss-replay-table",
                visible=False,
                column_widths=compare_replay.WIDTHS,
            )
            gr.Markdown(
                "τ = tokens per speculative step (incl. bonus, excl. prefill) · accepted per step = accepted draft "
                "tokens per step (excl. bonus) · speedup = speculative tokens/s ÷ plain tokens/s, "
                "median and range of the timed runs · same output = same token ids as plain "
                f"decoding. Shapes: chain γ={d.gamma}; static tree 3,2,2,1; dynamic tree = depth "
                f"{dyn_default.depth}, top-{dyn_default.top_k}, {dyn_default.budget} nodes.",
                elem_classes=["ss-note"],
            )

    outs = Outputs(ctx.demo, status=c_status, table=c_table, fig=c_fig)
    # a phone: the status, chart and table to the top (first: events of a trigger run in order)
    c_btn.click(None, None, None, js=scroll_on_phone("#ss-compare-status"), api_visibility="private", queue=False)
    r_btn.click(None, None, None, js=scroll_on_phone("#ss-replay-status"), api_visibility="private", queue=False)
    c_btn.click(
        outs.bind(run_compare),
        [c_image, c_prompt, target, dtype, c_configs, c_max_new, c_temp, c_repeats, c_visual],
        outs.list,
        api_name="compare",
        show_progress="minimal",
        **ctx.model,
    )
    r_outs = Outputs(ctx.demo, status=r_status, table=r_table)
    assert tuple(r_outs.names) == compare_replay.OUTPUTS
    r_btn.click(
        r_outs.bind(compare_replay.run_replay),
        [c_image, c_prompt, target, dtype, r_drafter, c_max_new, c_temp],
        r_outs.list,
        api_name="replay_sweep",
        show_progress="minimal",
        **ctx.model,
    )
    c_stop.click(request_stop, None, None, api_visibility="private", concurrency_limit=None)
    return {"configs": c_configs}
