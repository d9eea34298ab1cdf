"""The Run tab: one input decoded live, then timed against plain decoding.

``run_decoding`` yields {output name: value} (see ``ui.common.Outputs``); ``build`` lays out
the tab and wires it. Public API: /run (streaming).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import gradio as gr

from core import api
from core.adapters import InputError
from core.drafters import CHOICES, DraftSpec, spec_for
from core.sampling import SamplingConfig
from core.trace import Trace

from .. import limits, presets, render
from ..common import (EXPECTED, GENERIC_ERROR, Outputs, SafeImage, differs_note, esc, fallback_hint, friendly,
                      read_image, status_html)
from ..session import Deadline, end_stop, gpu, new_stop, request_stop
from ..views import full_views, result_payload, save_trace, step_slider_update

log = logging.getLogger("specscope.app")

LIVE_EVERY = 0.25          # seconds between live updates of the text while decoding
TREE_EVERY = 0.75          # ... and of the draft tree (a plotly redraw costs the browser far more)
STRATEGY_CHOICES = [("auto (measured)", "auto"), ("chain", "chain"), ("static tree", "tree"),
                    ("dynamic tree", "dynamic")]
OUTPUTS = ("status", "answer", "tree", "step", "spec_text", "ar_text", "summary", "time_fig", "acc_fig",
           "depth_fig", "steps_html", "download", "result", "state")


# ====================================================================== parameters
@dataclass
class RunParams:
    prompt: str
    image: object
    target: str
    drafter: str | None
    mode: str
    dtype: str
    spec: DraftSpec
    sampling: SamplingConfig
    max_new_tokens: int

    def meta(self) -> dict:
        return {"temperature": self.sampling.temperature, "prompt": self.prompt,
                "has_image": self.image is not None, "app": "specscope"}


def resolve_drafter(drafter, custom_drafter) -> str | None:
    choice = (drafter or "none").strip() if isinstance(drafter, str) else "none"
    if choice == "custom":
        name = limits.check_model_id(custom_drafter, "drafter")
    else:
        name = limits.check_model_id(choice, "drafter")
    return None if name in ("none", "ar") else name


def parse_params(image, prompt, target, drafter, custom_drafter, mode, dtype, strategy, gamma, branching,
                 depth, top_k, budget, temperature, top_p, max_new_tokens, seed) -> RunParams:
    prompt = limits.check_prompt(prompt)
    target = limits.check_model_id(target or limits.default_target(), "target")
    drafter_name = resolve_drafter(drafter, custom_drafter)
    if mode not in ("multimodal", "text-only"):
        raise InputError(f"drafter mode must be 'multimodal' or 'text-only', got {mode!r}")
    if dtype not in ("float32", "bfloat16"):
        raise InputError(f"precision must be float32 or bfloat16, got {dtype!r}")
    if strategy not in CHOICES:
        raise InputError(f"strategy must be one of {', '.join(CHOICES)}, got {strategy!r}")
    gamma = limits.check_int("gamma (draft length)", gamma, 1, 16)
    spec = spec_for(strategy, None if strategy == "auto" else gamma,   # auto: up to AUTO_CAP, per step
                    branching=limits.parse_branching(branching),
                    depth=limits.check_int("depth", depth, 1, 12),
                    top_k=limits.check_int("top-k (expansions per depth)", top_k, 1, 16),
                    budget=limits.check_int("node budget", budget, 1, 256))
    sampling = SamplingConfig(temperature=limits.check_float("temperature", temperature, 0.0, 2.0),
                              top_p=limits.check_float("top-p", top_p, 0.0, 1.0, lo_open=True),
                              seed=limits.check_int("seed", seed, 0, 2**31 - 1))
    max_new = limits.check_int("max new tokens", max_new_tokens, 1, limits.MAX_NEW_TOKENS)
    img = read_image(image)
    return RunParams(prompt, img, target, drafter_name, mode, dtype, spec, sampling, max_new)


def drafter_display(name: str | None, pair) -> str:
    """A short drafter name for the page: the registry name rather than a local path."""
    full = getattr(pair.drafter, "name", None) or str(name)
    if name in api.SHIPPED_DRAFTERS or ("/" in full and full.split(" ")[0].startswith(str(api.ROOT))):
        return f"the {name} drafter"
    return full





@gpu
def run_decoding(image, prompt, target, drafter, custom_drafter, mode, dtype, strategy, gamma, branching,
                 depth, top_k, budget, temperature, top_p, max_new_tokens, seed, ar_baseline,
                 request: gr.Request = None):
    """Decode once (live), then optionally the same input autoregressively for the speedup."""
    out = dict
    stop = new_stop(request)
    try:
        p = parse_params(image, prompt, target, drafter, custom_drafter, mode, dtype, strategy, gamma,
                         branching, depth, top_k, budget, temperature, top_p, max_new_tokens, seed)
        yield out(status=status_html("Loading the models (the first use takes a few seconds)…", "busy"))
        t0 = time.perf_counter()
        pair = api.load_pair(p.target, p.drafter, dtype=p.dtype, mode=p.mode)
        if time.perf_counter() - t0 > 0.5:
            log.info("loaded %s + %s in %.1f s", p.target, p.drafter, time.perf_counter() - t0)
        speculative = pair.drafter is not None
        if ar_baseline or speculative:
            yield out(status=status_html("Warming up (one-off costs are kept out of the timings)…", "busy"))
            api.warm(pair, p.prompt, p.image, p.spec, p.sampling, min(8, p.max_new_tokens))
        shape = {"chain": f"chain, γ={p.spec.gamma}", "tree": "static tree " + ",".join(map(str, p.spec.branching)),
                 "dynamic": f"dynamic tree, depth {p.spec.depth}, top-{p.spec.top_k}, {p.spec.budget} nodes"}
        if p.spec.adaptive:
            shape["chain"] = f"auto: a chain of 0-{p.spec.gamma} tokens per step, sized by the measured costs"
        who = esc(drafter_display(p.drafter, pair))
        what = (f"Speculative decoding with <b>{who}</b> ({shape[p.spec.strategy]})"
                if speculative else "Plain autoregressive decoding (no drafter)")
        yield out(status=status_html(f"{what}: decoding…", "busy"), answer=[], ar_text=gr.update(value=""),
                  spec_text=gr.update(value=""))

        limit = Deadline(stop)           # covers both decoding passes of this request
        last_tree = 0.0
        for snap in api.stream(pair, p.prompt, p.image, p.spec, p.sampling, p.max_new_tokens,
                               speculative=speculative, should_stop=limit, every=LIVE_EVERY, meta=p.meta()):
            if snap.stop_reason:         # the finished trace
                tr = snap
                break
            n = len(snap.steps)
            extra = {}
            if time.monotonic() - last_tree >= TREE_EVERY:
                last_tree = time.monotonic()
                extra = dict(tree=render.tree_figure(snap, n - 1), step=step_slider_update(snap))
            yield out(status=status_html(f"{what}: {len(snap.output)} tokens after {n} target "
                                         f"forward{'s' if n != 1 else ''}…", "busy"),
                      answer=render.highlighted_tokens(snap), **extra)

        ar = None
        timed_out = tr.stop_reason == "cancelled" and limit.hit
        if timed_out:
            tr.stop_reason = "time_limit"
        cancelled = tr.stop_reason == "cancelled"
        baseline_cut = False
        if ar_baseline and speculative and not cancelled and not timed_out:
            yield out(status=status_html("Now the same input with plain autoregressive decoding "
                                         "(the baseline for the speedup)…", "busy"),
                      **{k: v for k, v in full_views(tr, None).items() if k != "ar_text"},
                      ar_text=gr.update(value="", label="Plain autoregressive · decoding…"))
            for snap in api.stream(pair, p.prompt, p.image, p.spec, p.sampling, p.max_new_tokens,
                                   speculative=False, should_stop=limit, every=LIVE_EVERY, meta=p.meta()):
                if snap.stop_reason:
                    ar = snap
                    break
                yield out(ar_text=gr.update(value=pair.target.decode(snap.output),
                                            label=f"Plain autoregressive · {len(snap.output)} tokens so far…"))
            if ar is not None and ar.stop_reason == "cancelled":
                baseline_cut = limit.hit
                ar = None
        if ar is not None:
            tr.meta["ar_baseline"] = {"output": list(ar.output), "wall_s": round(ar.wall_s, 6), "text": ar.text,
                                      "stop_reason": ar.stop_reason}
        path = save_trace(tr)
        views = full_views(tr, ar)
        sm = tr.summary()
        msg = f"Done: {sm['new_tokens']} tokens in {sm['wall_s']:.2f} s, τ = {sm['tau']:.2f} tokens per target forward"
        if ar is not None and tr.wall_s > 0:
            same, _ = render.outputs_identical(tr, ar)
            msg += (f"; <b>{ar.wall_s / tr.wall_s:.2f}× speedup</b> over plain decoding, output "
                    f"{'identical ✓' if same else 'differs (' + esc(differs_note(p.sampling.temperature, pair.target.dtype)) + ')'}")
        if p.spec.adaptive and tr.steps:
            lens = [len(st.tokens) for st in tr.steps]
            msg += (f"; auto drafted {sum(lens) / len(lens):.1f} tokens per step on average "
                    f"({min(lens)}-{max(lens)}; {sum(1 for n in lens if n == 0)} plain steps)")
        if cancelled:
            msg = f"Stopped by you after {sm['new_tokens']} tokens. Everything decoded so far is shown"
        elif timed_out:
            msg = f"{limit.message()}: stopped after {sm['new_tokens']} tokens. Everything decoded so far is shown"
        elif baseline_cut:
            msg += (f". {limit.message()}: the plain-decoding baseline was cut short, so no speedup is shown")
        warn = cancelled or timed_out or baseline_cut
        yield out(status=status_html(msg + ".", "warn" if warn else "ok"), **views,
                  download=path,
                  result=result_payload(tr, ar, path), state=tr)
    except EXPECTED as e:
        msg = friendly(e) + fallback_hint(e, target)
        gr.Warning(msg)
        yield out(status=status_html(esc(msg), "err"))
    except Exception:  # noqa: BLE001
        log.exception("run failed")
        gr.Warning(GENERIC_ERROR)
        yield out(status=status_html(GENERIC_ERROR, "err"))
    finally:             # also when the page goes away mid-run: stop the worker thread
        stop.set()
        end_stop(request, stop)


def show_step(tr, step):
    """Re-draw the draft tree of step ``step`` (1-based) of the stored trace."""
    if not isinstance(tr, Trace) or not tr.steps:
        return gr.skip()
    try:
        k = limits.check_int("step", step, 1, len(tr.steps))
    except InputError:
        return gr.skip()
    return render.tree_figure(tr, k - 1)


def nudge_step(tr, step, delta: int):
    if not isinstance(tr, Trace) or not tr.steps:
        return {"step": gr.skip()}
    try:
        k = int(step) + delta
    except (TypeError, ValueError):
        k = len(tr.steps)
    k = min(max(k, 1), len(tr.steps))
    return {"step": gr.update(value=k), "tree": render.tree_figure(tr, k - 1)}



# ====================================================================== presets
def apply_preset(key):
    """Fill the model fields from a preset; a preset that cannot run here falls back to the default."""
    try:
        p = presets.get(key)
    except KeyError:     # "custom"
        return {"preset_note": status_html("Type a target (Hub id or model folder) and a drafter below.", "")}
    problem = presets.check_loadable(p)
    if problem:
        problem = problem.replace("**", "")
        gr.Warning(problem)
        d = presets.get("default")
        return dict(preset="default", target=d.target, drafter=d.drafter, custom_drafter="", mode=d.mode,
                    dtype=d.dtype, preset_note=status_html(esc(problem), "warn"))
    if p.key == "default":
        return dict(target=p.target, drafter=p.drafter, custom_drafter="", mode=p.mode, dtype=p.dtype,
                    preset_note=status_html(esc(p.note), ""))
    note = status_html(esc(p.note) + " Press <b>Run</b> to load it.", "")
    return dict(target=p.target, drafter="custom", custom_drafter=p.drafter, mode=p.mode, dtype=p.dtype,
                preset_note=note)



# ====================================================================== layout and wiring
def build(ctx) -> dict:
    """The Run tab's components and events (inside ``gr.Tab``); returns the components other
    tabs share (target, dtype, drafter)."""
    first, ex_rows, d = ctx.first, ctx.ex_rows, ctx.defaults
    chain_default, dyn_default = ctx.chain_default, ctx.dyn_default
    drafter_default = ctx.drafter_default
    preset_list = presets.choices()
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=340):
            image = SafeImage(type="filepath", label="Image", height=240, elem_id="ss-image",
                              value=first["path"] if first else None, sources=["upload", "clipboard"])
            prompt = gr.Textbox(label="Prompt", lines=2, max_lines=8,
                                value=first["prompt"] if first else "Describe the image in detail.",
                                placeholder="Ask something about the image…")
            drafter = gr.Dropdown(presets.drafter_choices(), value=drafter_default, label="Drafter")
            strategy = gr.Radio(STRATEGY_CHOICES, value="auto", label="Draft shape",
                                info="auto: each step's draft length chosen from this machine's "
                                     "measured costs and the drafter's confidence")
            with gr.Row():
                run_btn = gr.Button("▶ Run", variant="primary", scale=3)
                stop_btn = gr.Button("■ Stop", variant="stop", scale=1, elem_id="ss-stop")
            ar_baseline = gr.Checkbox(value=True, label="Also run plain autoregressive decoding "
                                                        "(measures the speedup, checks the output)")
            if ex_rows:
                gr.Examples(ex_rows, inputs=[image, prompt], label="Examples: click one",
                            examples_per_page=4, cache_examples=False)
            with gr.Accordion("Model: target, presets, precision", open=False):
                preset = gr.Dropdown(preset_list, value="default", label="Preset pair")
                preset_note = gr.HTML(status_html(esc(presets.get("default").note)))
                target = gr.Textbox(value=limits.default_target(), label="Target model",
                                    info="'default' = the embedded model; or a Hub id (owner/name)")
                custom_drafter = gr.Textbox(value="", label="Custom drafter (Hub id or model folder)",
                                            info="used when the drafter is 'custom'",
                                            placeholder="e.g. HuggingFaceTB/SmolVLM-256M-Instruct")
                with gr.Row():
                    mode = gr.Radio(["multimodal", "text-only"], value="multimodal",
                                    label="Drafter sees the image?")
                    dtype = gr.Radio(["float32", "bfloat16"], value=presets.auto_dtype(), label="Precision",
                                     info="default: bfloat16 where this CPU/GPU computes it natively")
            with gr.Accordion("Draft shape parameters", open=False):
                with gr.Row():
                    gamma = gr.Slider(1, 16, value=chain_default.gamma, step=1, label="Chain: γ tokens",
                                      info="fixed chains only (auto drafts up to 16, per step)")
                    branching = gr.Textbox(value="3,2,2,1", label="Static tree: children per depth")
                with gr.Row():
                    depth = gr.Slider(1, 12, value=dyn_default.depth, step=1, label="Dynamic: depth")
                    top_k = gr.Slider(1, 16, value=dyn_default.top_k, step=1, label="Dynamic: top-k")
                budget = gr.Slider(1, 256, value=dyn_default.budget, step=1, label="Dynamic: node budget",
                                   info="default: the fastest on this machine (python -m core.tune)")
            with gr.Accordion("Sampling", open=False):
                with gr.Row():
                    temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p")
                with gr.Row():
                    max_new = gr.Slider(1, limits.MAX_NEW_TOKENS, value=128, step=1, label="Max new tokens",
                                        elem_id="ss-maxnew")
                    seed = gr.Number(value=0, label="Seed")

        with gr.Column(scale=7, min_width=480):
            run_status = gr.HTML(status_html("Pick an example or upload an image, then press <b>Run</b>."))
            answer = gr.HighlightedText(label="Answer: every token coloured by where it came from",
                                        color_map=render.COLOR_MAP, show_legend=True,
                                        combine_adjacent=False, elem_id="ss-answer")
            tree_plot = gr.Plot(show_label=False, elem_id="ss-tree")
            with gr.Row(equal_height=True):
                prev_btn = gr.Button("◀", scale=0, min_width=50, size="sm")
                step = gr.Slider(1, 2, value=1, step=1, label="Step", visible=False, scale=8,
                                 elem_id="ss-step")
                next_btn = gr.Button("▶", scale=0, min_width=50, size="sm")

    gr.Markdown("### Speculative vs plain decoding\n"
                "Same target, same input. At temperature 0 speculative decoding is lossless: both "
                "answers must be identical, token for token. With sampling only their distributions "
                "match, so the texts may differ.", elem_classes=["ss-note"])
    with gr.Row():
        spec_text = gr.Textbox(label="Speculative", lines=3, max_lines=8, interactive=False,
                               buttons=["copy"])
        ar_text = gr.Textbox(label="Plain autoregressive", lines=3, max_lines=8, interactive=False,
                             buttons=["copy"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            summary = gr.Markdown("Numbers appear here after a run.", elem_id="ss-summary")
            with gr.Row():
                download = gr.DownloadButton("⬇ Download trace (JSON)", variant="secondary",
                                             elem_id="ss-download")
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

    outs = Outputs(ctx.demo, status=run_status, answer=answer, tree=tree_plot, step=step, spec_text=spec_text,
                   ar_text=ar_text, summary=summary, time_fig=time_fig, acc_fig=acc_fig, depth_fig=depth_fig,
                   steps_html=steps_html, download=download, result=result, state=run_state)
    assert tuple(outs.names) == OUTPUTS
    model, light = ctx.model, ctx.light
    run_inputs = [image, prompt, target, drafter, custom_drafter, mode, dtype, strategy, gamma, branching,
                  depth, top_k, budget, temperature, top_p, max_new, seed, ar_baseline]
    run_btn.click(outs.bind(run_decoding), run_inputs, outs.list, api_name="run", show_progress="minimal", **model)
    stop_btn.click(request_stop, None, None, api_visibility="private", concurrency_limit=None)
    step.input(show_step, [run_state, step], tree_plot, api_visibility="private",
               trigger_mode="always_last", show_progress="hidden", **light)
    nav = Outputs(ctx.demo, step=step, tree=tree_plot)
    prev_btn.click(nav.bind(lambda tr, s: nudge_step(tr, s, -1)), [run_state, step], nav.list,
                   api_visibility="private", show_progress="hidden", **light)
    next_btn.click(nav.bind(lambda tr, s: nudge_step(tr, s, +1)), [run_state, step], nav.list,
                   api_visibility="private", show_progress="hidden", **light)
    pre = Outputs(ctx.demo, preset=preset, target=target, drafter=drafter, custom_drafter=custom_drafter,
                  mode=mode, dtype=dtype, preset_note=preset_note)
    preset.select(pre.bind(apply_preset), preset, pre.list, api_visibility="private", show_progress="hidden",
                  **light)
    return {"target": target, "dtype": dtype, "drafter": drafter}
