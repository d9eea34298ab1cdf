"""The Teach tab: one decoding replayed step by step with plain-language explanations (for a
class: large text, one step per click). Public API: /teach_start, /teach_step."""

from __future__ import annotations

import logging

import gradio as gr

from core import api, costs, speedup_model as M
from core.errors import InputError
from core.drafters import DraftSpec
from core.sampling import SamplingConfig
from core.trace import Trace

from .. import limits, presets, render
from ..insight import TEACH, speedup_map
from ..common import EXPECTED, GENERIC_ERROR, SafeImage, defaults, esc, friendly, legend_html, read_image, status_html
from ..outputs import Outputs
from ..session import end_stop, gpu, new_stop
from .run import NO_IMAGE, drafter_display, resolve_drafter

log = logging.getLogger("specscope.app")
OUTPUTS = ("status", "progress", "tree", "text", "explain", "index", "map", "state", "shown")
EMPTY_TEXT = '<div class="ss-teach-text"><div><span class="old">The answer will grow here, new tokens coloured.</span></div></div>'


SCROLL_TO_STEP_VIEW = "() => { document.querySelector('#ss-teach-status')?.scrollIntoView({block: 'start'}) }"
TREE_SHAPE = (2, 2, 1)
TREE_WIDTH = 440  # px the Teach tree is laid out for (its plot is ~500 px wide at 1440 px)


def teach_shapes() -> dict[str, DraftSpec]:
    """The Teach tab's shapes: a chain of the app's default length, or a small static tree."""
    return {"chain": DraftSpec("chain", gamma=defaults().gamma), "tree": DraftSpec("tree", branching=TREE_SHAPE)}


def _q(tr: Trace, toks) -> str:
    text = "".join(render.piece(tr, t) for t in toks)
    return f'<span class="q">{esc(text)}</span>'


def _children(s) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for i, par in enumerate(s.parents):
        kids.setdefault(par, []).append(i)
    return kids


def explain_step(tr: Trace, k: int) -> str:
    """Plain-language account of step ``k`` (0-based) of a trace: draft, verify, accept/reject, add."""
    s = tr.steps[k]
    n, m = len(s.tokens), len(s.accepted)
    kids = _children(s)
    fav, node = [], -1  # the drafter's favourite path: most likely child each time
    while kids.get(node):
        node = max(kids[node], key=lambda i: s.q[i])
        fav.append(node)
    items = []
    if n == 0:
        items.append("<b>Draft:</b> the drafter had no guess this time.")
        items.append("<b>Verify:</b> the target simply took one ordinary step.")
    else:
        depth = max(s.depths)
        if len(fav) == n:
            items.append(
                f"<b>Draft:</b> the drafter guessed the next {n} token{'s' if n > 1 else ''}: {_q(tr, [s.tokens[i] for i in fav])}."
            )
        else:
            items.append(
                f"<b>Draft:</b> the drafter proposed a tree of {n} candidate tokens, up to {depth} deep. "
                f"Its favourite path: {_q(tr, [s.tokens[i] for i in fav])}."
            )
        items.append("<b>Verify:</b> the target checked all of them in <b>one</b> forward pass.")
        discarded = list(getattr(s, "discarded", None) or [])
        path = list(s.accepted) + discarded
        last = path[-1] if path else -1
        refused = [i for i in kids.get(last, []) if i in set(s.rejected)]
        refused.sort(key=lambda i: -s.q[i])
        if discarded:  # the answer ended inside what the target agreed with
            agreed = list(s.accepted) + discarded
            kept = (
                f"only the first {m} ({_q(tr, [s.tokens[i] for i in s.accepted])}) fit{'s' if m == 1 else ''} in the answer"
                if m
                else "none of them fits in the answer"
            )
            items.append(
                f"<b>Accept:</b> it agreed with {_q(tr, [s.tokens[i] for i in agreed])} "
                f"({len(agreed)} token{'s' if len(agreed) > 1 else ''}), but {kept}: the answer "
                "ends there (end of text or the length limit)."
            )
        elif m == 0:
            what = (
                f"{_q(tr, [s.tokens[refused[0]]])}"
                if len(refused) == 1
                else ", ".join(_q(tr, [s.tokens[i]]) for i in refused[:4]) + (" …" if len(refused) > 4 else "")
            )
            items.append(
                f"<b>Reject:</b> it disagreed right away: {what} "
                f"{'was' if len(refused) == 1 else 'were'} rejected"
                f"{', so nothing below was even checked' if n > len(refused) else ''}."
            )
        elif s.kind == "bonus":
            items.append(
                f"<b>Accept:</b> it agreed with the whole path {_q(tr, [s.tokens[i] for i in s.accepted])}"
                f" ({m} token{'s' if m > 1 else ''})."
            )
        else:
            rej = f"rejected {_q(tr, [s.tokens[refused[0]]])}" if refused else "rejected the rest"
            items.append(
                f"<b>Accept / reject:</b> it agreed with {_q(tr, [s.tokens[i] for i in s.accepted])} "
                f"({m} token{'s' if m > 1 else ''}) and {rej}."
            )
    discarded = list(getattr(s, "discarded", None) or []) if n else []
    added_kept = len(s.committed) > m
    if discarded:
        items.append(
            f"<b>Discarded:</b> {_q(tr, [s.tokens[i] for i in discarded])} came after the end, so "
            f"{'it is' if len(discarded) == 1 else 'they are'} not kept and "
            f"{'does' if len(discarded) == 1 else 'do'} not count as accepted."
        )
    if not added_kept:
        items.append("<b>End:</b> the answer is complete, so the target's own next token is not needed.")
    elif s.kind == "bonus" and n:
        items.append(
            f"<b>Bonus:</b> because every checked guess was right, the same forward pass also gives "
            f"the next token for free: {_q(tr, [s.token])}."
        )
    elif s.kind == "bonus":
        items.append(f"<b>Result:</b> the target wrote {_q(tr, [s.token])}.")
    else:
        items.append(f"<b>Correction:</b> in place of the rejected guess the target wrote its own token {_q(tr, [s.token])}.")
    committed = len(s.committed)
    total = 1 + sum(len(x.committed) for x in tr.steps[: k + 1])
    fwd = k + 2
    tally = (
        f"This step: {committed} new token{'s' if committed != 1 else ''} for one target forward. "
        f"So far: {total} tokens in {fwd} forwards = {total / fwd:.2f} tokens per forward "
        f"(plain decoding: 1.00)."
    )
    if committed < m + 1 or k == len(tr.steps) - 1:
        tally += " The answer ends here."
    return '<div class="ss-explain"><ol>' + "".join(f"<li>{x}</li>" for x in items) + f"</ol><div class=\"tally\">{tally}</div></div>"


