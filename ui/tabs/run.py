"""The Run tab: one input decoded live, then timed against plain decoding.

``run_decoding`` yields {output name: value} (see ``ui.common.Outputs``); ``build`` lays out
the tab and wires it. Public API: /run (streaming).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import gradio as gr

from core import api, visual as V
from core.errors import InputError
from core.paths import ROOT, SHIPPED_DRAFTERS
from core.drafters import CHOICES, DraftSpec, spec_for
from core.sampling import SamplingConfig
from core.trace import Trace

from .. import limits, presets, render
from ..common import (
    EXPECTED,
    GENERIC_ERROR,
    SafeImage,
    bound_note,
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
from ..views import full_views, result_payload, save_trace, step_slider_update

log = logging.getLogger("specscope.app")

LIVE_EVERY = 0.25  # seconds between live updates of the text while decoding
TREE_EVERY = 0.75  # ... and of the draft tree (a plotly redraw costs the browser far more)
STRATEGY_CHOICES = [("auto (measured)", "auto"), ("chain", "chain"), ("static tree", "tree"), ("dynamic tree", "dynamic")]
# the /run API's outputs, in this order (results / more: the sections hidden until there is a result)
OUTPUTS = (
    "status",
    "answer",
    "tree",
    "step",
    "spec_text",
    "ar_text",
    "summary",
    "time_fig",
    "acc_fig",
    "depth_fig",
    "steps_html",
    "download",
    "result",
    "visual",
    "state",
    "results",
    "more",
)
NO_IMAGE = "No image: answering from the text only."
VISUAL_NO_IMAGE = "Which tokens need the image: this run had no image, so there is nothing to measure."


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
    notes: tuple = ()  # shown with the result: a capped value, a missing image

    def meta(self) -> dict:
        return {"temperature": self.sampling.temperature, "prompt": self.prompt, "has_image": self.image is not None, "app": "specscope"}


def resolve_drafter(drafter, custom_drafter) -> str | None:
    choice = (drafter or "none").strip() if isinstance(drafter, str) else "none"
    if choice == "custom":
        name = limits.check_model_id(custom_drafter, "drafter")
    else:
        name = limits.check_model_id(choice, "drafter")
    return None if name in ("none", "ar") else name


def parse_params(
    image,
    prompt,
    target,
    drafter,
    custom_drafter,
    mode,
    dtype,
    strategy,
    gamma,
    branching,
    depth,
    top_k,
    budget,
    temperature,
    top_p,
    max_new_tokens,
    seed,
) -> RunParams:
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
    spec = spec_for(
        strategy,
        None if strategy == "auto" else gamma,  # auto: up to AUTO_CAP, per step
        branching=limits.parse_branching(branching),
        depth=limits.check_int("depth", depth, 1, 12),
        top_k=limits.check_int("top-k (expansions per depth)", top_k, 1, 16),
        budget=limits.check_int("node budget", budget, 1, 256),
    )
    sampling = SamplingConfig(
        temperature=limits.check_float("temperature", temperature, 0.0, 2.0),
        top_p=limits.check_float("top-p", top_p, 0.0, 1.0, lo_open=True),
        seed=limits.check_int("seed", seed, 0, 2**31 - 1),
    )
    max_new, capped = limits.check_max_new(max_new_tokens)
    img = read_image(image)
    notes = tuple(n for n in (capped[0].upper() + capped[1:] + "." if capped else "", NO_IMAGE if img is None else "") if n)
    return RunParams(prompt, img, target, drafter_name, mode, dtype, spec, sampling, max_new, notes)


def drafter_display(name: str | None, pair) -> str:
    """A short drafter name for the page: the registry name rather than a local path."""
    full = getattr(pair.drafter, "name", None) or str(name)
    if name in SHIPPED_DRAFTERS or ("/" in full and full.split(" ")[0].startswith(str(ROOT))):
        return f"the {name} drafter"
    return full.rsplit("/", 1)[-1] if full.startswith("/") else full


def shape_text(spec: DraftSpec) -> str:
    if spec.adaptive:
        return f"auto: a chain of 0-{spec.gamma} tokens per step, sized by the measured costs"
    return {
        "chain": f"chain, γ={spec.gamma}",
        "tree": "static tree " + ",".join(map(str, spec.branching)),
        "dynamic": f"dynamic tree, depth {spec.depth}, top-{spec.top_k}, {spec.budget} nodes",
    }[spec.strategy]


def cleared() -> dict:
    """Every result view emptied and hidden: what an error leaves (no stale answer below it)."""
    return dict(
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
    )


def speed_message(med: float, rounds: list[float]) -> tuple[str, str]:
    """(text, status kind) for a measured speedup: a slowdown is a warning, not a success."""
    txt = render.speedup_text(med, rounds)
    if med >= 1.0:
        return f"<b>{txt} speedup over plain decoding</b>", "ok"
    return (f"<b>slower than plain decoding: {txt}</b> (here the drafter costs more time than its accepted tokens save)", "warn")


def with_notes(html_status: str, notes) -> str:
    return html_status + "".join(status_html(esc(n), "warn") for n in notes)


def visual_views(pair, tr: Trace, p: RunParams, wanted: bool) -> dict:
    """The "Which tokens need the image?" outputs of a finished run. Off: nothing is computed.
    On with an image: ``api.visual_dependence`` (two target forwards; call it only after the
    timed runs), stored in ``tr.visual``; the answer is shown marked instead of the plain one.
    On without an image: a short note."""
    if not wanted:
        return {"visual": gr.update(value="", visible=False)}
    if p.image is None:
        return {"visual": gr.update(value=f'<div class="ss-vis-note">{esc(VISUAL_NO_IMAGE)}</div>', visible=True)}
    res = api.visual_dependence(pair, tr, p.prompt, p.image)
    for r in res["tokens"]:  # the pieces the hover names ("argmax without the image: …")
        k = str(r["argmax_noimg"])
        if k not in tr.vocab:
            try:
                tr.vocab[k] = pair.target.decode_piece(int(k))
            except Exception:  # a piece the tokenizer cannot decode stays "<id>"
                pass
    split = V.split_acceptance(tr) if pair.drafter is not None else None
    return {
        "visual": gr.update(value=render.visual_panel_html(tr, split), visible=True),
        "answer": gr.update(value=render.highlighted_tokens(tr), visible=False),
    }


# ====================================================================== the handler
@gpu
def run_decoding(
    image,
    prompt,
    target,
    drafter,
    custom_drafter,
    mode,
    dtype,
    strategy,
    gamma,
    branching,
    depth,
    top_k,
    budget,
    temperature,
    top_p,
    max_new_tokens,
    seed,
    ar_baseline,
    repeats=3,
    compact=False,
    visual=False,
    request: gr.Request = None,
):
    """Decode once live (shown as it goes), then time plain vs speculative decoding ``repeats``
    times, alternating, without redrawing the page (the median and range are reported)."""
    stop = new_stop(request)
    try:
        p = parse_params(
            image,
            prompt,
            target,
            drafter,
            custom_drafter,
            mode,
            dtype,
            strategy,
            gamma,
            branching,
            depth,
            top_k,
            budget,
            temperature,
            top_p,
            max_new_tokens,
            seed,
        )
        rounds_n = limits.check_int("timing runs", repeats if repeats is not None else 3, 1, 9)
        compact = bool(compact)
        for n in p.notes:
            gr.Warning(n)
        busy = lambda msg: with_notes(status_html(msg, "busy"), p.notes)
        yield dict(
            status=busy("Loading the models (the first use takes a few seconds)…"),
            answer=gr.update(value=[], visible=True),
            visual=gr.update(value="", visible=False),
            more=gr.update(visible=False),
        )
        t0 = time.perf_counter()
        pair = api.load_pair(p.target, p.drafter, dtype=p.dtype, mode=p.mode)
        if time.perf_counter() - t0 > 0.5:
            log.info("loaded %s + %s in %.1f s", p.target, p.drafter, time.perf_counter() - t0)
        speculative = pair.drafter is not None
        if ar_baseline or speculative:
            yield dict(status=busy("Warming up (one-off costs are kept out of the timings)…"))
            api.warm(pair, p.prompt, p.image, p.spec, p.sampling, min(8, p.max_new_tokens))
        who = esc(drafter_display(p.drafter, pair))
        what = (
            f"Speculative decoding with <b>{who}</b> ({shape_text(p.spec)})"
            if speculative
            else "Plain autoregressive decoding (no drafter)"
        )
        yield dict(status=busy(f"{what}: decoding…"), answer=[], ar_text=gr.update(value=""), spec_text=gr.update(value=""))

        limit = Deadline(stop)  # covers every decoding pass of this request
        last_tree, tr = 0.0, None
        for snap in api.stream(
            pair,
            p.prompt,
            p.image,
            p.spec,
            p.sampling,
            p.max_new_tokens,
            speculative=speculative,
            should_stop=limit,
            every=LIVE_EVERY,
            meta=p.meta(),
        ):
            if snap.stop_reason:  # the finished trace
                tr = snap
                break
            n = len(snap.steps)
            extra = {}
            if time.monotonic() - last_tree >= TREE_EVERY:
                last_tree = time.monotonic()
                extra = dict(
                    tree=render.tree_figure(snap, n - 1, compact=compact), results=gr.update(visible=True), step=step_slider_update(snap, n)
                )
            yield dict(
                status=busy(f"{what}: {len(snap.output)} tokens after {n} target forward{'s' if n != 1 else ''}…"),
                answer=render.highlighted_tokens(snap),
                **extra,
            )

        ar, med, rounds = None, None, []
        timed_out = tr.stop_reason == "cancelled" and limit.hit
        if timed_out:
            tr.stop_reason = "time_limit"
        cancelled = tr.stop_reason == "cancelled"
        baseline_cut = False
        if ar_baseline and speculative and not cancelled and not timed_out:
            # the live run above was drawn while it ran: time clean runs now, render afterwards
            yield dict(
                status=busy(
                    f"Timing: plain and speculative decoding, {rounds_n} run"
                    f"{'s' if rounds_n != 1 else ''} each, alternating (the page waits, so "
                    "drawing it does not slow the runs)…"
                ),
                **{k: v for k, v in full_views(tr, None, compact).items() if k != "ar_text"},
                results=gr.update(visible=True),
                ar_text=gr.update(value="", label="Plain autoregressive · timing…"),
            )
            res = api.compare(
                pair,
                p.prompt,
                p.image,
                p.spec,
                p.sampling,
                p.max_new_tokens,
                warmup=False,
                repeats=rounds_n,
                should_stop=limit,
                meta=p.meta(),
            )
            runs = res["ar_runs"] + res["spec_runs"]
            if any(r.stop_reason == "cancelled" for r in runs):
                baseline_cut = limit.hit
                cancelled = not limit.hit
            else:
                ar, med, rounds = res["ar"], res["speedup"], res["speedups"]
                tr = res["spec"]  # the median round: its numbers were measured undisturbed
        if ar is not None:
            tr.meta["ar_baseline"] = {
                "output": list(ar.output),
                "wall_s": round(ar.wall_s, 6),
                "text": ar.text,
                "stop_reason": ar.stop_reason,
                "speedup": round(med, 4),
                "speedups": [round(x, 4) for x in rounds],
                "baseline": res["baseline"],
                "reference_output": list(res["reference"].output),
                "divergence": res["divergence"].to_json(),
                "bounds": [round(x, 4) for x in res["bounds"]],
                "above_bound": res["above_bound"],
            }
        want_visual = bool(visual) and not (cancelled or timed_out)
        if want_visual and p.image is not None:  # after the timed runs: these forwards are never timed
            yield dict(status=busy("Which tokens need the image: two target forwards, with and without the image…"))
        vis = visual_views(pair, tr, p, want_visual)
        path = save_trace(tr)  # with tr.visual when it was measured
        views = full_views(tr, ar, compact) | vis
        sm = tr.summary()
        kind = "ok"
        msg = f"Done: {sm['new_tokens']} tokens in {sm['wall_s']:.2f} s, τ = {sm['tau']:.2f} tokens per speculative step"
        if ar is not None and med is not None:
            div = res["divergence"]
            speed, kind = speed_message(med, rounds)
            msg += (
                f"; {speed}, output "
                f"{'identical ✓' if div.identical else 'differs (' + esc(differs_note(p.sampling.temperature, div)) + ')'}"
            )
            same_kind = identity_kind(p.sampling.temperature, div)
            kind = same_kind if same_kind != "ok" else kind
            if res["above_bound"]:
                msg += f"; {esc(bound_note(res))}"
        if p.spec.adaptive and tr.steps and speculative:
            lens = [len(st.tokens) for st in tr.steps]
            msg += (
                f"; auto drafted {sum(lens) / len(lens):.1f} tokens per step on average "
                f"({min(lens)}-{max(lens)}; {sum(1 for n in lens if n == 0)} plain steps)"
            )
        if cancelled:
            msg, kind = f"Stopped by you after {sm['new_tokens']} tokens. Everything decoded so far is shown", "warn"
        elif timed_out:
            msg, kind = (f"{limit.message()}: stopped after {sm['new_tokens']} tokens. Everything decoded so far is shown", "warn")
        elif baseline_cut:
            msg += f". {limit.message()}: the plain-decoding baseline was cut short, so no speedup is shown"
            kind = "warn"
        payload = result_payload(tr, ar, path)
        if tr.visual:
            payload["visual"] = {k: tr.visual[k] for k in ("n_dependent", "share_dependent", "cost_s")}
            if speculative:
                payload["visual"]["split"] = V.split_acceptance(tr)
        yield dict(
            status=with_notes(status_html(msg + ".", kind), p.notes),
            **views,
            download=path,
            result=payload,
            state=tr,
            results=gr.update(visible=True),
            more=gr.update(visible=True),
        )
    except EXPECTED as e:
        msg = friendly(e)
        msg += fallback_hint(e, target, msg)
        gr.Warning(msg)
        yield dict(status=status_html(esc(msg), "err"), **cleared())
    except Exception:
        log.exception("run failed")
        gr.Warning(GENERIC_ERROR)
        yield dict(status=status_html(GENERIC_ERROR, "err"), **cleared())
    finally:  # also when the page goes away mid-run: stop the worker thread
        stop.set()
        end_stop(request, stop)


def show_step(tr, step, compact=False):
    """Re-draw the draft tree of step ``step`` (1-based) of the stored trace."""
    if not isinstance(tr, Trace) or not tr.steps:
        return gr.skip()
    try:
        k = limits.check_int("step", step, 1, len(tr.steps))
    except InputError:
        return gr.skip()
    return render.tree_figure(tr, k - 1, compact=bool(compact))


def nudge_step(tr, step, delta: int, compact=False):
    if not isinstance(tr, Trace) or not tr.steps:
        return {"step": gr.skip()}
    try:
        k = int(step) + delta
    except (TypeError, ValueError):
        k = len(tr.steps)
    k = min(max(k, 1), len(tr.steps))
    return {"step": gr.update(value=k), "tree": render.tree_figure(tr, k - 1, compact=bool(compact))}


# ====================================================================== presets
def apply_preset(key):
    """Fill the model fields from a preset; a preset that cannot run here falls back to the default."""
    try:
        p = presets.get(key)
    except KeyError:  # "custom"
        return {"preset_note": status_html("Type a target (Hub id or model folder) and a drafter below.", "")}
    problem = presets.check_loadable(p)
    if problem:
        problem = problem.replace("**", "")
        gr.Warning(problem)
        d = presets.get("default")
        return dict(
            preset="default",
            target=d.target,
            drafter=d.drafter,
            custom_drafter="",
            mode=d.mode,
            dtype=d.dtype,
            preset_note=status_html(esc(problem), "warn"),
        )
    if p.key == "default":
        return dict(
            target=p.target, drafter=p.drafter, custom_drafter="", mode=p.mode, dtype=p.dtype, preset_note=status_html(esc(p.note), "")
        )
    note = status_html(esc(p.note) + " Press <b>Run</b> to load it.", "")
    return dict(target=p.target, drafter="custom", custom_drafter=p.drafter, mode=p.mode, dtype=p.dtype, preset_note=note)


# ====================================================================== layout and wiring
def build(ctx) -> dict:
    """The Run tab's components and events (inside ``gr.Tab``); returns the components other
    tabs share (target, dtype, drafter, compact).

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

    outs = Outputs(
        ctx.demo,
        status=run_status,
        answer=answer,
        tree=tree_plot,
        step=step,
        spec_text=spec_text,
        ar_text=ar_text,
        summary=summary,
        time_fig=time_fig,
        acc_fig=acc_fig,
        depth_fig=depth_fig,
        steps_html=steps_html,
        download=download,
        result=result,
        visual=visual_html,
        state=run_state,
        results=results,
        more=more,
    )
    assert tuple(outs.names) == OUTPUTS
    model, light = ctx.model, ctx.light
    run_inputs = [
        image,
        prompt,
        target,
        drafter,
        custom_drafter,
        mode,
        dtype,
        strategy,
        gamma,
        branching,
        depth,
        top_k,
        budget,
        temperature,
        top_p,
        max_new,
        seed,
        ar_baseline,
        repeats,
        compact,
        visual,
    ]
    run_btn.click(outs.bind(run_decoding), run_inputs, outs.list, api_name="run", show_progress="minimal", **model)
    stop_btn.click(request_stop, None, None, api_visibility="private", concurrency_limit=None)
    step.input(
        show_step,
        [run_state, step, compact],
        tree_plot,
        api_visibility="private",
        trigger_mode="always_last",
        show_progress="hidden",
        **light,
    )
    nav = Outputs(ctx.demo, step=step, tree=tree_plot)
    prev_btn.click(
        nav.bind(lambda tr, s, c: nudge_step(tr, s, -1, c)),
        [run_state, step, compact],
        nav.list,
        api_visibility="private",
        show_progress="hidden",
        **light,
    )
    next_btn.click(
        nav.bind(lambda tr, s, c: nudge_step(tr, s, +1, c)),
        [run_state, step, compact],
        nav.list,
        api_visibility="private",
        show_progress="hidden",
        **light,
    )
    pre = Outputs(
        ctx.demo,
        preset=preset,
        target=target,
        drafter=drafter,
        custom_drafter=custom_drafter,
        mode=mode,
        dtype=dtype,
        preset_note=preset_note,
    )
    preset.input(pre.bind(apply_preset), preset, pre.list, api_visibility="private", show_progress="hidden", **light)
    return {"target": target, "dtype": dtype, "drafter": drafter, "compact": compact, "visual": visual}
