"""The Compare tab: the same input decoded with several drafters / draft shapes, each timed
against plain decoding. Public API: /compare (streaming)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import gradio as gr

from core import api
from core.adapters import InputError
from core.drafters import DraftSpec
from core.sampling import SamplingConfig
from core.tune import tuned_spec

from .. import limits, presets, render
from ..common import (EXPECTED, GENERIC_ERROR, Outputs, SafeImage, defaults, differs_note, esc, fallback_hint,
                      friendly, read_image, status_html)
from ..session import Deadline, end_stop, gpu, new_stop, request_stop
from .run import NO_IMAGE

log = logging.getLogger("specscope.app")
OUTPUTS = ("status", "table", "fig")


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
    """The configurations offered; the chain length is the app's one default (``common.defaults``)."""
    g = defaults().gamma
    chain, tree, dyn = DraftSpec("chain", gamma=g), DraftSpec("tree", branching=(3, 2, 2, 1)), default_shapes()[1]
    out = [CompareConfig(f"n-gram · chain γ={g}", "ngram", chain),
           CompareConfig(f"LayerSkip · chain γ={g}", "layerskip", chain),
           CompareConfig("LayerSkip · static tree 3,2,2,1", "layerskip", tree),
           CompareConfig("LayerSkip · dynamic tree", "layerskip", dyn)]
    for name, nice in (("msd", "MSD"), ("small-vlm", "small VLM"), ("massv", "MASSV"), ("text-lm", "text LM")):
        out.append(CompareConfig(f"{nice} · chain γ={g}", name, chain))
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
    return {"drafter": gr.update(choices=presets.drafter_choices()),
            "t_drafter": gr.update(choices=[c for c in presets.drafter_choices() if c[1] not in ("none", "custom")]),
            "configs": gr.update(choices=compare_choices())}


COLUMNS = ["configuration", "τ", "accepted per step", "tok/s", "plain tok/s", "speedup (range)", "same output"]


def speed_cell(med: float, rounds: list[float]) -> str:
    """"1.93× (1.76–2.25)": the median of the timed runs and their range."""
    return f"{med:.2f}× ({min(rounds):.2f}–{max(rounds):.2f})" if len(rounds) > 1 else f"{med:.2f}×"
WIDTHS = ["30%", "8%", "13%", "10%", "12%", "15%", "12%"]


def table_update(rows: list[list]):
    """The results table; the "note" column only when some row has a note."""
    if any(r[-1] for r in rows):
        return gr.update(value={"headers": COLUMNS + ["note"], "data": rows},
                         column_widths=["24%", "6%", "10%", "8%", "9%", "13%", "9%", "21%"])
    return gr.update(value={"headers": COLUMNS, "data": [r[:-1] for r in rows]}, column_widths=WIDTHS)


@gpu
def run_compare(image, prompt, target, dtype, configs, max_new_tokens, temperature, repeats=3,
                request: gr.Request = None):
    """Decode the same input with each selected configuration. One plain-decoding baseline for
    the input, measured ``repeats`` times interleaved with the first configuration's runs, is
    shared by every row, so the rows' speedups are comparable."""
    stop = new_stop(request)
    rows: list[list] = []
    fig_rows: list[dict] = []
    try:
        prompt = limits.check_prompt(prompt)
        target = limits.check_model_id(target or limits.default_target(), "target")
        if dtype not in ("float32", "bfloat16"):
            raise InputError(f"precision must be float32 or bfloat16, got {dtype!r}")
        max_new, capped = limits.check_max_new(max_new_tokens)
        temp = limits.check_float("temperature", temperature, 0.0, 2.0)
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
        notes = [n for n in (capped[0].upper() + capped[1:] + "." if capped else "",
                             NO_IMAGE if img is None else "") if n]
        for n in notes:
            gr.Warning(n)
        with_notes = lambda h: h + "".join(status_html(esc(n), "warn") for n in notes)  # noqa: E731
        sampling = SamplingConfig(temperature=temp, seed=0)
        yield {"status": with_notes(status_html("Loading the target…", "busy")), "table": table_update([]),
               "fig": render.compare_figure([])}
        limit = Deadline(stop)           # one time limit for all configurations of this request
        baseline = None                  # plain runs of this input, shared by every row
        for i, cfg in enumerate(chosen):
            if limit():
                break
            what = "plain and speculative decoding, alternating" if baseline is None else \
                "speculative decoding (against the shared plain baseline)"
            yield {"status": with_notes(status_html(
                f"Configuration {i + 1} of {len(chosen)}: <b>{esc(cfg.label)}</b>: {rounds_n} timed run"
                f"{'s' if rounds_n != 1 else ''} of {what}…", "busy"))}
            try:
                pair = api.load_pair(target, cfg.drafter, dtype=dtype, mode=cfg.mode)
                res = api.compare(pair, prompt, img, cfg.spec, sampling, max_new, repeats=rounds_n,
                                  baseline=baseline, should_stop=limit, meta={"temperature": temp})
            except EXPECTED as e:
                rows.append([cfg.label, None, None, None, None, None, "", friendly(e)])
                continue
            if any(r.stop_reason == "cancelled" for r in res["ar_runs"] + res["spec_runs"]):
                break
            if baseline is None:
                baseline = res["ar_runs"]
            sp, ar = res["spec"], res["ar"]
            s, a = sp.summary(), ar.summary()
            note = "" if res["identical"] else differs_note(temp, pair.target.dtype)
            rows.append([cfg.label, round(s["tau"], 2), round(s["accepted_per_step"], 2), round(s["tokens_per_s"], 1),
                         round(a["tokens_per_s"], 1), speed_cell(res["speedup"], res["speedups"]),
                         "✓ yes" if res["identical"] else "✗ no", note])
            fig_rows.append({"config": cfg.label, "tau": s["tau"], "speedup": res["speedup"],
                             "speedups": res["speedups"], "tokens_per_s": s["tokens_per_s"],
                             "identical": res["identical"]})
            yield {"table": table_update(rows), "fig": render.compare_figure(fig_rows)}
        done = "Stopped." if stop.is_set() else f"{limit.message()}." if limit.hit else "Done."
        slower = [r["config"] for r in fig_rows if r["speedup"] < 1]
        kind = "warn" if stop.is_set() or limit.hit or slower else "ok"
        msg = (f"{done} {len(fig_rows)} configuration(s) measured on the same input, against one shared "
               f"plain-decoding baseline ({rounds_n} timed run{'s' if rounds_n != 1 else ''} each, median shown). "
               "Speedup = plain wall time / speculative wall time.")
        if slower:
            msg += (f" <b>{len(slower)} slower than plain decoding</b> here: "
                    + ", ".join(esc(c) for c in slower) + ".")
        yield {"status": with_notes(status_html(msg, kind)), "table": table_update(rows),
               "fig": render.compare_figure(fig_rows)}
    except EXPECTED as e:
        msg = friendly(e)
        msg += fallback_hint(e, target, msg)
        gr.Warning(msg)
        yield {"status": status_html(esc(msg), "err"), "table": table_update([]), "fig": render.compare_figure([])}
    except Exception:  # noqa: BLE001
        log.exception("compare failed")
        gr.Warning(GENERIC_ERROR)
        yield {"status": status_html(GENERIC_ERROR, "err"), "table": table_update([]),
               "fig": render.compare_figure([])}
    finally:             # also when the page goes away mid-run: stop the worker thread
        stop.set()
        end_stop(request, stop)


