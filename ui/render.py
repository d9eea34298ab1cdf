"""Pure rendering: a decoding ``Trace`` (or its dict / JSON) -> display objects.

No model, no Gradio import: every function here takes a trace and returns a
plotly figure, a list for ``gr.HighlightedText``, or an HTML / Markdown string.
Each runs in a few milliseconds for a 200-step trace.

Vocabulary of the display (same colours everywhere):
  accepted  green  - draft token the target agreed with (committed)
  discarded pale, struck - agreed with, but after EOS / the length limit: not in the output
  rejected  red    - draft token tried and refused
  unreached grey   - draft token below a rejected node, never checked
  bonus     blue   - token the target added after a fully accepted path
  correction orange - token the target added in place of rejected drafts
  prefill   slate  - first token, produced by the prompt's forward
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from statistics import mean

import plotly.graph_objects as go

from core.trace import Step, Trace

# ---------------------------------------------------------------- palette
GREEN, RED, GREY, BLUE, ORANGE, SLATE = "#2e9e5b", "#d64545", "#c5ccd6", "#2f6fdb", "#ef8a17", "#334155"
AMBER = "#b45309"
DISCARDED = "#eef1f5"
STATUS_COLOR = {
    "root": SLATE,
    "accepted": GREEN,
    "rejected": RED,
    "unreached": GREY,
    "bonus": BLUE,
    "correction": ORANGE,
    "discarded": DISCARDED,
}
STATUS_TEXT = {
    "root": "white",
    "accepted": "white",
    "rejected": "white",
    "unreached": "#3f4a5a",
    "bonus": "white",
    "correction": "white",
    "discarded": "#475569",
}
# labels of highlighted_tokens() -> colour, for gr.HighlightedText(color_map=COLOR_MAP)
COLOR_MAP = {"accepted draft": "#7fd19b", "bonus": "#8fb4f5", "correction": "#f7b866", "prefill": "#cbd5e1"}
_ORIGIN_LABEL = {"accepted": "accepted draft", "bonus": "bonus", "correction": "correction", "prefill": "prefill"}

FONT = dict(family="Inter, 'Segoe UI', Helvetica, Arial, sans-serif", size=13, color="#1f2937")
TREE_HEIGHT = 320  # the smallest tree plot; denser trees grow
MONO = "'DejaVu Sans Mono', Menlo, Consolas, 'Noto Color Emoji', monospace"


# ---------------------------------------------------------------- helpers
def as_trace(trace) -> Trace:
    """Accept a Trace, its dict (``to_dict``) or its JSON text."""
    if isinstance(trace, Trace):
        return trace
    if isinstance(trace, dict):
        return Trace.from_dict(trace)
    if isinstance(trace, (str, bytes)):
        return Trace.from_json(trace)
    raise TypeError(f"expected a Trace, dict or JSON string, got {type(trace).__name__}")


def piece(trace: Trace, tok: int | None) -> str:
    """The text piece of a token id (``<id>`` when the vocab lacks it)."""
    if tok is None:
        return ""
    s = trace.vocab.get(str(tok))
    return f"<{tok}>" if s is None else s


_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\u00a0": "⍽"}


def visible(s: str, maxlen: int = 12) -> str:
    """A one-line label where whitespace shows: ' cat\\n' -> '␣cat↵'. Not HTML-escaped."""
    if s == "":
        return "∅"
    out = []
    for ch in s:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif not ch.isprintable():
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    t = "".join(out)
    return t if len(t) <= maxlen else t[: maxlen - 1] + "…"


def wrap(text: str, width: int) -> str:
    """Break a one-line plotly title (HTML-ish: <b>..</b> allowed) into lines of at most ``width``
    visible characters, joined by <br>; it breaks at spaces only (plotly titles never wrap by
    themselves, so a long one runs off the figure)."""
    lines, cur, n = [], [], 0
    words = text.replace(" · ", " ·\u00a0").split(" ")  # a "·" starts the next line, never ends one
    for word in words:
        w = len(html.unescape(re.sub(r"<[^>]+>", "", word)))
        if cur and n + 1 + w > width:
            lines.append(" ".join(cur))
            cur, n = [], 0
        n += w + (1 if cur else 0)
        cur.append(word)
    lines.append(" ".join(cur))
    return "<br>".join(line for line in lines if line).replace("\u00a0", " ")


def _esc(s: str) -> str:
    return html.escape(s, quote=False)


def _attr(s: str) -> str:
    """Text for an HTML attribute (quotes escaped too)."""
    return html.escape(str(s), quote=True)


# a small template built once: plotly's named templates are deep-copied on every figure (~60 ms)
_TEMPLATE = go.layout.Template(
    layout=dict(
        font=FONT,
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=[GREEN, BLUE, ORANGE, RED, SLATE],
        xaxis=dict(gridcolor="#eef2f6", linecolor="#cbd5e1", ticks="", zeroline=False, automargin=True),
        yaxis=dict(gridcolor="#eef2f6", linecolor="#cbd5e1", ticks="", zeroline=False, automargin=True),
        hoverlabel=dict(font=dict(size=13, color="#0f172a"), bgcolor="white", bordercolor="#334155"),
        legend=dict(bgcolor="rgba(255,255,255,0)"),
    )
)


def _layout(**kw) -> dict:
    base = dict(
        template=_TEMPLATE,
        font=FONT,
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin=dict(l=50, r=20, t=60, b=40),
        hoverlabel=dict(font=dict(size=13, color="#0f172a"), bgcolor="white", bordercolor="#334155"),
    )
    base.update(kw)
    return base


def _tr(kind: str, **kw) -> dict:
    return dict(type=kind, **kw)


def _fig(data: list, layout: dict) -> go.Figure:
    """Build without plotly's per-property validation (10x faster for 60 annotations);
    the tests re-validate every figure through ``go.Figure(fig.to_dict())``."""
    return go.Figure(data=data, layout=layout, _validate=False)


def _hline(y: float, color: str, dash: str = "dash", width: float = 1.5) -> dict:
    return dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=y, y1=y, line=dict(color=color, width=width, dash=dash), layer="above")


def _title(text: str, sub: str | None = None) -> dict:
    t = dict(text=f"<b>{text}</b>", x=0.01, xanchor="left", xref="container", y=0.985, yanchor="top", yref="container", font=dict(size=17))
    if sub:
        t["subtitle"] = dict(text=sub, font=dict(size=12, color="#64748b"))
    return t


def _placeholder(message: str, height: int = TREE_HEIGHT) -> go.Figure:
    return _fig(
        [],
        _layout(
            height=height,
            xaxis=dict(visible=False),
            yaxis=dict(visible=False),
            annotations=[
                dict(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=15, color="#64748b"))
            ],
        ),
    )


def empty_figure() -> go.Figure:
    """A blank 40 px figure (the page draws one off screen as it loads, to start plotly early)."""
    return _fig([], _layout(height=40, width=40, margin=dict(l=0, r=0, t=0, b=0), xaxis=dict(visible=False), yaxis=dict(visible=False)))


def _roots(trace: Trace) -> list[int | None]:
    """Root token (last committed token before the step) of every step."""
    last = trace.first_token
    out = []
    for s in trace.steps:
        out.append(last)
        if s.committed:
            last = s.committed[-1]
    return out


def _fmt_p(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ---------------------------------------------------------------- 1. the draft tree
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


def _text_cols(text: str) -> int:
    """Monospace columns a label takes (wide East Asian characters and emoji count 2)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" or ord(ch) >= 0x1F000 else 1 for ch in text)


