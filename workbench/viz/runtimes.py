"""Plotly figure of a backend comparison: which runtime should I use.

A pure function, as in `workbench.viz`: it takes a `BackendComparison` and returns a new
figure; it measures nothing and changes nothing.

Example:
    >>> from workbench.viz import runtimes as viz_backends
    >>> viz_backends.backend_comparison_figure(wb.compare_backends("digits-cnn")).show()
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz.style import LAYOUT, QUALITATIVE, empty_figure

__all__ = ["backend_comparison_figure"]

#: compile and first inference: greys, apart from every colour of the throughput panel
COLD_START_COLORS = ("#5F5F5F", "#B4B4B4")


def backend_comparison_figure(result: Any) -> go.Figure:
    """Throughput per runtime at each batch size (bars with the round range), and cold start.

    Left: items per second, one bar group per runtime and one colour per batch size, the
    error bar spanning the rounds' range; the best of each batch size is starred. Right:
    cold start per runtime (compile and first inference stacked, seconds) at the first
    batch size, the best starred.

    Args:
        result: a `workbench.evaluation.compare_backends.BackendComparison`.
    """
    table = result.table
    title = f"Which runtime: {result.model}"
    if table.empty or table["latency_ms"].isna().all():
        return empty_figure("No runtime was measured: see the comparison's errors.", title)
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        subplot_titles=("throughput (items/s, higher is better)", "cold start (s)"),
    )
    for i, (batch, rows) in enumerate(table.groupby("batch_size", sort=True)):
        # the range over rounds, as throughput: the slowest round gives the lowest rate
        high = batch / rows["latency_min_ms"] * 1e3 - rows["throughput_per_s"]
        low = rows["throughput_per_s"] - batch / rows["latency_max_ms"] * 1e3
        fig.add_trace(
            go.Bar(
                x=rows["runtime"],
                y=rows["throughput_per_s"],
                name=f"batch {batch}",
                legendgroup="throughput",
                legendgrouptitle_text="throughput",
                marker_color=QUALITATIVE[i % len(QUALITATIVE)],
                error_y={"type": "data", "array": high, "arrayminus": low},
                text=["*" if best else "" for best in rows["best_throughput"]],
                textposition="outside",
                customdata=rows[["latency_ms", "rounds"]].to_numpy(),
                hovertemplate="%{x}<br>%{y:,.4g} items/s<br>median %{customdata[0]:.4g} ms "
                "(%{customdata[1]} rounds)<extra></extra>",
            ),
            row=1,
            col=1,
        )
    first = table[table["batch_size"] == result.batch_sizes[0]]
    # greys: no colour of the batch sizes means a second thing here
    for column, label, scale, colour in (
        ("compile_s", "compile", 1.0, COLD_START_COLORS[0]),
        ("first_inference_ms", "first inference", 1e-3, COLD_START_COLORS[1]),
    ):
        fig.add_trace(
            go.Bar(
                x=first["runtime"],
                y=first[column] * scale,
                name=label,
                legendgroup="cold start",
                legendgrouptitle_text="cold start",
                marker_color=colour,
                text=[
                    "*" if best and column == "first_inference_ms" else ""
                    for best in first["best_cold_start"]
                ],
                textposition="outside",
                hovertemplate=f"%{{x}}<br>{label} %{{y:.3g}} s<extra></extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_layout(
        title=f"{title} (* best per batch size; each runtime in its own processes)",
        barmode="group",
        **LAYOUT,
    )
    fig.update_yaxes(type="log", row=1, col=1)
    # cold start stacks its two parts: barmode is per figure, so one offset group and a base
    for trace in fig.data[-2:]:
        trace.offsetgroup = "cold"
    fig.data[-1].base = list(first["compile_s"])
    return fig
