"""The Compare tab: the same input decoded with several drafters / draft shapes, each timed
against plain decoding. Public API: /compare (streaming)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import gradio as gr

from core import api, replay as RP, visual as V
from core.drafters import DraftSpec
from core.errors import InputError
from core.paths import SHIPPED_DRAFTERS
from core.sampling import SamplingConfig
from core.drafters import tuned_spec

from .. import limits, presets, render
from ..common import (
    EXPECTED,
    GENERIC_ERROR,
    SafeImage,
    bound_note,
    defaults,
    differs_note,
    esc,
    fallback_hint,
    friendly,
    identity_kind,
    read_image,
    status_html,
)
from ..outputs import Outputs
from ..session import Deadline, end_stop, gpu, new_stop, request_stop
from .run import NO_IMAGE

log = logging.getLogger("specscope.app")
OUTPUTS = ("status", "table", "fig")
REPLAY_OUTPUTS = ("status", "table")


# ====================================================================== Compare tab
@dataclass(frozen=True)
class CompareConfig:
    label: str
    drafter: str
    spec: DraftSpec
    mode: str = "multimodal"


def default_shapes() -> tuple[DraftSpec, DraftSpec]:
    """(chain, dynamic) defaults: what ``python -m tools.tune`` measured fastest on this machine for
    the default pair, else DraftSpec's defaults: gamma 6 and depth 8 / top-4 / 20 nodes (sized
    for CPUs: a verify forward costs more per token there than on a GPU)."""
    tgt, d = limits.default_target(), presets.default_drafter()
    return tuned_spec(tgt, d, "chain"), tuned_spec(tgt, d, "dynamic")


def compare_configs() -> list[CompareConfig]:
    """The configurations offered; the chain length is the app's one default (``common.defaults``)."""
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


def refresh_choices():
    """On page load: drafters trained since the app started lose their "(not trained yet)" mark."""
    return {
        "drafter": gr.update(choices=presets.drafter_choices()),
        "t_drafter": gr.update(choices=[c for c in presets.drafter_choices() if c[1] not in ("none", "custom")]),
        "configs": gr.update(choices=compare_choices()),
    }


COLUMNS = ["configuration", "τ", "accepted per step", "tok/s", "plain tok/s", "speedup (range)", "same output"]
VISUAL_COLUMNS = ["acc. image-dep.", "acc. other"]


def speed_cell(med: float, rounds: list[float]) -> str:
    """ "1.93× (1.76–2.25)": the median of the timed runs and their range."""
    return f"{med:.2f}× ({min(rounds):.2f}–{max(rounds):.2f})" if len(rounds) > 1 else f"{med:.2f}×"


# in px, not %: a phone scrolls the table sideways instead of squeezing each column to a letter
WIDTHS = ["170px", "60px", "86px", "66px", "70px", "112px", "72px"]
VISUAL_WIDTHS = ["96px", "86px"]
NOTE_WIDTH = "280px"


def table_update(rows: list[list], visual: bool = False):
    """The results table; the "note" column only when some row has a note. ``visual``: the rows
    carry the acceptance on image-dependent / other tokens before the note."""
    cols = COLUMNS + (VISUAL_COLUMNS if visual else [])
    widths = WIDTHS + (VISUAL_WIDTHS if visual else [])
    note_widths = widths + [NOTE_WIDTH]
    if any(r[-1] for r in rows):
        return gr.update(value={"headers": cols + ["note"], "data": rows}, column_widths=note_widths)
    return gr.update(value={"headers": cols, "data": [r[:-1] for r in rows]}, column_widths=widths)


def rate_cell(c: dict) -> str:
    """ "86% (6/7)": a class's accept_rate with its drafted positions (``split_acceptance``)."""
    if c["accept_rate"] is None:
        return "n/a (not drafted)"
    return f"{100 * c['accept_rate']:.0f}% ({round(c['accept_rate'] * c['tried'])}/{c['tried']})"


class VisualCache:
    """The classification of each output, computed once: at T=0 every row reproduces the shared
    plain baseline's output, so one pair of target forwards serves all rows (an output that
    differs, e.g. when sampling, gets its own)."""

    def __init__(self, prompt, image):
        self.prompt, self.image, self.by_output, self.cost_s = prompt, image, {}, 0.0

    def of(self, pair, trace) -> dict:
        key = tuple(trace.output)
        if key not in self.by_output:
            res = api.visual_dependence(pair, trace, self.prompt, self.image, store=False)
            self.by_output[key] = res
            self.cost_s += res["cost_s"]
        return self.by_output[key]

    def cells(self, pair, baseline: list, spec_trace) -> tuple[list, dict]:
        """The two cells of a row and its split (``split_acceptance`` with the classification of
        the row's own output: the baseline's when they are identical)."""
        base = baseline[0] if baseline and baseline[0].output == spec_trace.output else spec_trace
        split = V.split_acceptance(spec_trace, self.of(pair, base))
        return [rate_cell(split["image_dependent"]), rate_cell(split["other"])], split