CHAR_EM = 0.62  # advance of one monospace column, in font sizes (DejaVu Sans Mono: 0.602)
CHIP_PAD = 3  # annotation borderpad (px); + 1 px border each side
GAP_PX = 12  # at least this much between two columns of chips
ROW_GAP_PX = 6  # and between two chips of one column
DESKTOP_WIDTH = 720  # plot width the layout is made for (the Run tab's plot is wider at 1440 px)
COMPACT_WIDTH = 340  # ... and on a phone (compact=True)


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


def tree_figure(
    trace, step_index: int, height: int | None = None, compact: bool = False, width: int | None = None, font: int | None = None
) -> go.Figure:
    """The draft tree of one step, root at left, one column per depth.

    Nodes are coloured chips (accepted / discarded / rejected / unreached), the root is the
    last committed token, and the token the target added is drawn after the target-accepted
    path (blue: bonus, orange: correction; grey and struck through when the output ended
    first). The committed path is kept on top. ``step_index`` is 0-based (clamped); the title
    counts from 1. Column widths follow the labels; long tokens are shortened with … (the
    full token is in the hover) so that no two chips overlap at a plot ``DESKTOP_WIDTH`` px
    wide (``compact``: ``COMPACT_WIDTH``, a phone; ``width`` overrides). ``font``: the largest
    label size (default 13 px, 11 compact; smaller when needed to fit). ``height`` defaults to 420 px and grows
    with the number of leaves so that chips of one column never touch; pass it to force one.
    Hover a node for its text (repr), depth, draft prob q, target prob p, status.
    """
    tr = as_trace(trace)
    if not tr.steps:
        return _placeholder("No decoding steps in this trace")
    k = min(max(int(step_index), 0), len(tr.steps) - 1)
    s: Step = tr.steps[k]
    root_tok = _roots(tr)[k]
    n = len(s.tokens)
    status = node_status(s)
    discarded = list(getattr(s, "discarded", None) or [])
    path = list(s.accepted) + discarded  # what the target accepted, kept or not
    added = n  # virtual node id of the added token
    added_kept = len(s.committed) > len(s.accepted)
    added_status = s.kind if added_kept else "discarded"
    last = path[-1] if path else -1
    qs = list(s.q) + [None]
    ps = (list(s.p) if s.p is not None else [None] * n) + [None]

    # children in display order: accepted child / added token first, then by draft prob
    kids: dict[int, list[int]] = {}
    for i, par in enumerate(s.parents):
        kids.setdefault(par, []).append(i)
    kids.setdefault(last, []).append(added)
    rank = {"accepted": 0, "discarded": 0, "rejected": 1, "unreached": 2}

    def order(i: int) -> tuple:
        if i == added:
            return (0, 0.0)
        return (rank[status[i]], -(qs[i] or 0.0))

    for c in kids.values():
        c.sort(key=order)

    # tidy layout: leaves evenly spaced, parents centred on their first and last child
    ypos: dict[int, float] = {}
    depth = {-1: 0, added: len(path) + 1}
    depth.update({i: d for i, d in enumerate(s.depths)})
    counter = [0.0]
    stack = [(-1, False)]
    while stack:  # iterative post-order
        node, done = stack.pop()
        ch = kids.get(node, [])
        if not ch:
            ypos[node] = counter[0]
            counter[0] += 1
        elif done:
            ypos[node] = (ypos[ch[0]] + ypos[ch[-1]]) / 2
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(ch))
    leaves = max(int(counter[0]), 1)
    max_depth = max(depth.values())

    def tok_of(i: int):
        return root_tok if i == -1 else s.token if i == added else s.tokens[i]

    # ---- horizontal: column widths from the labels
    cols: list[list[str]] = [[] for _ in range(max_depth + 1)]
    for i in [-1, added] + list(range(n)):
        cols[depth[i]].append(piece(tr, tok_of(i)))
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
    # ---- title and frame
    m = len(s.accepted)
    if n:
        title = f"Step {k + 1}: accepted {m} of {n} drafted"
    else:
        title = f"Step {k + 1}: no draft (plain autoregressive step)"
    where = f" · step {k + 1} of {len(tr.steps)}"
    if not added_kept:  # cut at EOS / the length limit inside the accepted path
        sub = (
            f"the answer ended after {len(s.committed)} accepted token{'s' if len(s.committed) != 1 else ''}"
            " (end of text or the length limit): "
            + (
                f"the other {len(discarded)} accepted and the target's own token are discarded"
                if discarded
                else "the target's own token is discarded"
            )
            + where
        )
    elif n == 0:
        sub = f"the target wrote {_esc(repr(piece(tr, s.token)))} itself: one token for one forward{where}"
    else:
        sub = (
            f"then the target added {_esc(repr(piece(tr, s.token)))} as a <b>{s.kind}</b>"
            f" · committed {len(s.committed)} token{'s' if len(s.committed) != 1 else ''}{where}"
        )
    if compact:  # a phone: no step count (the slider says it)
        title = title.replace(" drafted", "")
        sub = sub.rsplit(" · step ", 1)[0]
    sub = wrap(sub, int(width / 6.8))  # 12 px text: about 6.8 px a character
    title = wrap(title, int(width / 10.5))  # 17 px bold
    # ---- vertical: rows far enough apart that chips of a column never touch
    chip_h = long_side if rotate else chip_size("x", fsize + 1)[1]
    pitch = chip_h + ROW_GAP_PX
    top, bottom = 72 + 15 * sub.count("<br>") + 21 * title.count("<br>"), (58 if compact else 40)
    if height is None:
        height = max(TREE_HEIGHT - (80 if compact else 0), int(top + bottom + pitch * leaves + 12))
    else:
        avail = (height - top - bottom - 12) / leaves
        while fsize > 8 and chip_size("x", fsize + 1)[1] + ROW_GAP_PX > avail:
            fsize -= 1
    px_per_row = (height - top - bottom) / leaves
    pad_y = 0.5 + 6 / px_per_row

    X = {i: col_x[depth[i]] for i in depth}

    # ---- edges (elbows: out of the parent, along a bus in the gap, into the child)
    edge_groups = {"unreached": ([], []), "rejected": ([], []), "discarded": ([], []), "accepted": ([], []), "added": ([], [])}
    for c in list(range(n)) + [added]:
        par = last if c == added else s.parents[c]
        x0, y0, x1, y1 = X[par], -ypos[par], X[c], -ypos[c]
        xm = (x0 + col_w[depth[par]] / 2 + x1 - col_w[depth[c]] / 2) / 2
        grp = ("added" if added_kept else "discarded") if c == added else status[c]
        xs, ys = edge_groups[grp]
        xs += [x0, xm, xm, x1, None]
        ys += [y0, y0, y1, y1, None]
    added_color = STATUS_COLOR[added_status]
    edge_style = {
        "unreached": dict(color="#cfd5de", width=1.3),
        "rejected": dict(color="#eba3a3", width=1.6),
        "discarded": dict(color="#aeb6c2", width=2.0, dash="dot"),
        "accepted": dict(color=GREEN, width=3.5),
        "added": dict(color=added_color, width=3.5, dash="dot"),
    }
    data = []
    for grp in ("unreached", "rejected", "discarded", "accepted", "added"):
        xs, ys = edge_groups[grp]
        if xs:
            data.append(
                _tr(
                    "scatter",
                    x=xs,
                    y=ys,
                    mode="lines",
                    line=edge_style[grp],
                    hoverinfo="skip",
                    showlegend=False,
                    name=f"edges {grp}",
                    meta="edges",
                )
            )

    # ---- nodes: an invisible hover marker + a chip (annotation) per node
    def hover(i: int) -> str:
        if i == -1:
            return f"<b>root</b> {_esc(repr(piece(tr, root_tok)))}<br>last committed token<br>depth 0"
        if i == added:
            why = "after the whole accepted path" if s.kind == "bonus" else "in place of the rejected drafts"
            kept = "" if added_kept else "<br>discarded: the output had already ended (EOS / length limit)"
            return f"<b>{s.kind}</b> {_esc(repr(piece(tr, s.token)))}<br>added by the target {why}{kept}<br>depth {depth[added]}"
        extra = (
            "<br>accepted by the target, but after the end of the output (EOS / length limit): not kept" if status[i] == "discarded" else ""
        )
        return (
            f"<b>{status[i]}</b> {_esc(repr(piece(tr, s.tokens[i])))}<br>depth {s.depths[i]}"
            f"<br>draft q = {_fmt_p(qs[i])}<br>target p = {_fmt_p(ps[i])}{extra}"
        )

    groups = {"root": [-1], "accepted": [], "discarded": [], "rejected": [], "unreached": []}
    groups.setdefault(added_status, []).append(added)
    for i in range(n):
        groups[status[i]].append(i)
    # legend entries first, in reading order (visible dummy points; the real markers are invisible)
    legend_names = {"discarded": "discarded (after the end)"}
    if not n:
        legend_names[s.kind] = "the target's token"
    for name in ("root", "accepted", s.kind, "discarded", "rejected", "unreached"):
        if groups.get(name):
            data.append(
                _tr(
                    "scatter",
                    x=[None],
                    y=[None],
                    mode="markers",
                    name=legend_names.get(name, name),
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
            )
    annotations = []
    for name in ("unreached", "rejected", "discarded", "accepted", "root", s.kind):
        nodes = groups.get(name)
        if not nodes:
            continue
        color = STATUS_COLOR[name]
        data.append(
            _tr(
                "scatter",
                x=[X[i] for i in nodes],
                y=[-ypos[i] for i in nodes],
                mode="markers",
                name=name,
                legendgroup=name,
                showlegend=False,
                meta="nodes",
                customdata=[i for i in nodes],
                marker=dict(symbol="square", size=max(14, fsize * 2), color=color, opacity=0.0),
                hovertext=[hover(i) for i in nodes],
                hoverinfo="text",
                hoverlabel=dict(
                    bgcolor="#ffffff",
                    bordercolor=color if name not in ("unreached", "discarded") else "#64748b",
                    font=dict(color="#0f172a", size=14, family=FONT["family"]),
                ),
            )
        )
        for i in nodes:
            label = _esc(visible(piece(tr, tok_of(i)), maxlen))
            if i in (-1, added) or name == "accepted":
                label = f"<b>{label}</b>"
            if name == "discarded":
                label = f"<s>{label}</s>"
            annotations.append(
                dict(
                    x=X[i],
                    y=-ypos[i],
                    text=label,
                    showarrow=False,
                    bgcolor=color,
                    bordercolor="white" if name not in ("unreached", "discarded") else "#aeb6c2",
                    borderwidth=1,
                    borderpad=CHIP_PAD,
                    font=dict(size=fsize + (1 if i in (-1, added) else 0), color=STATUS_TEXT[name], family=MONO),
                    xanchor="center",
                    yanchor="middle",
                    **({"textangle": -90} if rotate else {}),
                )
            )

    total_w = col_x[-1] + col_w[-1] / 2
    lo, hi = -col_w[0] / 2 - 8, total_w + 8
    if hi - lo < width:  # a narrow tree: centred, not stretched
        extra = (width - (hi - lo)) / 2
        lo, hi = lo - extra, hi + extra
    layout = _layout(
        height=height,
        title=_title(title, sub),
        annotations=annotations,
        hovermode="closest",
        margin=dict(l=8 if compact else 20, r=8 if compact else 20, t=top, b=bottom),
        xaxis=dict(visible=False, range=[lo, hi], fixedrange=True),
        yaxis=dict(visible=False, range=[-(leaves - 1) - pad_y, pad_y], fixedrange=True),
        legend=dict(
            orientation="h",
            x=1.0,
            xanchor="right",
            y=-0.01,
            yanchor="top",
            font=dict(size=11 if compact else 12),
            itemclick=False,
            itemdoubleclick=False,
        ),
        showlegend=True,
        meta={"maxlen": maxlen, "font": fsize, "compact": compact, "width": width, "rotated": rotate},
    )
    return _fig(data, layout)


# ---------------------------------------------------------------- 2. the text
def highlighted_tokens(trace) -> list[tuple[str, str | None]]:
    """(text piece, label) for every output token, for ``gr.HighlightedText``.

    Labels: "prefill" (first token), "accepted draft", "bonus", "correction";
    use with ``color_map=COLOR_MAP``.
    """
    tr = as_trace(trace)
    return [(piece(tr, tok), _ORIGIN_LABEL.get(origin)) for tok, origin, _ in tr.token_origins()]


_TABLE_CSS = f"""<style>
.ss-steps {{max-height:480px;overflow:auto}}
.ss-steps table {{border-collapse:collapse;width:100%;font-size:14px}}
.ss-steps th {{text-align:left;padding:4px 8px;border-bottom:2px solid #e2e8f0;position:sticky;top:0;background:white}}
.ss-steps td {{padding:3px 8px;border-bottom:1px solid #f1f5f9;vertical-align:top}}
.ss-steps .n {{text-align:right;color:#64748b}}
.ss-m {{color:#64748b;font-size:0.8em}}
.ss-t {{display:inline-block;margin:1px 2px;padding:0 5px;border-radius:4px;white-space:pre;
       font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.9em;color:white}}
.ss-a {{background:{GREEN}}} .ss-r {{background:#fde4e4;color:#a61b1b}}
.ss-bonus {{background:{BLUE}}} .ss-correction {{background:{ORANGE}}}
</style>"""


def rejected_html(trace, max_rows: int | None = None, only_rejections: bool = False) -> str:
    """HTML table, one row per step: accepted drafts, rejected alternatives (by depth)
    and the token the target added. Hover a chip for its draft / target probability.
    ``only_rejections`` keeps the steps that rejected something; ``max_rows`` caps rows."""
    tr = as_trace(trace)
    if not tr.steps:
        return '<div style="color:#64748b">No decoding steps in this trace.</div>'
    label: dict[int, str] = {}

    def chip(tok: int, cls: str, q=None, p=None) -> str:
        t = label.get(tok)
        if t is None:
            t = label[tok] = html.escape(visible(piece(tr, tok), 24))
        tip = "" if q is None else f' title="q={_fmt_p(q)} p={_fmt_p(p)}"'
        return f'<span class="ss-t {cls}"{tip}>{t}</span>'

    dash = '<span class="ss-m">—</span>'
    rows = []
    for k, s in enumerate(tr.steps):
        if only_rejections and not s.rejected:
            continue
        if max_rows is not None and len(rows) >= max_rows:
            break
        pv = s.p if s.p is not None else [None] * len(s.tokens)
        acc = "".join(chip(s.tokens[i], "ss-a", s.q[i], pv[i]) for i in s.accepted) or dash
        by_depth: dict[int, list[int]] = {}
        for i in s.rejected:
            by_depth.setdefault(s.depths[i], []).append(i)
        rej = (
            "<br>".join(
                f'<span class="ss-m">d{d}</span> '
                + "".join(chip(s.tokens[i], "ss-r", s.q[i], pv[i]) for i in sorted(by_depth[d], key=lambda i: -s.q[i]))
                for d in sorted(by_depth)
            )
            or dash
        )
        add = chip(s.token, f"ss-{s.kind}") + f' <span class="ss-m">{s.kind}</span>'
        rows.append(f'<tr><td class="n">{k + 1}</td><td>{len(s.tokens)}</td><td>{acc}</td><td>{rej}</td><td>{add}</td></tr>')
    total = sum(1 for s in tr.steps if s.rejected) if only_rejections else len(tr.steps)
    more = f'<div class="ss-m">{len(rows)} of {total} rows shown.</div>' if len(rows) < total else ""
    if not rows:
        return '<div style="color:#64748b">No rejected drafts in this trace.</div>'
    return (
        _TABLE_CSS + '<div class="ss-steps"><table><thead><tr><th>step</th><th>drafted</th>'
        "<th>accepted drafts</th><th>rejected alternatives (by depth)</th><th>added by target</th>"
        "</tr></thead><tbody>" + "".join(rows) + f"</tbody></table></div>{more}"
    )


# ---------------------------------------------------------------- 3. charts
def accept_length_figure(trace, height: int = 350) -> go.Figure:
    """Per step: accepted draft tokens (excl. bonus) in front of the drafted depth."""
    tr = as_trace(trace)
    if not tr.steps:
        return _placeholder("No decoding steps in this trace", height)
    xs = list(range(1, len(tr.steps) + 1))
    acc = [len(s.accepted) for s in tr.steps]
    drafted = [max(s.depths, default=0) for s in tr.steps]
    nodes = [len(s.tokens) for s in tr.steps]
    kinds = [s.kind for s in tr.steps]
    avg = mean(acc)
    fig = _fig(
        data=[
            _tr(
                "bar",
                x=xs,
                y=drafted,
                name="drafted depth",
                marker=dict(color="#dbe4ee"),
                customdata=nodes,
                hovertemplate="step %{x}<br>drafted depth %{y}<br>%{customdata} draft nodes<extra></extra>",
            ),
            _tr(
                "bar",
                x=xs,
                y=acc,
                name="accepted (excl. bonus)",
                marker=dict(color=GREEN),
                customdata=kinds,
                hovertemplate="step %{x}<br>accepted %{y}<br>then %{customdata}<extra></extra>",
            ),
        ],
        layout=_layout(
            height=height,
            barmode="overlay",
            bargap=0.15 if len(xs) < 80 else 0.0,
            title=_title("Accepted draft tokens per step", f"mean {avg:.2f} accepted (excl. bonus): the line"),
            xaxis=dict(title="step", showgrid=False, zeroline=False),
            yaxis=dict(title="tokens", gridcolor="#eef2f6", rangemode="tozero", **({"dtick": 1} if max(drafted + acc) <= 10 else {})),
            # the legend under the plot: above it, it would run into the subtitle on a narrow screen
            legend=dict(orientation="h", x=0, xanchor="left", y=0.01, yref="container", yanchor="bottom"),
            margin=dict(l=55, r=20, t=80, b=92),
            shapes=[_hline(avg, "#1f7a45")],
        ),
    )
    return fig


def depth_figure(trace, height: int = 350) -> go.Figure:
    """Acceptance by depth: bars = share of steps whose accepted path reached depth d
    (among steps that drafted that deep), line = acceptance at d given d-1 accepted."""
    tr = as_trace(trace)
    reach = tr.summary()["acceptance_by_depth"]
    if not reach:
        return _placeholder("No draft tokens: nothing to accept (autoregressive run)", height)
    # up to one depth past the deepest accepted one: an auto chain drafts up to 16 deep, and
    # depths no step ever reached would only be empty bars along the axis
    deepest = max((d for d, r in enumerate(reach, 1) if r), default=0)
    reach = reach[: min(len(reach), deepest + 1)]
    depths = list(range(1, len(reach) + 1))
    cond = []
    for d in depths:
        prev = sum(1 for s in tr.steps if max(s.depths, default=0) >= d and len(s.accepted) >= d - 1)
        ok = sum(1 for s in tr.steps if max(s.depths, default=0) >= d and len(s.accepted) >= d)
        cond.append(ok / prev if prev else None)
    vals = [r if r is not None else 0 for r in reach]
    fig = _fig(
        data=[
            _tr(
                "bar",
                x=depths,
                y=vals,
                name="reached depth d",
                marker=dict(color=GREEN),
                text=[f"{v:.0%}" for v in vals],
                textposition="inside",
                insidetextanchor="end",
                textfont=dict(color="white", size=14),
                hovertemplate="depth %{x}<br>%{y:.1%} of steps accepted ≥ %{x} tokens<extra></extra>",
            ),
            _tr(
                "scatter",
                x=depths,
                y=cond,
                name="accepted at d | d−1 accepted",
                mode="lines+markers",
                line=dict(color=SLATE, width=2),
                marker=dict(size=8),
                hovertemplate="depth %{x}<br>%{y:.1%} given depth %{x}−1 accepted<extra></extra>",
            ),
        ],
        layout=_layout(
            height=height,
            title=_title("Acceptance by depth"),
            xaxis=dict(title="depth in the draft", dtick=1, showgrid=False, range=[0.5, len(depths) + 0.5]),
            yaxis=dict(title="rate", range=[0, 1.12], tickformat=".0%", gridcolor="#eef2f6"),
            legend=dict(orientation="h", x=0, xanchor="left", y=0.01, yref="container", yanchor="bottom"),
            margin=dict(l=60, r=20, t=56, b=92),
        ),
    )
    return fig


def time_figure(trace, height: int = 320) -> go.Figure:
    """Donut of wall time: prefill / draft / verify / other (+ untracked, if any)."""
    tr = as_trace(trace)
    split = tr.summary()["time_split"]
    labels = ["prefill", "draft", "verify", "other"]
    vals = [split[k] for k in labels]
    untracked = tr.wall_s - sum(vals)
    if untracked > 0.01 * max(tr.wall_s, 1e-9):
        labels.append("untracked")
        vals.append(untracked)
    keep = [(lb, v) for lb, v in zip(labels, vals) if v > 0]  # no empty "0%" slices
    labels, vals = [lb for lb, _ in keep], [v for _, v in keep]
    total = sum(vals)
    if total <= 0:
        return _placeholder("No timing recorded", height)
    colors = {"prefill": "#94a3b8", "draft": "#8b5cf6", "verify": BLUE, "other": "#f59e0b", "untracked": "#e2e8f0"}
    fig = _fig(
        data=[
            _tr(
                "pie",
                labels=labels,
                values=vals,
                hole=0.58,
                sort=False,
                direction="clockwise",
                marker=dict(colors=[colors[lb] for lb in labels], line=dict(color="white", width=2)),
                textinfo="label+percent",
                textposition="outside",
                hovertemplate="%{label}<br>%{value:.3f} s (%{percent})<extra></extra>",
            )
        ],
        layout=_layout(
            height=height,
            title=_title("Where the time went"),
            showlegend=False,
            margin=dict(l=30, r=30, t=70, b=30),
            annotations=[dict(text=f"<b>{tr.wall_s:.2f} s</b><br>wall", x=0.5, y=0.5, showarrow=False, font=dict(size=15))],
        ),
    )
    return fig


def _badge(text: str, color: str) -> str:
    return (
        f'<span style="display:inline-block;padding:2px 10px;border-radius:999px;'
        f'background:{color};color:white;font-weight:600">{text}</span>'
    )


def outputs_identical(trace, ar_trace) -> tuple[bool, int | None]:
    """(identical, index of the first differing token or None)."""
    a, b = as_trace(trace).output, as_trace(ar_trace).output
    if a == b:
        return True, None
    i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return False, i


def speedup_text(speedup: float, rounds: list[float] | None = None) -> str:
    """ "1.92× (1.70–2.20 over 3 runs)"; one run: "1.92× (1 run)"."""
    rounds = [r for r in (rounds or []) if isinstance(r, (int, float)) and math.isfinite(r)]
    if len(rounds) > 1:
        return f"{speedup:.2f}× ({min(rounds):.2f}–{max(rounds):.2f} over {len(rounds)} runs)"
    return f"{speedup:.2f}× (1 run)" if rounds else f"{speedup:.2f}×"


def summary_markdown(trace, ar_trace=None, speedup: float | None = None, speedups: list | None = None) -> str:
    """Markdown of the headline numbers; with ``ar_trace``: speedup and exactness badge.
    ``speedup`` / ``speedups``: the median and per-round ratios of repeated timings (default:
    the one ratio of the two traces' wall times)."""
    tr = as_trace(trace)
    sm = tr.summary()
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| **τ: tokens per speculative step (incl. bonus, excl. prefill)** | **{sm['tau']:.2f}** |",
        f"| accepted draft tokens per step (excl. bonus) | {sm['accepted_per_step']:.2f} |",
        f"| drafted tokens per step | {sm['drafted_per_step']:.1f} |",
        f"| new tokens | {sm['new_tokens']} |",
        f"| target forwards (incl. prefill) | {sm['target_forwards']} |",
        f"| tokens / s | {sm['tokens_per_s']:.1f} |",
        f"| wall time | {sm['wall_s']:.2f} s |",
    ]
    out = "\n".join(lines)
    if ar_trace is not None:
        ar = as_trace(ar_trace)
        asm = ar.summary()
        speed = speedup if speedup is not None else (ar.wall_s / tr.wall_s if tr.wall_s > 0 and ar.wall_s > 0 else None)
        same, where = outputs_identical(tr, ar)
        div = ((tr.meta or {}).get("ar_baseline") or {}).get("divergence")
        if isinstance(div, dict):  # recorded against the identity reference (core.api.compare)
            same, where = div.get("kind") == "identical", div.get("position")
        temp = (tr.meta or {}).get("temperature")
        sampling = isinstance(temp, (int, float)) and temp > 0
        extra = [
            f"| autoregressive tokens / s | {asm['tokens_per_s']:.1f} |",
            f"| autoregressive wall time | {asm['wall_s']:.2f} s |",
            (
                f"| **measured speedup (spec tok/s ÷ AR tok/s)** | **{speedup_text(speed, speedups)}** |"
                if speed >= 1
                else f"| **measured speedup (spec tok/s ÷ AR tok/s)** | **{speedup_text(speed, speedups)}: slower than plain decoding** |"
            )
            if speed
            else "| measured speedup | n/a |",
        ]
        out += "\n" + "\n".join(extra)
        if same:
            badge = _badge("✓ identical output", GREEN) + f" same {len(tr.output)} token ids as plain decoding"
        elif sampling:
            badge = (
                _badge("≠ outputs differ (expected when sampling)", "#64748b")
                + f" first difference at token {where}; at temperature {temp} compare distributions, not strings"
            )
        elif isinstance(div, dict) and div.get("kind") in ("near-tie", "shorter"):
            badge = _badge("≈ identical up to a rounding tie", AMBER) + f" {html.escape(div.get('text', ''))}"
        else:
            badge = _badge("✗ outputs differ", RED) + (
                f" {html.escape(div['text'])}" if isinstance(div, dict) else f" first difference at token {where}"
            )
        out += "\n\n" + badge
    return out


