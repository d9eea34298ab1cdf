"""The Compare tab's chart: τ and the measured speedup of every configuration, two panels."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from .base import BLUE, GREEN, figure, layout, placeholder, title, trace_of
from .verdict import ratio


def compare_figure(rows: list[dict], height: int | None = None) -> go.Figure:
    """Two panels, one above the other, each with its own axis: τ (tokens per speculative step)
    and the measured speedup (×, with a dashed line at 1 = as fast as plain decoding; a bar below
    it is amber, its number written right of the line). Horizontal bars with the configuration names on the left (two short lines
    each), so the names and numbers stay readable at any width, a phone's included.

    ``rows``: dicts with "config", "tau", "speedup", optional "speedups" (per-round ratios:
    shown as the range after the median), "tokens_per_s", "identical". A config whose output
    differs from plain decoding gets a ⚠ in its name. ``height`` defaults to what the rows need.
    """
    if not rows:
        return placeholder("No configurations compared yet", height or 240)
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
        ("" if not num(v) else f"{ratio(v)}×" if len(r.get("speedups") or []) < 2 else f"{ratio(v)}× ({ratio(a)}–{ratio(b)})")
        for r, v, a, b in zip(rows, spd, lo, hi)
    ]
    # a slowdown's bar ends before the dashed 1× line: its number is written right of the line
    # (as bar text it would start at the bar's end, with the line drawn through it)
    slow_labels = [
        dict(
            text=t,
            x=1.0,
            y=name,
            xref="x2",
            yref="y2",
            xanchor="left",
            xshift=4,
            showarrow=False,
            font=dict(size=12),
            name="slowdown",
        )
        for name, t, v in zip(names, spd_text, spd)
        if num(v) and v < 1
    ]
    spd_text = ["" if num(v) and v < 1 else t for t, v in zip(spd_text, spd)]
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
    fig = figure(
        data=[
            trace_of(
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
            trace_of(
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
        layout=layout(
            height=height,
            bargap=0.3,
            title=title("Configurations compared"),
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
            annotations=slow_labels,
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
