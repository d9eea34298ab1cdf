"""The Teach tab's words: each step of a decoding told in plain language (``explain_step``), the
prefill (``explain_prefill``), and the answer so far with the step's tokens coloured
(``teach_text_html``)."""

from __future__ import annotations

from core.api import Trace

from .. import render
from ..messages import esc


def _q(tr: Trace, toks) -> str:
    """Tokens as one quoted piece of text."""
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
