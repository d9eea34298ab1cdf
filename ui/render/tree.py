"""The draft tree of one step: a plotly figure, root at left, one column per depth.

``tree_figure`` reads the step (``Draft``), fits the columns (``tree_layout``), then draws the
titles, the edges, the legend and the node chips, in that order."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from core.api import Step, Trace

from .base import FONT, GREEN, MONO, STATUS_COLOR, STATUS_TEXT, TREE_HEIGHT, as_trace, esc, figure, fmt_p, layout, piece
from .base import placeholder, title, trace_of, visible, wrap
from .tree_layout import CHIP_PAD, COMPACT_WIDTH, DESKTOP_WIDTH, ROW_GAP_PX, chip_size, node_status, roots, spread, tidy, tree_layout

_RANK = {"accepted": 0, "discarded": 0, "rejected": 1, "unreached": 2}


@dataclass
class Draft:
    """One step's draft as the figure draws it: node i < n is a draft token, -1 the root (the last
    committed token), ``added`` (= n) the token the target added after the accepted path."""

    tr: Trace
    k: int
    s: Step
    root_tok: int | None
    status: list[str]
    discarded: list[int]
    added_kept: bool
    last: int  # the end of the target-accepted path (kept or not); -1: the root
    kids: dict[int, list[int]]  # children in display order
    depth: dict[int, int]
    ypos: dict[int, float]
    leaves: int

    @property
    def n(self) -> int:
        return len(self.s.tokens)

    @property
    def added(self) -> int:
        return self.n

    @property
    def added_status(self) -> str:
        return self.s.kind if self.added_kept else "discarded"

    def tok(self, i: int):
        return self.root_tok if i == -1 else self.s.token if i == self.added else self.s.tokens[i]

    def q(self, i: int):
        return self.s.q[i] if i < self.n else None

    def p(self, i: int):
        return self.s.p[i] if self.s.p is not None and i < self.n else None

    @classmethod
    def of(cls, tr: Trace, k: int) -> Draft:
        s = tr.steps[k]
        n = len(s.tokens)
        status = node_status(s)
        discarded = list(getattr(s, "discarded", None) or [])
        path = list(s.accepted) + discarded  # what the target accepted, kept or not
        last = path[-1] if path else -1
        # children in display order: accepted child / added token first, then by draft prob
        kids: dict[int, list[int]] = {}
        for i, par in enumerate(s.parents):
            kids.setdefault(par, []).append(i)
        kids.setdefault(last, []).append(n)
        for c in kids.values():
            c.sort(key=lambda i: (0, 0.0) if i == n else (_RANK[status[i]], -(s.q[i] or 0.0)))
        depth = {-1: 0, n: len(path) + 1} | {i: d for i, d in enumerate(s.depths)}
        ypos, leaves = tidy(kids)
        return cls(tr, k, s, roots(tr)[k], status, discarded, len(s.committed) > len(s.accepted), last, kids, depth, ypos, leaves)


def titles(d: Draft, compact: bool, width: float) -> tuple[str, str]:
    """(title, subtitle), wrapped to ``width`` px: what was accepted of how much, what the target added."""
    tr, s, k, n = d.tr, d.s, d.k, d.n
    head = f"Step {k + 1}: accepted {len(s.accepted)} of {n} drafted" if n else f"Step {k + 1}: no draft (plain autoregressive step)"
    where = f" · step {k + 1} of {len(tr.steps)}"
    if not d.added_kept:  # cut at EOS / the length limit inside the accepted path
        sub = (
            f"the answer ended after {len(s.committed)} accepted token{'s' if len(s.committed) != 1 else ''}"
            " (end of text or the length limit): "
            + (
                f"the other {len(d.discarded)} accepted and the target's own token are discarded"
                if d.discarded
                else "the target's own token is discarded"
            )
            + where
        )
    elif n == 0:
        sub = f"the target wrote {esc(repr(piece(tr, s.token)))} itself: one token for one forward{where}"
    else:
        sub = (
            f"then the target added {esc(repr(piece(tr, s.token)))} as a <b>{s.kind}</b>"
            f" · committed {len(s.committed)} token{'s' if len(s.committed) != 1 else ''}{where}"
        )
    if compact:  # a phone: no step count (the slider says it)
        head = head.replace(" drafted", "")
        sub = sub.rsplit(" · step ", 1)[0]
    return wrap(head, int(width / 10.5)), wrap(sub, int(width / 6.8))  # 17 px bold; 12 px: about 6.8 px a character


def edges(d: Draft, X: dict, col_w: list[float]) -> list[dict]:
    """Elbows: out of the parent, along a bus in the gap, into the child; one trace per kind."""
    groups = {"unreached": ([], []), "rejected": ([], []), "discarded": ([], []), "accepted": ([], []), "added": ([], [])}
    for c in list(range(d.n)) + [d.added]:
        par = d.last if c == d.added else d.s.parents[c]
        x0, y0, x1, y1 = X[par], -d.ypos[par], X[c], -d.ypos[c]
        xm = (x0 + col_w[d.depth[par]] / 2 + x1 - col_w[d.depth[c]] / 2) / 2
        grp = ("added" if d.added_kept else "discarded") if c == d.added else d.status[c]
        xs, ys = groups[grp]
        xs += [x0, xm, xm, x1, None]
        ys += [y0, y0, y1, y1, None]
    style = {
        "unreached": dict(color="#cfd5de", width=1.3),
        "rejected": dict(color="#eba3a3", width=1.6),
        "discarded": dict(color="#aeb6c2", width=2.0, dash="dot"),
        "accepted": dict(color=GREEN, width=3.5),
        "added": dict(color=STATUS_COLOR[d.added_status], width=3.5, dash="dot"),
    }
    return [
        trace_of(
            "scatter", x=xs, y=ys, mode="lines", line=style[grp], hoverinfo="skip", showlegend=False, name=f"edges {grp}", meta="edges"
        )
        for grp, (xs, ys) in groups.items()
        if xs
    ]


def hover(d: Draft, i: int) -> str:
    """A node's hover: its text (repr), status, depth, draft prob q and target prob p."""
    tr, s = d.tr, d.s
    if i == -1:
        return f"<b>root</b> {esc(repr(piece(tr, d.root_tok)))}<br>last committed token<br>depth 0"
    if i == d.added:
        why = "after the whole accepted path" if s.kind == "bonus" else "in place of the rejected drafts"
        kept = "" if d.added_kept else "<br>discarded: the output had already ended (EOS / length limit)"
        return f"<b>{s.kind}</b> {esc(repr(piece(tr, s.token)))}<br>added by the target {why}{kept}<br>depth {d.depth[d.added]}"
    extra = (
        "<br>accepted by the target, but after the end of the output (EOS / length limit): not kept" if d.status[i] == "discarded" else ""
    )
    return (
        f"<b>{d.status[i]}</b> {esc(repr(piece(tr, s.tokens[i])))}<br>depth {s.depths[i]}"
        f"<br>draft q = {fmt_p(d.q(i))}<br>target p = {fmt_p(d.p(i))}{extra}"
    )


