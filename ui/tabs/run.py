"""The Run tab: one input decoded live, then timed against plain decoding.

``run_decoding`` yields {output name: value} (``ui/outputs.py``); ``build`` wires the tab's
components (``run_layout.layout``). Public API: /run (streaming): its inputs are ``run_inputs``'s
order, its outputs ``OUTPUTS``.
"""

from __future__ import annotations

import functools
import logging
import time

import gradio as gr

from core import api
from core.api import Trace

from .. import limits, presets, render
from ..inputs import drafter_display, shape_text
from ..messages import esc, guarded, status_html, with_notes
from ..outputs import Outputs
from ..session import Deadline, gpu, request_stop, stop_scope
from ..style import scroll_on_phone
from ..views import cleared, full_views, nudge_step, result_payload, save_trace, show_step, step_slider_update
from .run_layout import layout
from .run_params import RunParams, parse_params

log = logging.getLogger("specscope.app")

LIVE_EVERY = 0.25  # seconds between live updates of the text while decoding
TREE_EVERY = 0.75  # ... and of the draft tree (a plotly redraw costs the browser far more)
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
VISUAL_NO_IMAGE = "Which tokens need the image: this run had no image, so there is nothing to measure."


def visual_views(pair, tr: Trace, p: RunParams, wanted: bool) -> dict:
    """The "Which tokens need the image?" outputs of a finished run. Off: nothing is computed.
    On with an image: ``api.visual_dependence`` (two target forwards; call it only after the
    timed runs), stored in ``tr.visual`` (with the pieces its hovers name); the answer is shown
    marked instead of the plain one. On without an image: a short note."""
    if not wanted:
        return {"visual": gr.update(value="", visible=False)}
    if p.image is None:
        return {"visual": gr.update(value=f'<div class="ss-vis-note">{esc(VISUAL_NO_IMAGE)}</div>', visible=True)}
    api.visual_dependence(pair, tr, p.prompt, p.image)
    split = api.split_acceptance(tr) if pair.drafter is not None else None
    return {
        "visual": gr.update(value=render.visual_panel_html(tr, split), visible=True),
        "answer": gr.update(value=render.highlighted_tokens(tr), visible=False),
    }


