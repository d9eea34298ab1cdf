"""The answer as coloured tokens: where each token came from (``highlighted_tokens``, for
``gr.HighlightedText``), the Teach tab's legend, and the answer with its image-dependent tokens
marked (``visual_panel_html``, from ``trace.visual``: core/visual.py)."""

from __future__ import annotations

from core.api import Trace, split_line

from .base import COLOR_MAP, ORIGIN_LABEL, as_trace, attr, esc, piece, visible


def highlighted_tokens(trace) -> list[tuple[str, str | None]]:
    """(text piece, label) for every output token, for ``gr.HighlightedText``.

    Labels: "prefill" (first token), "accepted draft", "bonus", "correction";
    use with ``color_map=COLOR_MAP``.
    """
    tr = as_trace(trace)
    return [(piece(tr, tok), ORIGIN_LABEL.get(origin)) for tok, origin, _ in tr.token_origins()]


def legend_html() -> str:
    """Legend of the Teach tab's text: the same colours as the Run tab's answer."""
    items = [
        ("accepted draft", COLOR_MAP["accepted draft"], "", "the drafter's guess, kept by the target"),
        ("bonus", COLOR_MAP["bonus"], "", "the target's own token after a fully accepted draft"),
        ("correction", COLOR_MAP["correction"], "", "the target's token in place of a rejected guess"),
        ("rejected guess", "#fde4e4", "text-decoration:line-through;color:#b91c1c", "a guess the target refused (not part of the answer)"),
    ]
    return (
        '<div class="ss-legend">'
        + "".join(
            f'<span title="{esc(tip)}"><span class="sw" style="background:{c}"></span><span style="{style}">{esc(n)}</span></span>'
            for n, c, style, tip in items
        )
        + "</div>"
    )


def split_lead(text: str) -> tuple[str, str]:
    """(leading spaces, the rest), both HTML-escaped, for a coloured token chip: the space before
    a word goes before its chip, so a line never breaks inside a chip (a coloured sliver left at
    the end of one line, the word on the next). A token of spaces only keeps one, unbreakable,
    inside its chip."""
    rest = text.lstrip(" ")
    if not rest:
        return "", "\u00a0" * max(len(text), 1) if text else ""
    return esc(text[: len(text) - len(rest)]), esc(rest)


# ---------------------------------------------------------------- which tokens need the image
def visual_tip(trace: Trace, rec: dict) -> str:
    """The hover text of one token's visual-dependence record."""
    tip = f"KL(with image ‖ without) = {rec['kl']:.2f} nats"
    if rec.get("changed"):
        tip += f"; argmax changes without the image (→ {visible(piece(trace, rec.get('argmax_noimg')), 16)})"
    else:
        tip += "; argmax stays the same without the image"
    return tip


def visual_answer_html(trace) -> str:
    """The coloured answer (the same colours as ``highlighted_tokens``) with every image-dependent
    token (``trace.visual``) underlined and marked with a small eye; hover a token for its KL and
    whether the argmax changes without the image. Dark text on light colours."""
    tr = as_trace(trace)
    recs = {r["index"]: r for r in (tr.visual or {}).get("tokens", [])}
    parts = []
    for i, (tok, origin, _) in enumerate(tr.token_origins()):
        label = ORIGIN_LABEL.get(origin)
        bg = COLOR_MAP.get(label, "transparent")
        r = recs.get(i)
        lead, txt = split_lead(piece(tr, tok))
        parts.append(lead)
        if r is not None and r.get("image_dependent"):
            parts.append(
                f'<span class="ss-tok ss-vis" data-i="{i}" style="background:{bg}" '
                f'title="{attr("needs the image · " + (label or "") + " · " + visual_tip(tr, r))}">{txt}'
                f'<span class="ss-eye" role="img" aria-label="needs the image"></span></span>'
            )
        else:
            tip = f"{label or ''}" + (f" · {visual_tip(tr, r)}" if r is not None else "")
            parts.append(f'<span class="ss-tok" data-i="{i}" style="background:{bg}" title="{attr(tip)}">{txt}</span>')
    legend = "".join(f'<span><span class="sw" style="background:{c}"></span>{esc(n)}</span>' for n, c in COLOR_MAP.items())
    legend += '<span><span class="ss-vis-key">abc<span class="ss-eye"></span></span> needs the image</span>'
    return f'<div class="ss-vis-answer">{"".join(parts)}</div><div class="ss-legend">{legend}</div>'


def visual_panel_html(trace, split: dict | None = None) -> str:
    """The Run tab's "Which tokens need the image?" result: the share of image-dependent tokens
    and what finding them cost, the split line (``split``: ``split_acceptance`` of a speculative
    run; None for a plain run) and the marked answer."""
    tr = as_trace(trace)
    v = tr.visual or {}
    n, dep = len(v.get("tokens", [])), int(v.get("n_dependent", 0))
    head = (
        f'<div class="ss-vis-head" data-dependent="{dep}"><b>{dep} of {n} tokens need the image</b> '
        f'(KL &gt; {v.get("threshold_nats", 1.0):g} nat or the argmax changes without it; measured with '
        f'two target forwards in {float(v.get("cost_s", 0.0)):.2f} s, after the timed runs)'
    )
    if split is not None:
        head += f'<div class="ss-split">{esc(split_line(split))}</div>'
    return head + "</div>" + visual_answer_html(tr)
