"""The run's charts: accepted draft tokens per step, acceptance by depth, where the time went."""

from __future__ import annotations

from statistics import mean

import plotly.graph_objects as go

from .base import BLUE, GREEN, SLATE, as_trace, figure, hline, layout, placeholder, title, trace_of


def accept_length_figure(trace, height: int = 350) -> go.Figure:
    """Per step: accepted draft tokens (excl. bonus) in front of the drafted depth."""
    tr = as_trace(trace)
    if not tr.steps:
        return placeholder("No decoding steps in this trace", height)
    xs = list(range(1, len(tr.steps) + 1))
    acc = [len(s.accepted) for s in tr.steps]
    drafted = [max(s.depths, default=0) for s in tr.steps]
    nodes = [len(s.tokens) for s in tr.steps]
    kinds = [s.kind for s in tr.steps]
    avg = mean(acc)
    fig = figure(
        data=[
            trace_of(
                "bar",
                x=xs,
                y=drafted,
                name="drafted depth",
                marker=dict(color="#dbe4ee"),
                customdata=nodes,
                hovertemplate="step %{x}<br>drafted depth %{y}<br>%{customdata} draft nodes<extra></extra>",
            ),
            trace_of(
                "bar",
                x=xs,
                y=acc,
                name="accepted (excl. bonus)",
                marker=dict(color=GREEN),
                customdata=kinds,
                hovertemplate="step %{x}<br>accepted %{y}<br>then %{customdata}<extra></extra>",
            ),
        ],
        layout=layout(
            height=height,
            barmode="overlay",
            bargap=0.15 if len(xs) < 80 else 0.0,
            title=title("Accepted draft tokens per step", f"mean {avg:.2f} accepted (excl. bonus): the line"),
            xaxis=dict(title="step", showgrid=False, zeroline=False),
            yaxis=dict(title="tokens", gridcolor="#eef2f6", rangemode="tozero", **({"dtick": 1} if max(drafted + acc) <= 10 else {})),
            # the legend under the plot: above it, it would run into the subtitle on a narrow screen
            legend=dict(orientation="h", x=0, xanchor="left", y=0.01, yref="container", yanchor="bottom"),
            margin=dict(l=55, r=20, t=80, b=92),
            shapes=[hline(avg, "#1f7a45")],
        ),
    )
    return fig


def depth_figure(trace, height: int = 350) -> go.Figure:
    """Acceptance by depth: bars = share of steps whose accepted path reached depth d
    (among steps that drafted that deep), line = acceptance at d given d-1 accepted."""
    tr = as_trace(trace)
    reach = tr.summary()["acceptance_by_depth"]
    if not reach:
        return placeholder("No draft tokens: nothing to accept (autoregressive run)", height)
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
    fig = figure(
        data=[
            trace_of(
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
            trace_of(
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
        layout=layout(
            height=height,
            title=title("Acceptance by depth"),
            xaxis=dict(title="depth in the draft", dtick=1, showgrid=False, range=[0.5, len(depths) + 0.5]),
            yaxis=dict(title="rate", range=[0, 1.12], tickformat=".0%", gridcolor="#eef2f6"),
            legend=dict(orientation="h", x=0, xanchor="left", y=0.01, yref="container", yanchor="bottom"),
            margin=dict(l=60, r=20, t=56, b=92),
        ),
    )
    return fig


SMALL = 0.04  # a time slice below this share is named in the donut's hole, not beside the ring


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
        return placeholder("No timing recorded", height)
    colors = {"prefill": "#94a3b8", "draft": "#8b5cf6", "verify": BLUE, "other": "#f59e0b", "untracked": "#e2e8f0"}
    # slices under SMALL get no label outside the ring (two of them side by side at the top stacked
    # their labels over the title on a phone); they are named in the hole instead
    shares = [v / total for v in vals]
    text = [f"{lb}<br>{100 * sh:.1f}%" if sh >= SMALL else "" for lb, sh in zip(labels, shares)]
    thin = [f"{lb} {100 * sh:.1f}%" for lb, sh in zip(labels, shares) if sh < SMALL]
    notes = [dict(text=f"<b>{tr.wall_s:.2f} s</b><br>wall", x=0.5, y=0.5, yshift=8 * len(thin), showarrow=False, font=dict(size=15))]
    if thin:  # under the wall time, in the hole
        notes.append(
            dict(text="<br>".join(thin), x=0.5, y=0.5, yshift=-14 - 6 * len(thin), showarrow=False, font=dict(size=10, color="#475569"))
        )
    fig = figure(
        data=[
            trace_of(
                "pie",
                labels=labels,
                values=vals,
                hole=0.58,
                sort=False,
                direction="clockwise",
                marker=dict(colors=[colors[lb] for lb in labels], line=dict(color="white", width=2)),
                text=text,
                textinfo="text",
                textposition="outside",
                hovertemplate="%{label}<br>%{value:.3f} s (%{percent})<extra></extra>",
            )
        ],
        layout=layout(
            height=height,
            title=title("Where the time went"),
            showlegend=False,
            margin=dict(l=30, r=30, t=70, b=30),
            annotations=notes,
        ),
    )
    return fig
