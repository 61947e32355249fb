"""Plotly figure of a placement: where each layer runs and what each cut would cost.

A pure function, as in `workbench.viz`: it takes a `Placement` and returns a new figure;
every number is the placement's own (scaled per-layer medians, predicted and, where
`measure_placement` ran them, measured latencies); nothing is measured here.

Example:
    >>> from workbench.viz.placement import placement_figure
    >>> placement_figure(wb.place(a, b, model=m)).show()
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.units import format_ms
from workbench.viz.style import INK, LAYOUT, MUTED, PALETTE

__all__ = ["placement_figure"]


def placement_figure(placement: Any) -> go.Figure:
    """Two panels over the layer order: each layer's time on both processors with the best
    split shaded behind it, and the predicted latency of cutting before each layer.

    The top panel's bars are the per-layer medians scaled to each profile's end-to-end
    median; the bands show which processor the best split runs each layer on. The bottom
    panel has one line per direction (A then B, B then A), each processor alone as a
    dashed line, and measured splits as diamonds.

    Args:
        placement: a `workbench.planning.placement.Placement`.
    """
    p = placement
    layers, table = p.layers, p.table
    colors = {"a": PALETTE[0], "b": PALETTE[1]}
    names = {"a": p.processor_a, "b": p.processor_b}
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45],
        subplot_titles=("time per layer (scaled to each end-to-end median)",
                        "predicted latency of one cut before each layer"),
    )  # fmt: skip
    x = list(layers["layer"])
    for side in "ab":
        fig.add_trace(
            go.Bar(
                x=x, y=layers[f"{side}_ms"], name=names[side], marker_color=colors[side],
                legendgroup=side,
                hovertemplate="%{x}: %{y:.4g} ms<extra>" + names[side] + "</extra>",
            ),
            row=1, col=1,
        )  # fmt: skip
    _shade_best(fig, list(layers["runs_on"]), colors)
    _cut_lines(fig, table, x, names, colors)
    fig.update_layout(
        title=f"{p.model} on {p.processor_a} and {p.processor_b}: best "
        f"{format_ms(p.best['predicted_ms'])} predicted",
        barmode="group",
        legend={"orientation": "h", "y": -0.15},
        **LAYOUT,
    )
    fig.update_yaxes(title_text="ms", row=1, col=1)
    fig.update_yaxes(title_text="latency (ms)", row=2, col=1)
    return fig


def _shade_best(fig: go.Figure, runs_on: list[str], colors: dict[str, str]) -> None:
    """A band behind each segment of the best split, in its processor's colour."""
    start = 0
    for k in range(1, len(runs_on) + 1):
        if k == len(runs_on) or runs_on[k] != runs_on[start]:
            fig.add_vrect(
                x0=start - 0.5, x1=k - 0.5, fillcolor=colors[runs_on[start]], opacity=0.12,
                line_width=0, layer="below", row=1, col=1,
            )  # fmt: skip
            start = k


def _cut_lines(
    fig: go.Figure, table: Any, x: list[str], names: dict[str, str], colors: dict[str, str]
) -> None:
    single = table[table["order"].isin(["a,b", "b,a"])]
    for order, first in (("a,b", "a"), ("b,a", "b")):
        rows = single[single["order"] == order]
        rows = rows.assign(at=rows["cuts"].map(x.index)).sort_values("at")
        label = f"{names[first]} then {names['b' if first == 'a' else 'a']}"
        fig.add_trace(
            go.Scatter(
                x=rows["cuts"], y=rows["predicted_ms"], mode="lines+markers", name=label,
                line={"color": colors[first]}, customdata=rows[["transfer_bytes"]].to_numpy(),
                hovertemplate="cut before %{x}: %{y:.4g} ms, %{customdata[0]:,.0f} B over"
                "<extra>" + label + "</extra>",
            ),
            row=2, col=1,
        )  # fmt: skip
    for order in ("a", "b"):
        alone = table.loc[table["order"] == order, "predicted_ms"]
        if len(alone):
            fig.add_hline(
                y=float(alone.iloc[0]), line_dash="dash", line_color=colors[order], row=2, col=1,
                annotation_text=f"{names[order]} alone", annotation_font_color=MUTED,
            )  # fmt: skip
    measured = single[single["measured_ms"].notna()]
    if len(measured):
        fig.add_trace(
            go.Scatter(
                x=measured["cuts"], y=measured["measured_ms"], mode="markers", name="measured",
                marker={"symbol": "diamond", "size": 9, "color": INK},
                hovertemplate="cut before %{x}: %{y:.4g} ms measured<extra></extra>",
            ),
            row=2, col=1,
        )  # fmt: skip