# ====================================================================== the handler
@gpu
@guarded("run", functools.partial(cleared, OUTPUTS))
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
    with stop_scope(request) as stop:
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
            api.warm(pair, p.prompt, p.image, p.spec, p.sampling, min(8, p.max_new_tokens), compile_wait=False)
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
                **{k: v for k, v in full_views(tr, compact).items() if k != "ar_text"},
                results=gr.update(visible=True),
                ar_text=gr.update(value="", label="Plain autoregressive · timing…"),
            )
            cmp = api.compare(
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
            if any(r.stop_reason == "cancelled" for r in cmp.plain_traces + cmp.spec_traces):
                baseline_cut = limit.hit
                cancelled = not limit.hit
            else:
                tr = cmp.spec_trace  # the reported round: its numbers were measured undisturbed; it carries the comparison
        want_visual = bool(visual) and not (cancelled or timed_out)
        if want_visual and p.image is not None:  # after the timed runs: these forwards are never timed
            yield dict(status=busy("Which tokens need the image: two target forwards, with and without the image…"))
        vis = visual_views(pair, tr, p, want_visual)
        path = save_trace(tr)  # with tr.visual when it was measured, and tr.comparison when timed
        yield dict(
            status=with_notes(status_html(*finished_status(tr, p, cancelled, timed_out, baseline_cut, limit)), p.notes),
            **full_views(tr, compact) | vis,
            download=path,
            result=payload(tr, path, speculative),
            state=tr,
            results=gr.update(visible=True),
            more=gr.update(visible=True),
        )


def finished_status(tr: Trace, p: RunParams, cancelled: bool, timed_out: bool, baseline_cut: bool, limit: Deadline) -> tuple[str, str]:
    """(HTML, kind) of the status line after a run: its numbers, the comparison's verdict, what
    auto drafted, or why it stopped early."""
    sm = tr.summary()
    kind = "ok"
    msg = f"Done: {sm['new_tokens']} tokens in {sm['wall_s']:.2f} s, τ = {sm['tau']:.2f} tokens per speculative step"
    if tr.comparison is not None:
        verdict, kind = render.status_line(tr.comparison, p.sampling.temperature)
        msg += f"; {verdict}"
    if p.spec.adaptive and tr.steps and p.drafter is not None:
        lens = [len(st.tokens) for st in tr.steps]
        msg += (
            f"; auto drafted {sum(lens) / len(lens):.1f} tokens per step on average "
            f"({min(lens)}-{max(lens)}; {sum(1 for n in lens if n == 0)} plain steps)"
        )
    if cancelled:
        return f"Stopped by you after {sm['new_tokens']} tokens. Everything decoded so far is shown.", "warn"
    if timed_out:
        return f"{limit.message()}: stopped after {sm['new_tokens']} tokens. Everything decoded so far is shown.", "warn"
    if baseline_cut:
        return msg + f". {limit.message()}: the plain-decoding baseline was cut short, so no speedup is shown.", "warn"
    return msg + ".", kind


def payload(tr: Trace, path: str, speculative: bool) -> dict:
    """The /run result: ``views.result_payload`` and, when measured, the visual-dependence counts."""
    out = result_payload(tr, path)
    if tr.visual:
        out["visual"] = {k: tr.visual[k] for k in ("n_dependent", "share_dependent", "cost_s")}
        if speculative:
            out["visual"]["split"] = api.split_acceptance(tr)
    return out


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


# ====================================================================== wiring
def build(ctx) -> dict:
    """The Run tab's components (``run_layout.layout``) and events, inside ``gr.Tab``; returns the
    components other tabs share (target, dtype, drafter, compact, visual)."""
    c = layout(ctx)
    outs = Outputs(
        ctx.demo,
        status=c.run_status,
        answer=c.answer,
        tree=c.tree_plot,
        step=c.step,
        spec_text=c.spec_text,
        ar_text=c.ar_text,
        summary=c.summary,
        time_fig=c.time_fig,
        acc_fig=c.acc_fig,
        depth_fig=c.depth_fig,
        steps_html=c.steps_html,
        download=c.download,
        result=c.result,
        visual=c.visual_html,
        state=c.run_state,
        results=c.results,
        more=c.more,
    )
    assert tuple(outs.names) == OUTPUTS
    model, light = ctx.model, ctx.light
    run_inputs = [
        c.image,
        c.prompt,
        c.target,
        c.drafter,
        c.custom_drafter,
        c.mode,
        c.dtype,
        c.strategy,
        c.gamma,
        c.branching,
        c.depth,
        c.top_k,
        c.budget,
        c.temperature,
        c.top_p,
        c.max_new,
        c.seed,
        c.ar_baseline,
        c.repeats,
        c.compact,
        c.visual,
    ]
    # a phone: Run / Stop to the top, the status and the growing answer under them (first: the
    # page runs a trigger's events in order, each to its end)
    c.run_btn.click(None, None, None, js=scroll_on_phone("#ss-run-row .ss-actions"), api_visibility="private", queue=False)
    c.run_btn.click(outs.bind(run_decoding), run_inputs, outs.list, api_name="run", show_progress="minimal", **model)
    c.stop_btn.click(request_stop, None, None, api_visibility="private", concurrency_limit=None)
    nav_inputs = [c.run_state, c.step, c.compact]
    c.step.input(show_step, nav_inputs, c.tree_plot, api_visibility="private", trigger_mode="always_last", show_progress="hidden", **light)
    nav = Outputs(ctx.demo, step=c.step, tree=c.tree_plot)
    for btn, delta in ((c.prev_btn, -1), (c.next_btn, +1)):
        btn.click(
            nav.bind(functools.partial(nudge_step, delta=delta)),
            nav_inputs,
            nav.list,
            api_visibility="private",
            show_progress="hidden",
            **light,
        )
    pre = Outputs(
        ctx.demo,
        preset=c.preset,
        target=c.target,
        drafter=c.drafter,
        custom_drafter=c.custom_drafter,
        mode=c.mode,
        dtype=c.dtype,
        preset_note=c.preset_note,
    )
    c.preset.input(pre.bind(apply_preset), c.preset, pre.list, api_visibility="private", show_progress="hidden", **light)
    return {"target": c.target, "dtype": c.dtype, "drafter": c.drafter, "compact": c.compact, "visual": c.visual}
