"""Where the draft tree's chips go: which step a run opens on, each node's status, the tidy
vertical order of the nodes, and column widths that keep every label readable without overlap."""

from __future__ import annotations

import unicodedata

from core.api import Step, Trace

from .base import as_trace, visible

CHAR_EM = 0.62  # advance of one monospace column, in font sizes (DejaVu Sans Mono: 0.602)
CHIP_PAD = 3  # annotation borderpad (px); + 1 px border each side
GAP_PX = 12  # at least this much between two columns of chips
ROW_GAP_PX = 6  # and between two chips of one column
DESKTOP_WIDTH = 720  # plot width the layout is made for (the Run tab's plot is wider at 1440 px)
COMPACT_WIDTH = 340  # ... and on a phone (compact=True)


def most_informative_step(trace) -> int:
    """The 0-based step a finished run opens on: the longest accepted (committed) path, ties
    broken by more drafted nodes, then the earliest step. 0 for an empty trace."""
    tr = as_trace(trace)
    if not tr.steps:
        return 0
    return max(range(len(tr.steps)), key=lambda k: (len(tr.steps[k].accepted), len(tr.steps[k].tokens) > 0, -k))


def node_status(s: Step) -> list[str]:
    """Status of every draft node of a step: accepted (committed), discarded (accepted by the
    target but after EOS / the length limit, so not kept), rejected, or unreached."""
    acc, dis, rej = set(s.accepted), set(getattr(s, "discarded", None) or []), set(s.rejected)
    return ["accepted" if i in acc else "discarded" if i in dis else "rejected" if i in rej else "unreached" for i in range(len(s.tokens))]


def roots(trace: Trace) -> list[int | None]:
    """Root token (last committed token before the step) of every step."""
    last = trace.first_token
    out = []
    for s in trace.steps:
        out.append(last)
        if s.committed:
            last = s.committed[-1]
    return out


def tidy(kids: dict[int, list[int]]) -> tuple[dict[int, float], int]:
    """(row of every node, number of leaves) of the tree under root -1: leaves evenly spaced in
    the children's order, parents centred on their first and last child."""
    ypos: dict[int, float] = {}
    counter = 0.0
    stack = [(-1, False)]
    while stack:  # iterative post-order
        node, done = stack.pop()
        ch = kids.get(node, [])
        if not ch:
            ypos[node] = counter
            counter += 1
        elif done:
            ypos[node] = (ypos[ch[0]] + ypos[ch[-1]]) / 2
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(ch))
    return ypos, max(int(counter), 1)


def _text_cols(text: str) -> int:
    """Monospace columns a label takes (wide East Asian characters and emoji count 2)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" or ord(ch) >= 0x1F000 else 1 for ch in text)


def chip_size(label: str, fsize: float) -> tuple[float, float]:
    """(width, height) in px of a node chip showing ``label`` (plain text) at ``fsize``."""
    return _text_cols(label) * CHAR_EM * fsize + 2 * CHIP_PAD + 4, 1.3 * fsize + 2 * CHIP_PAD + 2


def tree_layout(labels_by_col: list[list[str]], width: float, fsize: int, min_font: int = 9, max_chars: int = 14, min_chars: int = 3):
    """Fit columns of labels into ``width`` px: shorten labels (…, full token on hover) and
    shrink the font, in turns, until the columns fit side by side (a word keeps about 7
    characters as long as the font can still shrink). Returns (maxlen, fsize, column widths,
    column centres) in px; columns never overlap, whatever ``width`` it had to exceed."""

    def widths(maxlen, fs):
        return [max((chip_size(visible(t, maxlen), fs)[0] for t in col), default=0.0) for col in labels_by_col]

    gaps = GAP_PX * (len(labels_by_col) - 1)
    # the order of concessions: shorter labels first, then a smaller font, then shorter again
    plan = [(m, fsize) for m in range(max_chars, 7, -1)]
    plan += [(7, f) for f in range(fsize - 1, min_font + 1, -1)]
    plan += [(m, min_font + 1) for m in range(6, 4, -1)]
    plan += [(m, min_font) for m in range(4, min_chars - 1, -1)]
    for maxlen, fs in plan or [(max_chars, fsize)]:
        ws = widths(maxlen, fs)
        total = sum(ws) + gaps
        if total <= width:
            break
    return (maxlen, fs) + spread(ws, width)


def spread(ws: list[float], width: float) -> tuple[list[float], list[float]]:
    """(widths, centres) of columns ``ws`` px wide, at least GAP_PX apart, spread over ``width``."""
    spare = max(0.0, width - sum(ws) - GAP_PX * (len(ws) - 1))
    gap = GAP_PX + min(140.0, spare / max(len(ws) - 1, 1)) if len(ws) > 1 else GAP_PX
    centres, x = [], 0.0
    for w in ws:
        centres.append(x + w / 2)
        x += w + gap
    return list(ws), centres