def legend(d: Draft, groups: dict) -> list[dict]:
    """Legend entries first, in reading order (visible dummy points; the real markers are invisible)."""
    names = {"discarded": "discarded (after the end)"}
    if not d.n:
        names[d.s.kind] = "the target's token"
    return [
        trace_of(
            "scatter",
            x=[None],
            y=[None],
            mode="markers",
            name=names.get(name, name),
            legendgroup=name,
            marker=dict(
                symbol="square",
                size=13,
                color=STATUS_COLOR[name],
                line=dict(color="#aeb6c2", width=1 if name in ("unreached", "discarded") else 0),
            ),
            hoverinfo="skip",
            meta="legend",
        )
        for name in ("root", "accepted", d.s.kind, "discarded", "rejected", "unreached")
        if groups.get(name)
    ]


def nodes(d: Draft, groups: dict, X: dict, maxlen: int, fsize: int, rotate: bool) -> tuple[list[dict], list[dict]]:
    """(hover markers, chips): an invisible marker carries each node's hover, an annotation draws it."""
    data, chips = [], []
    for name in ("unreached", "rejected", "discarded", "accepted", "root", d.s.kind):
        members = groups.get(name)
        if not members:
            continue
        color = STATUS_COLOR[name]
        data.append(
            trace_of(
                "scatter",
                x=[X[i] for i in members],
                y=[-d.ypos[i] for i in members],
                mode="markers",
                name=name,
                legendgroup=name,
                showlegend=False,
                meta="nodes",
                customdata=list(members),
                marker=dict(symbol="square", size=max(14, fsize * 2), color=color, opacity=0.0),
                hovertext=[hover(d, i) for i in members],
                hoverinfo="text",
                hoverlabel=dict(
                    bgcolor="#ffffff",
                    bordercolor=color if name not in ("unreached", "discarded") else "#64748b",
                    font=dict(color="#0f172a", size=14, family=FONT["family"]),
                ),
            )
        )
        for i in members:
            label = esc(visible(piece(d.tr, d.tok(i)), maxlen))
            if i in (-1, d.added) or name == "accepted":
                label = f"<b>{label}</b>"
            if name == "discarded":
                label = f"<s>{label}</s>"
            chips.append(
                dict(
                    x=X[i],
                    y=-d.ypos[i],
                    text=label,
                    showarrow=False,
                    bgcolor=color,
                    bordercolor="white" if name not in ("unreached", "discarded") else "#aeb6c2",
                    borderwidth=1,
                    borderpad=CHIP_PAD,
                    font=dict(size=fsize + (1 if i in (-1, d.added) else 0), color=STATUS_TEXT[name], family=MONO),
                    xanchor="center",
                    yanchor="middle",
                    **({"textangle": -90} if rotate else {}),
                )
            )
    return data, chips


