"""Insight figures: where the speedup comes from (core/speedup_model.py), for the Teach tab.

``speedup_map(grid, point)`` draws speedup(alpha, gamma) for one measured cost ratio as a
heatmap, the break-even contour (speedup = 1), the best gamma per alpha, and the run's own
point; ``TEACH`` is the text that goes with it. The Teach tab shows both in its collapsed
"Where the speedup comes from" section, for its last run (ui/tabs/teach.py, ``speedup_map_of``,
from ``core.api.predicted_speedups``).
"""

from __future__ import annotations

TEACH = r"""
### Where does the speedup come from?

**1. A step.** The drafter guesses a chain of **γ** tokens. The target checks all of them in
*one* forward pass and keeps the longest correct prefix, plus one token of its own (the
correction, or a bonus when every guess was right). So a step always gives at least one token.

**2. How many tokens per step?** Say each guess is right with probability **α** (once the
previous ones were). The first guess survives with probability α, the first two with α², ... :

  E[tokens per step] = 1 + α + α² + … + α^γ = (1 − α^(γ+1)) / (1 − α)

With α = 0.8 and γ = 4 that is 1 + 0.8 + 0.64 + 0.51 + 0.41 = **3.36** tokens per step.
Notice the diminishing returns: the 10th guess only counts if the 9 before it were right.

**3. What does a step cost?** Plain decoding pays **c(1)**, one target forward of one token,
per token. A speculative step pays one target forward of **γ + 1** tokens, **c(γ+1)**, plus γ
draft forwards. On a big GPU c(8) ≈ c(1): checking 8 tokens is nearly free. On a small CPU it
is not (we measure c(n) on this machine; it can be 2-4 × c(1)).

**4. The speedup** is tokens per step divided by what a step costs, in units of c(1):

  speedup = E[tokens per step] / ( c(γ+1)/c(1) + γ · c_draft/c(1) )

**5. Read the map.** Each cell is one (α, γ). Bright = faster. The dashed line is speedup = 1:
below it speculative decoding is *slower* than plain decoding. The dots mark the best γ for
each α: a good drafter (high α) deserves long chains, a poor one short chains or none. The star
is *your* run: its measured α and γ.

**Try it.** Who wins: a drafter with α = 0.6 at γ = 2, or α = 0.9 at γ = 8, when c(9)/c(1) = 3?
(Compute E for both, then divide.)
"""


def speedup_map(grid: dict, point: dict | None = None, title: str | None = None, subtitle: str | None = None):
    """A plotly Figure of ``grid`` (``speedup_model.grid``) with ``point``
    (``speedup_model.run_point``) marked: a star, and a "your run" label in a white box that
    points at it from inside the map. The legend sits under the plot on a dark band, so its
    white marks (the break-even line, the best-γ dots) show."""
    import plotly.graph_objects as go

    al, ga, sp = grid["alphas"], grid["gammas"], grid["speedup"]
    fig = go.Figure()
    fig.add_trace(
        go.Heatmap(
            x=ga,
            y=al,
            z=sp,
            colorscale="Viridis",
            # the title beside the bar, where a tick at the bar's top cannot run into it
            colorbar={"title": {"text": "speedup", "side": "right"}, "thickness": 14},
            hovertemplate="γ=%{x}<br>α=%{y}<br>speedup %{z:.2f}×<extra></extra>",
            name="speedup",
        )
    )
    fig.add_trace(
        go.Contour(
            x=ga,
            y=al,
            z=sp,
            contours={"start": 1.0, "end": 1.0, "size": 1.0, "coloring": "none"},
            line={"dash": "dash", "color": "white", "width": 2},
            showscale=False,
            hoverinfo="skip",
            name="break-even (1×)",
        )
    )
    fig.add_trace(go.Scatter(x=grid["best_gamma"], y=al, mode="markers", marker={"color": "white", "size": 6}, name="best γ per α"))
    annotations = []
    if point and point.get("gamma"):
        fig.add_trace(
            go.Scatter(
                x=[point["gamma"]],
                y=[point["alpha"]],
                mode="markers",
                marker={"symbol": "star", "size": 16, "color": "red", "line": {"color": "white", "width": 1}},
                name="this run",
            )
        )
        mid_g = (min(ga) + max(ga)) / 2 if len(ga) else 0
        annotations.append(
            dict(
                x=point["gamma"],
                y=point["alpha"],
                xref="x",
                yref="y",
                text=f"your run: {point.get('speedup_model', 0):.2f}×",
                showarrow=True,
                arrowcolor="white",
                arrowwidth=1.5,
                ax=-70 if point["gamma"] > mid_g else 70,
                ay=40 if point["alpha"] > 0.5 else -40,
                bgcolor="white",
                bordercolor="#334155",
                borderpad=3,
                font={"size": 12, "color": "#0f172a"},
            )
        )
    default = (
        "Predicted speedup by acceptance α and chain length γ",
        f"measured verify cost, draft cost {grid.get('draft_ratio', 0):.2f}× c(1)",
    )
    fig.update_layout(
        title={
            "text": f"<b>{title or default[0]}</b>",
            "x": 0.01,
            "xanchor": "left",
            "xref": "container",
            "y": 0.985,
            "yanchor": "top",
            "yref": "container",
            "font": {"size": 16},
            "subtitle": {"text": subtitle if subtitle is not None else default[1], "font": {"size": 12, "color": "#475569"}},
        },
        xaxis_title="γ (tokens drafted per step)",
        yaxis_title="α (per-token acceptance)",
        margin={"l": 60, "r": 20, "t": 84, "b": 110},
        height=460,
        annotations=annotations,
        legend={
            "orientation": "h",
            "x": 0,
            "xanchor": "left",
            "y": 0.01,
            "yref": "container",
            "yanchor": "bottom",
            "bgcolor": "#1e293b",
            "font": {"color": "white", "size": 12},
        },
    )
    return fig
