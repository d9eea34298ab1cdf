"""What every rendering module shares: the palette, the fonts, reading a trace's pieces, and the
plotly building blocks (a small template, unvalidated figures, titles, placeholders)."""

from __future__ import annotations

import html
import re

import plotly.graph_objects as go

from core.api import Trace

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
ORIGIN_LABEL = {"accepted": "accepted draft", "bonus": "bonus", "correction": "correction", "prefill": "prefill"}

FONT = dict(family="Inter, 'Segoe UI', Helvetica, Arial, sans-serif", size=13, color="#1f2937")
TREE_HEIGHT = 320  # the smallest tree plot; denser trees grow
MONO = "'DejaVu Sans Mono', Menlo, Consolas, 'Noto Color Emoji', monospace"


# ---------------------------------------------------------------- a trace's pieces
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


def esc(s: str) -> str:
    return html.escape(s, quote=False)


def attr(s: str) -> str:
    """Text for an HTML attribute (quotes escaped too)."""
    return html.escape(str(s), quote=True)


def fmt_p(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ---------------------------------------------------------------- plotly building blocks
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


def layout(**kw) -> dict:
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


def trace_of(kind: str, **kw) -> dict:
    """One plotly trace (a bar, a scatter, ...) as a plain dict."""
    return dict(type=kind, **kw)


def figure(data: list, layout: dict) -> go.Figure:
    """Build without plotly's per-property validation (10x faster for 60 annotations);
    the tests re-validate every figure through ``go.Figure(fig.to_dict())``."""
    return go.Figure(data=data, layout=layout, _validate=False)


def hline(y: float, color: str, dash: str = "dash", width: float = 1.5) -> dict:
    return dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=y, y1=y, line=dict(color=color, width=width, dash=dash), layer="above")


def title(text: str, sub: str | None = None) -> dict:
    t = dict(text=f"<b>{text}</b>", x=0.01, xanchor="left", xref="container", y=0.985, yanchor="top", yref="container", font=dict(size=17))
    if sub:
        t["subtitle"] = dict(text=sub, font=dict(size=12, color="#64748b"))
    return t


def placeholder(message: str, height: int = TREE_HEIGHT) -> go.Figure:
    """An empty plot that says why it is empty."""
    return figure(
        [],
        layout(
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
    return figure([], layout(height=40, width=40, margin=dict(l=0, r=0, t=0, b=0), xaxis=dict(visible=False), yaxis=dict(visible=False)))