def checked_inputs(prompt, target, dtype, max_new_tokens, temperature):
    """The inputs Compare and its replay sweep share, checked: (prompt, target, max new tokens,
    the capped note or "", temperature)."""
    prompt = limits.check_prompt(prompt)
    target = limits.check_model_id(target or limits.default_target(), "target")
    if dtype not in ("float32", "bfloat16"):
        raise InputError(f"precision must be float32 or bfloat16, got {dtype!r}")
    max_new, capped = limits.check_max_new(max_new_tokens)
    return prompt, target, max_new, capped, limits.check_float("temperature", temperature, 0.0, 2.0)


@gpu
def run_compare(image, prompt, target, dtype, configs, max_new_tokens, temperature, repeats=3, visual=False, request: gr.Request = None):
    """Decode the same input with each selected configuration. One plain-decoding baseline for
    the input, measured ``repeats`` times interleaved with the first configuration's runs, is
    shared by every row, so the rows' speedups are comparable."""
    stop = new_stop(request)
    rows: list[list] = []
    fig_rows: list[dict] = []
    try:
        prompt, target, max_new, capped, temp = checked_inputs(prompt, target, dtype, max_new_tokens, temperature)
        rounds_n = limits.check_int("timing runs", repeats if repeats is not None else 3, 1, 9)
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
        notes = [n for n in (capped[0].upper() + capped[1:] + "." if capped else "", NO_IMAGE if img is None else "") if n]
        for n in notes:
            gr.Warning(n)
        with_notes = lambda h: h + "".join(status_html(esc(n), "warn") for n in notes)
        sampling = SamplingConfig(temperature=temp, seed=0)
        vis = VisualCache(prompt, img) if visual and img is not None else None
        if visual and img is None:
            notes.append("Which tokens need the image: no image, so there is nothing to measure.")
        yield {
            "status": with_notes(status_html("Loading the target…", "busy")),
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
                "status": with_notes(
                    status_html(
                        f"Configuration {i + 1} of {len(chosen)}: <b>{esc(cfg.label)}</b>: {rounds_n} timed run"
                        f"{'s' if rounds_n != 1 else ''} of {what}…",
                        "busy",
                    )
                )
            }
            try:
                pair = api.load_pair(target, cfg.drafter, dtype=dtype, mode=cfg.mode)
                res = api.compare(
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
            except EXPECTED as e:
                rows.append([cfg.label, None, None, None, None, None, ""] + (["", ""] if vis else []) + [friendly(e)])
                continue
            if any(r.stop_reason == "cancelled" for r in res["ar_runs"] + res["spec_runs"]):
                break
            if baseline is None:
                baseline, reference = res["ar_runs"], res["reference"]
            sp = res["spec"]
            s = sp.summary()
            div = res["divergence"]
            note = "; ".join(x for x in (differs_note(temp, div), bound_note(res)) if x)
            same = "✓ yes" if res["identical"] else ("≈ tie" if identity_kind(temp, div) == "warn" else "✗ no")
            row = [
                cfg.label,
                round(s["tau"], 2),
                round(s["accepted_per_step"], 2),
                round(s["tokens_per_s"], 1),
                round(res["plain_tokens_per_s"], 1),
                speed_cell(res["speedup"], res["speedups"]),
                same,
            ]
            fig_row = {
                "config": cfg.label,
                "tau": s["tau"],
                "speedup": res["speedup"],
                "speedups": res["speedups"],
                "tokens_per_s": s["tokens_per_s"],
                "identical": res["identical"],
            }
            if vis is not None:  # after this row's timed runs: never inside a timed region
                cells, fig_row["split"] = vis.cells(pair, baseline, sp)
                row += cells
            rows.append(row + [note])
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
        if vis is not None and vis.by_output:
            first = next(iter(vis.by_output.values()))
            msg += (
                f" Which tokens need the image: {first['n_dependent']} of {len(first['tokens'])} output "
                f"tokens (classified from the plain baseline's output, {vis.cost_s:.2f} s of target "
                "forwards after the timed runs); acc. = drafted positions where a draft was accepted."
            )
        yield {
            "status": with_notes(status_html(msg, kind)),
            "table": table_update(rows, vis is not None),
            "fig": render.compare_figure(fig_rows),
        }
    except EXPECTED as e:
        msg = friendly(e)
        msg += fallback_hint(e, target, msg)
        gr.Warning(msg)
        yield {"status": status_html(esc(msg), "err"), "table": table_update([]), "fig": render.compare_figure([])}
    except Exception:
        log.exception("compare failed")
        gr.Warning(GENERIC_ERROR)
        yield {"status": status_html(GENERIC_ERROR, "err"), "table": table_update([]), "fig": render.compare_figure([])}
    finally:  # also when the page goes away mid-run: stop the worker thread
        stop.set()
        end_stop(request, stop)


# ====================================================================== offline shape sweep (replay)
SWEEP_SHAPES = ("chain:2", "chain:4", "chain:6", "chain:8", "tree:3x2x1", "tree:2x2x2", "dynamic:5/4/20", "dynamic:8/4/20")
REPLAY_COLUMNS = ["#", "shape", "replay τ", "predicted tok/s", "predicted speedup"]
REPLAY_WIDTHS = ["36px", "190px", "70px", "86px", "90px"]


def shape_name(shape: str) -> str:
    """A replay shape (``core.replay``'s "chain:8", "tree:3x2x1", "dynamic:8/4/20") named as the
    rest of the page names shapes: "chain γ=8", "static tree 3,2,1", "dynamic tree: depth 8,
    top-4, 20 nodes"."""
    kind, _, arg = str(shape).partition(":")
    if kind == "chain":
        return f"chain γ={arg}"
    if kind == "tree":
        return "static tree " + arg.replace("x", ",")
    if kind == "dynamic" and arg.count("/") == 2:
        d, k, b = arg.split("/")
        return f"dynamic tree: depth {d}, top-{k}, {b} nodes"
    return str(shape)


REPLAY_LABEL = "predicted (replay + measured cost model)"


def replay_table(rows: list[dict], sampling: bool = False):
    """The ranked sweep (``core.replay.rank`` rows, best first). At T > 0 the τ estimate along the
    recorded path is added and every number is labelled an estimate."""
    cols = REPLAY_COLUMNS + (["τ estimate (T>0)"] if sampling else [])
    data = []
    for i, r in enumerate(rows, 1):
        tok_s = r.get("predicted_tok_s")
        row = [
            i,
            shape_name(r["shape"]),
            round(r["tau"], 2),
            round(tok_s, 1) if tok_s is not None else None,
            f"{r['predicted_speedup']:.2f}×" if r.get("predicted_speedup") is not None else None,
        ]
        if sampling:
            row.append(round(r["tau_estimate"], 2) if r.get("tau_estimate") is not None else None)
        data.append(row)
    label = f"Shapes ranked by speedup, {REPLAY_LABEL}" + (": an estimate at T > 0" if sampling else "")
    widths = REPLAY_WIDTHS + (["96px"] if sampling else [])
    return gr.update(value={"headers": cols, "data": data}, label=label, visible=bool(data), column_widths=widths)


@gpu
def run_replay(image, prompt, target, dtype, drafter, max_new_tokens, temperature, request: gr.Request = None):
    """Record one plain target run of the input (``core.replay.record``), then score the chosen
    drafter on every shape of ``SWEEP_SHAPES`` without running the target again, priced with the
    measured cost curve. Predictions, not measurements."""
    from core import costs
    from .run import resolve_drafter

    stop = new_stop(request)
    try:
        prompt, target, max_new, _, temp = checked_inputs(prompt, target, dtype, max_new_tokens, temperature)
        name = resolve_drafter(drafter, None) if drafter != "custom" else None
        if name is None:
            raise InputError("pick a drafter to sweep (n-gram, LayerSkip or a trained drafter)")
        img = read_image(image)
        sampling = SamplingConfig(temperature=temp, seed=0)
        yield {
            "status": status_html(f"Recording one plain target run, then replaying {len(SWEEP_SHAPES)} shapes…", "busy"),
            "table": replay_table([]),
        }
        pair = api.load_pair(target, name, dtype=dtype)
        rec = RP.record(pair.target, prompt, img, max_new_tokens=max_new)
        curve = costs.priced_curve(pair.target)
        t0 = time.perf_counter()
        rows = RP.rank(rec, {name: pair.drafter}, [RP.parse_shape(x) for x in SWEEP_SHAPES], curve, sampling)
        took = time.perf_counter() - t0
        best = rows[0]
        plain_tok_s = len(rec.output) / best["ar_s"] if best.get("ar_s") else 0.0
        msg = (
            f"Replayed {len(rows)} shapes for <b>{esc(name)}</b> against one recorded run of "
            f"{len(rec.output)} tokens in {took:.1f} s (the target was not run again). Best: "
            f"<b>{esc(shape_name(best['shape']))}</b>, τ {best['tau']:.2f}, {best['predicted_speedup']:.2f}× "
            f"{REPLAY_LABEL}; plain decoding priced at {plain_tok_s:.1f} tok/s from the cost curve the page's "
            "measured runs calibrate."
        )
        if not sampling.greedy:
            msg += (
                " <b>Estimate:</b> at T > 0 the recorded greedy output is one path; "
                "τ estimate = 1 + expected accepted tokens per step along it."
            )
        if rec.mismatches:
            msg += f" {len(rec.mismatches)} near-tie position(s) where teacher forcing differs from the run."
        yield {"status": status_html(msg, "ok" if sampling.greedy else "warn"), "table": replay_table(rows, not sampling.greedy)}
    except EXPECTED as e:
        msg = friendly(e)
        gr.Warning(msg)
        yield {"status": status_html(esc(msg), "err"), "table": replay_table([])}
    except Exception:
        log.exception("replay sweep failed")
        gr.Warning(GENERIC_ERROR)
        yield {"status": status_html(GENERIC_ERROR, "err"), "table": replay_table([])}
    finally:
        stop.set()
        end_stop(request, stop)


# ====================================================================== layout and wiring
def build(ctx, target, dtype) -> dict:
    first, ex_rows, dyn_default, d = ctx.first, ctx.ex_rows, ctx.dyn_default, ctx.defaults
    gr.Markdown(
        "Decode the **same input** with several drafters and draft shapes. Every configuration "
        "is timed against one plain-decoding baseline of the same target (the target and precision "
        "come from the *Model* settings on the Run tab)."
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            c_image = SafeImage(
                type="filepath", label="Image", height=190, value=first["path"] if first else None, sources=["upload", "clipboard"]
            )
            c_prompt = gr.Textbox(label="Prompt", lines=2, value=first["prompt"] if first else "Describe the image in detail.")
            with gr.Row():
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
            with gr.Accordion("Sweep shapes offline (replay)", open=False, elem_id="ss-replay"):
                gr.Markdown(
                    "One recorded target run scores the drafter on "
                    + "; ".join(shape_name(x) for x in SWEEP_SHAPES)
                    + " in seconds, without running the target again: "
                    f"{REPLAY_LABEL}.",
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
        with gr.Column(scale=7):
            c_status = gr.HTML(status_html("Tick configurations and press <b>Compare</b>."), elem_id="ss-compare-status")
            c_fig = gr.Plot(show_label=False, value=render.compare_figure([]), elem_id="ss-compare-fig")
            c_table = gr.Dataframe(
                headers=COLUMNS, value=[], interactive=False, wrap=True, label="Results", elem_id="ss-compare-table", column_widths=WIDTHS
            )
            r_status = gr.HTML("", elem_id="ss-replay-status")
            r_table = gr.Dataframe(
                headers=REPLAY_COLUMNS,
                value=[],
                interactive=False,
                wrap=True,
                label=f"Shapes ranked by speedup, {REPLAY_LABEL}",
                elem_id="ss-replay-table",
                visible=False,
                column_widths=REPLAY_WIDTHS,
            )
            gr.Markdown(
                "τ = tokens per speculative step (incl. bonus, excl. prefill) · accepted per step = accepted draft "
                "tokens per step (excl. bonus) · speedup = plain wall time / speculative wall "
                "time, median and range of the timed runs · same output = same token ids as plain "
                f"decoding. Shapes: chain γ={d.gamma}; static tree 3,2,2,1; dynamic tree = depth "
                f"{dyn_default.depth}, top-{dyn_default.top_k}, {dyn_default.budget} nodes.",
                elem_classes=["ss-note"],
            )

    outs = Outputs(ctx.demo, status=c_status, table=c_table, fig=c_fig)
    c_btn.click(
        outs.bind(run_compare),
        [c_image, c_prompt, target, dtype, c_configs, c_max_new, c_temp, c_repeats, c_visual],
        outs.list,
        api_name="compare",
        show_progress="minimal",
        **ctx.model,
    )
    r_outs = Outputs(ctx.demo, status=r_status, table=r_table)
    assert tuple(r_outs.names) == REPLAY_OUTPUTS
    r_btn.click(
        r_outs.bind(run_replay),
        [c_image, c_prompt, target, dtype, r_drafter, c_max_new, c_temp],
        r_outs.list,
        api_name="replay_sweep",
        show_progress="minimal",
        **ctx.model,
    )
    c_stop.click(request_stop, None, None, api_visibility="private", concurrency_limit=None)
    return {"configs": c_configs}