# ====================================================================== layout and wiring
def build(ctx, target, dtype) -> dict:
    first, ex_rows, dyn_default, d = ctx.first, ctx.ex_rows, ctx.dyn_default, ctx.defaults
    gr.Markdown("Decode the **same input** with several drafters and draft shapes. Every configuration "
                "is timed against one plain-decoding baseline of the same target (the target and precision "
                "come from the *Model* settings on the Run tab).")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            c_image = SafeImage(type="filepath", label="Image", height=190,
                                value=first["path"] if first else None, sources=["upload", "clipboard"])
            c_prompt = gr.Textbox(label="Prompt", lines=2,
                                  value=first["prompt"] if first else "Describe the image in detail.")
            with gr.Row():
                c_btn = gr.Button("▶ Compare", variant="primary", scale=3, elem_id="ss-compare-btn")
                c_stop = gr.Button("■ Stop", variant="stop", scale=1)
            c_configs = gr.CheckboxGroup(compare_choices(), value=default_compare_selection(),
                                         label="Configurations")
            with gr.Row():
                c_max_new = gr.Number(value=d.max_new_tokens, precision=0, label="Max new tokens",
                                      info=f"1 to {limits.MAX_NEW_TOKENS}")
                c_temp = gr.Slider(0, 2, value=d.temperature, step=0.05, label="Temperature")
                c_repeats = gr.Number(value=d.repeats, precision=0, minimum=1, maximum=9, label="Timed runs")
            if ex_rows:
                gr.Examples(ex_rows, inputs=[c_image, c_prompt], label="Examples",
                            examples_per_page=4, cache_examples=False)
        with gr.Column(scale=7):
            c_status = gr.HTML(status_html("Tick configurations and press <b>Compare</b>."))
            c_fig = gr.Plot(show_label=False, value=render.compare_figure([]), elem_id="ss-compare-fig")
            c_table = gr.Dataframe(headers=COLUMNS, value=[], interactive=False, wrap=True,
                                   label="Results", elem_id="ss-compare-table", column_widths=WIDTHS)
            gr.Markdown("τ = tokens per target forward (incl. bonus) · accepted per step = accepted draft "
                        "tokens per step (excl. bonus) · speedup = plain wall time / speculative wall "
                        "time, median and range of the timed runs · same output = same token ids as plain "
                        f"decoding. Shapes: chain γ={d.gamma}; static tree 3,2,2,1; dynamic tree = depth "
                        f"{dyn_default.depth}, top-{dyn_default.top_k}, {dyn_default.budget} nodes.",
                        elem_classes=["ss-note"])

    outs = Outputs(ctx.demo, status=c_status, table=c_table, fig=c_fig)
    c_btn.click(outs.bind(run_compare), [c_image, c_prompt, target, dtype, c_configs, c_max_new, c_temp, c_repeats],
                outs.list, api_name="compare", show_progress="minimal", **ctx.model)
    c_stop.click(request_stop, None, None, api_visibility="private", concurrency_limit=None)
    return {"configs": c_configs}