KEY = "key"  # the name of the annotation under the tree that spells out shortened labels
KEY_FONT = 12  # px
KEY_LINE_PX = 17  # one line of the key (12 px text)


def full_key(d: Draft, maxlen: int) -> list[tuple[str, str]]:
    """(label as drawn, token in full) of every node whose chip shows it shortened, in the tree's
    reading order (left to right, top to bottom), once per token: on a touch screen there is
    no hover to read "␣p…" by, so the figure spells it out under the tree."""
    order = sorted([-1, d.added] + list(range(d.n)), key=lambda i: (d.depth[i], d.ypos[i]))
    out, seen = [], set()
    for i in order:
        text = piece(d.tr, d.tok(i))
        short, full = visible(text, maxlen), visible(text, 10**6)
        if short != full and full not in seen:
            seen.add(full)
            out.append((short, full))
    return out


def key_text(pairs: list[tuple[str, str]], width: float) -> str:
    """The key's text, wrapped to ``width`` px: "In full: ␣p… = ␣people · ␣c… = ␣circle"."""
    nb = "\u00a0"  # an entry never breaks inside itself
    entries = [f"{esc(short)}{nb}={nb}<b>{esc(full)}</b>" for short, full in pairs]
    # the plot is laid out for ``width`` px; a phone's is ~15 px narrower, and its margins take 16
    return wrap(f"In{nb}full: " + " · ".join(entries), int((width - 30) / (0.62 * KEY_FONT)))