def explain_prefill(tr: Trace) -> str:
    first = _q(tr, [tr.first_token]) if tr.first_token is not None else "nothing"
    n = len(tr.steps)
    return (
        '<div class="ss-explain"><ol>'
        f"<li><b>Prefill:</b> the target read your prompt and the picture ({tr.prompt_tokens} tokens, "
        "image patches included) in one forward pass.</li>"
        f"<li>It chose the first token of the answer: {first}.</li>"
        "<li>From here on every step is the same: the drafter <b>guesses</b> a few tokens, the target "
        "<b>checks</b> them all at once, keeps the good ones and adds one of its own.</li></ol>"
        f'<div class="tally">{n} step{"s" if n != 1 else ""} to go. Press <b>Next ▶</b>.</div></div>'
    )


def teach_text_html(tr: Trace, k: int) -> str:
    """The answer so far (steps < k plain), step k's tokens coloured, a rejected guess struck through."""
    origins = tr.token_origins()
    parts = []
    for tok, origin, step in origins:
        if step > k - 1:
            break
        lead, txt = render.split_lead(render.piece(tr, tok))  # the space before a word: outside its chip
        if step == k - 1 or (k == 0 and step == -1):
            parts.append(f'{lead}<span class="tk {origin}">{txt}</span>')
        else:
            parts.append(f'{lead}<span class="old">{txt}</span>')
    if k >= 1:
        s = tr.steps[k - 1]
        if s.kind == "correction":
            kids = _children(s)
            last = s.accepted[-1] if s.accepted else -1
            refused = sorted((i for i in kids.get(last, []) if i in set(s.rejected)), key=lambda i: -s.q[i])
            if refused:
                # show the refused guess just before the correction token
                guess = render.piece(tr, s.tokens[refused[0]])
                lead = guess[: len(guess) - len(guess.lstrip())]  # a leading space stays unstruck
                strike = f'{esc(lead)}<span class="tk rejected" title="rejected guess">{esc(guess.lstrip()) or "∅"}</span>'
                for j in range(len(parts) - 1, -1, -1):
                    if 'class="tk correction"' in parts[j]:
                        parts.insert(j, strike)
                        break
    body = "".join(parts) or '<span class="old">(nothing yet)</span>'
    # the inner div: the box scrolls from its bottom (CSS column-reverse), where the new tokens are
    return f'<div class="ss-teach-text"><div>{body}</div></div>'


def teach_view(tr: Trace, k: int, status: str | None = None, compact: bool = False):
    n = len(tr.steps)
    k = min(max(int(k), 0), n)
    if k == 0:
        tree = render._placeholder("Press Next ▶ to see the first draft tree", 300)
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
    """ui/insight.py's map for this run: the target's measured cost curve (core/costs.py, measured
    once per process), the run's own draft cost ratio, and its (alpha, gamma) marked."""
    curve = costs.priced_curve(pair.target)  # the one cost model of measured runs and replay
    point = M.run_point(tr, curve)
    return speedup_map(
        M.grid(curve, draft_ratio=point["draft_ratio"]),
        point,
        title="Predicted speedup on this machine",
        subtitle=f"verify cost c(9)/c(1) = {M.verify_ratio(curve, 9):.2f}<br>★ = your run",
    )


@gpu
def teach_start(image, prompt, drafter, shape, compact=False, request: gr.Request = None):
    """Decode once (greedy) on the default model and show the prefill; then walk with teach_step."""
    stop = new_stop(request)
    try:
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
    except EXPECTED as e:
        gr.Warning(friendly(e))
        return dict(status=status_html(esc(friendly(e)), "err"), **cleared())
    except Exception:
        log.exception("teach failed")
        gr.Warning(GENERIC_ERROR)
        return dict(status=status_html(GENERIC_ERROR, "err"), **cleared())
    finally:  # also when the page goes away mid-run: stop the worker thread
        stop.set()
        end_stop(request, stop)


def cleared() -> dict:
    """What an error leaves: no stale answer, tree or explanation of an earlier run."""
    return dict(
        progress='<div class="ss-teach-progress">Not started</div>',
        tree=None,
        text=EMPTY_TEXT,
        explain="",
        index=0,
        map=None,
        state=None,
        shown=gr.update(visible=False),
    )


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
                t_progress = gr.HTML('<div class="ss-teach-progress">Not started</div>')
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
            gr.HTML(legend_html())
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