# ---------------------------------------------------------------- 4. comparison
def compare_figure(rows: list[dict], height: int | None = None) -> go.Figure:
    """Two panels, one above the other, each with its own axis: τ (tokens per speculative step)
    and the measured speedup (×, with a dashed line at 1 = as fast as plain decoding; a bar below
    it is amber). Horizontal bars with the configuration names on the left (two short lines
    each), so the names and numbers stay readable at any width, a phone's included.

    ``rows``: dicts with "config", "tau", "speedup", optional "speedups" (per-round ratios:
    shown as the range after the median), "tokens_per_s", "identical". A config whose output
    differs from plain decoding gets a ⚠ in its name. ``height`` defaults to what the rows need.
    """
    if not rows:
        return _placeholder("No configurations compared yet", height or 240)
    names = [("⚠ " if r.get("identical") is False else "") + str(r.get("config", "?")).replace(" · ", "<br>") for r in rows]
    tau = [r.get("tau") for r in rows]
    spd = [r.get("speedup") for r in rows]
    tps = [r.get("tokens_per_s") for r in rows]
    ident = ["identical" if r.get("identical") else "n/a" if r.get("identical") is None else "DIFFERS" for r in rows]
    cd = list(zip(tps, ident))

    def num(v):
        return isinstance(v, (int, float)) and not math.isnan(v)

    lo = [min(r.get("speedups") or [v]) if num(v) else None for r, v in zip(rows, spd)]
    hi = [max(r.get("speedups") or [v]) if num(v) else None for r, v in zip(rows, spd)]
    spd_text = [
        ("" if not num(v) else f"{v:.2f}×" if len(r.get("speedups") or []) < 2 else f"{v:.2f}× ({a:.2f}–{b:.2f})")
        for r, v, a, b in zip(rows, spd, lo, hi)
    ]
    cd2 = [(t, i, a if a is not None else 0, b if b is not None else 0) for (t, i), a, b in zip(cd, lo, hi)]
    colors = [BLUE if not num(v) or v >= 1 else "#f59e0b" for v in spd]
    top_spd = max([v for v in spd if num(v)] + [1.0])
    top_tau = max([v for v in tau if num(v)] + [1.0])
    # pixels: each panel one 40 px row per configuration; room between them for the upper
    # panel's tick labels and axis title; the numbers sit right of their bars (the axes run
    # far enough past the longest bar for the text, a median and its range, to fit)
    row_px, top, gap, bottom = 40, 64, 78, 56
    panel = row_px * len(rows) + 8
    height = height or top + 2 * panel + gap + bottom
    inner = height - top - bottom
    split = (panel / inner, (panel + gap) / inner)
    fig = _fig(
        data=[
            _tr(
                "bar",
                y=names,
                x=tau,
                orientation="h",
                name="τ (tokens per speculative step)",
                marker=dict(color=GREEN),
                text=[f"{v:.2f}" if num(v) else "" for v in tau],
                textposition="outside",
                cliponaxis=False,
                customdata=cd,
                textfont=dict(size=12),
                xaxis="x",
                yaxis="y",
                showlegend=False,
                hovertemplate="%{y}<br>τ %{x:.2f} tokens per speculative step<br>%{customdata[0]} tok/s · %{customdata[1]}<extra></extra>",
            ),
            _tr(
                "bar",
                y=names,
                x=spd,
                orientation="h",
                name="speedup vs plain decoding",
                marker=dict(color=colors),
                text=spd_text,
                textposition="outside",
                cliponaxis=False,
                customdata=cd2,
                textfont=dict(size=12),
                xaxis="x2",
                yaxis="y2",
                showlegend=False,
                hovertemplate="%{y}<br>speedup %{x:.2f}× (median; range %{customdata[2]:.2f}–"
                "%{customdata[3]:.2f})<br>%{customdata[0]} tok/s · %{customdata[1]}<extra></extra>",
            ),
        ],
        layout=_layout(
            height=height,
            bargap=0.3,
            title=_title("Configurations compared"),
            yaxis=dict(domain=[split[1], 1], autorange="reversed", showgrid=False, automargin=True, anchor="x", tickfont=dict(size=12)),
            xaxis=dict(
                title=dict(text="<b>τ</b>: tokens per speculative step", standoff=6),
                anchor="y",
                gridcolor="#eef2f6",
                range=[0, top_tau * 1.3],
                rangemode="tozero",
                automargin=True,
            ),
            yaxis2=dict(domain=[0, split[0]], autorange="reversed", showgrid=False, automargin=True, anchor="x2", tickfont=dict(size=12)),
            xaxis2=dict(
                title=dict(text="<b>speedup</b> × (dashed line: plain)", standoff=6),
                anchor="y2",
                gridcolor="#eef2f6",
                range=[0, top_spd * 2.0],
                automargin=True,
            ),
            margin=dict(l=12, r=16, t=top, b=bottom),
            shapes=[
                dict(
                    type="line",
                    yref="y2 domain",
                    y0=0,
                    y1=1,
                    xref="x2",
                    x0=1.0,
                    x1=1.0,
                    line=dict(color="#64748b", width=1, dash="dash"),
                    layer="below",
                )
            ],
        ),
    )
    return fig