def tree_figure(
    trace, step_index: int, height: int | None = None, compact: bool = False, width: int | None = None, font: int | None = None
) -> go.Figure:
    """The draft tree of one step, root at left, one column per depth.

    Nodes are coloured chips (accepted / discarded / rejected / unreached), the root is the
    last committed token, and the token the target added is drawn after the target-accepted
    path (blue: bonus, orange: correction; grey and struck through when the output ended
    first). The committed path is kept on top. ``step_index`` is 0-based (clamped); the title
    counts from 1. Column widths follow the labels; long tokens are shortened with … (the
    full token is in the hover, and in a key under the tree: "In full: ␣p… = ␣people", since a
    touch screen has no hover) so that no two chips overlap at a plot ``DESKTOP_WIDTH`` px
    wide (``compact``: ``COMPACT_WIDTH``, a phone; ``width`` overrides). ``font``: the largest
    label size (default 15 px up to 6 leaves, else 13; compact 12 / 11; smaller when needed to
    fit). ``height`` defaults to ``TREE_HEIGHT`` px (80 less compact) and grows with the number
    of leaves so that chips of one column never touch; pass it to force one (the font then
    shrinks to fit). Hover a node for its text (repr), depth, draft prob q, target prob p, status.
    """
    tr = as_trace(trace)
    if not tr.steps:
        return placeholder("No decoding steps in this trace")
    d = Draft.of(tr, min(max(int(step_index), 0), len(tr.steps) - 1))
    leaves = d.leaves

    # ---- horizontal: column widths from the labels
    cols: list[list[str]] = [[] for _ in range(max(d.depth.values()) + 1)]
    for i in [-1, d.added] + list(range(d.n)):
        cols[d.depth[i]].append(piece(tr, d.tok(i)))
    width = width or (COMPACT_WIDTH if compact else DESKTOP_WIDTH)
    base_font = font or ((12 if leaves <= 6 else 11) if compact else (15 if leaves <= 6 else 13))
    maxlen, fsize, col_w, col_x = tree_layout(cols, width, base_font, min_font=9, max_chars=8 if compact else 14)
    # a long, thin draft (an auto chain of 16): upright labels would keep two or three letters;
    # stand them on end instead, one chip height per column
    rotate = leaves <= 3 and maxlen < 7
    if rotate:
        maxlen, fsize = (10 if compact else 12), min(base_font, 13)
        long_side = max(chip_size(visible(t, maxlen), fsize + 1)[0] for col in cols for t in col)
        col_w, col_x = spread([chip_size("x", fsize + 1)[1]] * len(cols), width)
    head, sub = titles(d, compact, width)
    key = key_text(pairs, width) if (pairs := full_key(d, maxlen)) else ""
    key_h = (key.count("<br>") + 1) * KEY_LINE_PX + 8 if key else 0

    # ---- vertical: rows far enough apart that chips of a column never touch
    chip_h = long_side if rotate else chip_size("x", fsize + 1)[1]
    top, bottom = 72 + 15 * sub.count("<br>") + 21 * head.count("<br>"), (58 if compact else 40) + key_h
    if height is None:
        height = max(TREE_HEIGHT - (80 if compact else 0), int(top + bottom + (chip_h + ROW_GAP_PX) * leaves + 12))
    else:
        avail = (height - top - bottom - 12) / leaves
        while fsize > 8 and chip_size("x", fsize + 1)[1] + ROW_GAP_PX > avail:
            fsize -= 1
    pad_y = 0.5 + 6 / ((height - top - bottom) / leaves)
    X = {i: col_x[d.depth[i]] for i in d.depth}

    groups = {"root": [-1], "accepted": [], "discarded": [], "rejected": [], "unreached": []}
    groups.setdefault(d.added_status, []).append(d.added)
    for i in range(d.n):
        groups[d.status[i]].append(i)
    markers, chips = nodes(d, groups, X, maxlen, fsize, rotate)
    plot_h = height - top - bottom
    if key:  # under the tree, above the legend: every shortened label in full
        chips.append(
            dict(
                name=KEY,
                text=key,
                xref="paper",
                yref="paper",
                x=0,
                y=0,
                xanchor="left",
                yanchor="top",
                yshift=-6,
                align="left",
                showarrow=False,
                font=dict(size=KEY_FONT, color="#334155", family=MONO),
            )
        )

    total_w = col_x[-1] + col_w[-1] / 2
    lo, hi = -col_w[0] / 2 - 8, total_w + 8
    if hi - lo < width:  # a narrow tree: centred, not stretched
        extra = (width - (hi - lo)) / 2
        lo, hi = lo - extra, hi + extra
    frame = layout(
        height=height,
        title=title(head, sub),
        annotations=chips,
        hovermode="closest",
        margin=dict(l=8 if compact else 20, r=8 if compact else 20, t=top, b=bottom),
        xaxis=dict(visible=False, range=[lo, hi], fixedrange=True),
        yaxis=dict(visible=False, range=[-(leaves - 1) - pad_y, pad_y], fixedrange=True),
        legend=dict(
            orientation="h",
            x=1.0,
            xanchor="right",
            y=-(key_h + 2) / plot_h if key else -0.01,
            yanchor="top",
            font=dict(size=11 if compact else 12),
            itemclick=False,
            itemdoubleclick=False,
        ),
        showlegend=True,
        meta={"maxlen": maxlen, "font": fsize, "compact": compact, "width": width, "rotated": rotate, "key": len(pairs)},
    )
    return figure(edges(d, X, col_w) + legend(d, groups) + markers, frame)
