"""The aligned per-layer comparison of several profiles (what `workbench.compare` lines up).

Example:
    >>> from workbench.viz import compare as viz_compare
    >>> viz_compare.layer_comparison([p_ort, p_torch]).show()
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.profiling.profile import UNATTRIBUTED, Profile
from workbench.viz.profile import fused_rows, labels, layers_with, note_unattributed
from workbench.viz.style import (
    LAYOUT,
    empty_figure,
    run_color,
)

__all__ = [
    "layer_comparison",
]


def layer_comparison(
    profiles: Sequence[Profile],
    *,
    baseline: int = 0,
    top: int | None = 30,
    selected: str | None = None,
) -> go.Figure:
    """Per-layer median latency of several profiles side by side, aligned by layer name.

    Layers are matched by canonical name; a layer missing from a profile has no bar there.
    The ``(unattributed)`` rows are not bars: an annotation gives each profile's gap
    between end to end and its layers' sum.
    Rows are sorted by the largest absolute change against ``profiles[baseline]``, and
    hover shows each candidate's speed-up (``×``) over the baseline.

    Args:
        profiles: two or more profiles (one alone is drawn as it is).
        baseline: index of the baseline profile in ``profiles``.
        top: keep the ``top`` layers with the largest change (None keeps all).
        selected: a layer to outline in every profile.

    Example:
        >>> viz.layer_comparison([p_ort, p_torch], baseline=0, top=20)
    """
    title = "Per-layer comparison"
    usable = [p for p in profiles if layers_with(p, ("layer", "latency_ms")) is not None]
    if not usable:
        return empty_figure("Choose profiles measured with per-layer data to compare.", title)
    base = profiles[baseline] if 0 <= baseline < len(profiles) else usable[0]
    if base not in usable:
        base = usable[0]
    names = dict(zip([id(p) for p in usable], labels(usable), strict=True))
    wide = _aligned(usable, [names[id(p)] for p in usable]).drop(
        index=UNATTRIBUTED, errors="ignore"
    )
    # a layer fused into another everywhere has no time of its own: no empty row for it
    fused = {str(x) for p in usable for x in fused_rows(p.layers)["layer"]}
    idle = [x for x in wide.index if x in fused and not (wide.loc[x].fillna(0) > 0).any()]
    wide = wide.drop(index=idle)
    base_name = names[id(base)]
    delta = (wide.drop(columns=base_name).sub(wide[base_name], axis=0)).abs().max(axis=1)
    order = delta.fillna(np.inf).sort_values(ascending=False).index
    wide = wide.loc[order[:top] if top else order]
    fig = go.Figure()
    for p in usable:
        values = wide[names[id(p)]]
        speedup = wide[base_name] / values
        fig.add_trace(
            go.Bar(
                y=wide.index,
                x=values,
                orientation="h",
                name=names[id(p)] + (" (baseline)" if p is base else ""),
                marker_color=run_color(p),
                marker_line_width=[3 if layer == selected else 0 for layer in wide.index],
                marker_line_color="black",
                customdata=speedup.to_numpy(),
                hovertemplate="<b>%{y}</b><br>%{x:.4g} ms<br>%{customdata:.2f}× vs baseline"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        barmode="group",
        # a fixed gap under the tick labels: the note below starts `_AXIS_PX` down
        xaxis={"title": {"text": "median latency (ms)", "standoff": 6}, "automargin": True},
        yaxis={"autorange": "reversed"},
        height=max(320, 18 * len(wide) * len(usable) + 160),
        **LAYOUT,
    )
    fig.update_layout(margin_t=50 + 16 * len(usable))
    note_unattributed(fig, usable)
    note = f"fused into other layers (no time of their own): {', '.join(idle)}" if idle else ""
    _below_axis(fig, note, [trace.name for trace in fig.data])
    return fig


#: pixels below the plot taken by the x tick labels and the axis title
_AXIS_PX = 46


#: characters per line of a note below the axis (11 px text: under 500 px wide)
_NOTE_CHARS = 100


_NOTE_LINE_PX = 15


#: a horizontal legend row, and the width it fills before wrapping (px; a narrow dashboard column)
_LEGEND_ROW_PX = 24


_LEGEND_WIDTH_PX = 450


def _legend_rows(names: Sequence[str]) -> int:
    """Rows a horizontal legend of ``names`` takes (its entries wrap at `_LEGEND_WIDTH_PX`)."""
    rows, used = 1, 0
    for name in names:
        width = 40 + 7 * len(name)  # the swatch and gap, then ~7 px a 12 px character
        if used and used + width > _LEGEND_WIDTH_PX:
            rows, used = rows + 1, 0
        used += width
    return rows


def _below_axis(fig: go.Figure, note: str, legend: Sequence[str]) -> None:
    """Stack the x axis labels, ``note`` (wrapped) and the legend below the plot.

    Positions are in pixels from the plot's bottom edge and the bottom margin (and the
    height, so the plot keeps its size) grows by what the note and legend take: long
    layer lists wrap onto more lines instead of running over the tick labels.
    """
    lines = textwrap.wrap(note, _NOTE_CHARS, break_long_words=False, break_on_hyphens=False)
    note_px = _NOTE_LINE_PX * len(lines)
    legend_px = _LEGEND_ROW_PX * _legend_rows(legend)
    bottom = _AXIS_PX + note_px + legend_px + 8
    fig.update_layout(
        height=fig.layout.height + bottom - LAYOUT["margin"]["b"],
        margin_b=bottom,
        # anchored to the figure's bottom edge, under the note whatever the plot's height
        legend={"orientation": "h", "x": 0, "y": 0, "yref": "container", "yanchor": "bottom"},
    )
    if lines:
        fig.add_annotation(
            text="<br>".join(lines),
            showarrow=False,
            x=0,
            y=0,
            xref="paper",
            yref="paper",
            xanchor="left",
            yanchor="top",
            yshift=-_AXIS_PX,
            align="left",
            font={"size": 11, "color": "#777"},
            name="fused",
        )


def _aligned(profiles: Sequence[Profile], names: Sequence[str]) -> pd.DataFrame:
    """Median latency per layer (rows) and profile (columns ``names``), first-seen order."""
    series = []
    for p, name in zip(profiles, names, strict=True):
        table = p.layers
        series.append(table.groupby("layer", sort=False)["latency_ms"].sum().rename(name))
    return pd.concat(series, axis=1)