# ---------------------------------------------------------------- 5. which tokens need the image
def _pct(rate) -> str:
    return "n/a" if rate is None else f"{100 * rate:.0f}%"


def split_line(split: dict) -> str:
    """ "image-dependent tokens: 41% of drafts accepted; other tokens: 93%" from
    ``core.visual.split_acceptance`` (its ``accept_rate``: drafted positions with an accepted draft)."""
    return (
        f"image-dependent tokens: {_pct(split['image_dependent']['accept_rate'])} of drafts accepted; "
        f"other tokens: {_pct(split['other']['accept_rate'])}"
    )


def visual_tip(trace: Trace, rec: dict) -> str:
    """The hover text of one token's visual-dependence record."""
    tip = f"KL(with image ‖ without) = {rec['kl']:.2f} nats"
    if rec.get("changed"):
        tip += f"; argmax changes without the image (→ {visible(piece(trace, rec.get('argmax_noimg')), 16)})"
    else:
        tip += "; argmax stays the same without the image"
    return tip


def split_lead(text: str) -> tuple[str, str]:
    """(leading spaces, the rest), both HTML-escaped, for a coloured token chip: the space before
    a word goes before its chip, so a line never breaks inside a chip (a coloured sliver left at
    the end of one line, the word on the next). A token of spaces only keeps one, unbreakable,
    inside its chip."""
    rest = text.lstrip(" ")
    if not rest:
        return "", "\u00a0" * max(len(text), 1) if text else ""
    return _esc(text[: len(text) - len(rest)]), _esc(rest)


def visual_answer_html(trace) -> str:
    """The coloured answer (the same colours as ``highlighted_tokens``) with every image-dependent
    token (``trace.visual``) underlined and marked with a small eye; hover a token for its KL and
    whether the argmax changes without the image. Dark text on light colours."""
    tr = as_trace(trace)
    recs = {r["index"]: r for r in (tr.visual or {}).get("tokens", [])}
    parts = []
    for i, (tok, origin, _) in enumerate(tr.token_origins()):
        label = _ORIGIN_LABEL.get(origin)
        bg = COLOR_MAP.get(label, "transparent")
        r = recs.get(i)
        lead, txt = split_lead(piece(tr, tok))
        parts.append(lead)
        if r is not None and r.get("image_dependent"):
            parts.append(
                f'<span class="ss-tok ss-vis" data-i="{i}" style="background:{bg}" '
                f'title="{_attr("needs the image · " + (label or "") + " · " + visual_tip(tr, r))}">{txt}'
                f'<span class="ss-eye" role="img" aria-label="needs the image"></span></span>'
            )
        else:
            tip = f"{label or ''}" + (f" · {visual_tip(tr, r)}" if r is not None else "")
            parts.append(f'<span class="ss-tok" data-i="{i}" style="background:{bg}" title="{_attr(tip)}">{txt}</span>')
    legend = "".join(f'<span><span class="sw" style="background:{c}"></span>{_esc(n)}</span>' for n, c in COLOR_MAP.items())
    legend += '<span><span class="ss-vis-key">abc<span class="ss-eye"></span></span> needs the image</span>'
    return f'<div class="ss-vis-answer">{"".join(parts)}</div><div class="ss-legend">{legend}</div>'


def visual_panel_html(trace, split: dict | None = None) -> str:
    """The Run tab's "Which tokens need the image?" result: the share of image-dependent tokens
    and what finding them cost, the split line (``split``: ``core.visual.split_acceptance`` of a
    speculative run; None for a plain run) and the marked answer."""
    tr = as_trace(trace)
    v = tr.visual or {}
    n, dep = len(v.get("tokens", [])), int(v.get("n_dependent", 0))
    head = (
        f'<div class="ss-vis-head" data-dependent="{dep}"><b>{dep} of {n} tokens need the image</b> '
        f'(KL &gt; {v.get("threshold_nats", 1.0):g} nat or the argmax changes without it; measured with '
        f'two target forwards in {float(v.get("cost_s", 0.0)):.2f} s, after the timed runs)'
    )
    if split is not None:
        head += f'<div class="ss-split">{_esc(split_line(split))}</div>'
    return head + "</div>" + visual_answer_html(tr)
