"""The roofline of a profile: each layer's achieved rate against the machine's ceilings.

Example:
    >>> from workbench.viz import rooflines as viz_rooflines
    >>> viz_rooflines.roofline(p, wb.machine_ceilings("cpu")).show()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.profiling.profile import Profile
from workbench.viz.profile import layers_with, no_layers_figure
from workbench.viz.style import (
    LAYOUT,
    canonical_op_type,
    empty_figure,
    log_axis,
    op_type_color,
)

__all__ = [
    "MEASURE_CEILINGS",
    "roofline",
    "table_roofline",
]


def _ceiling(ceilings: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        value = ceilings.get(name)
        if value:
            return float(value)
    return None


#: what a roofline without ceilings says, unless its caller knows better
MEASURE_CEILINGS = "no measured ceilings: measure them with wb.machine_ceilings(device)"


def roofline(
    profile: Profile,
    ceilings: Any = None,
    *,
    selected: str | None = None,
    missing: str = MEASURE_CEILINGS,
) -> go.Figure:
    """The roofline: each layer at (arithmetic intensity, achieved FLOP/s), log-log.

    Marker size is the layer's share of time and colour its op type (the legend lists op
    types). The roofs come from measured ``ceilings`` (``peak_flops_per_s`` and
    ``bandwidth_bytes_per_s``, as from `wb.machine_ceilings`), with the ridge point marked,
    a dotted roof at the fastest cache bandwidth measured (layers whose bytes fit that
    cache are held to it), and a dashed roof at the theoretical peak when known. A layer whose
    backend reported ``executed_flops`` is drawn at its executed work (hover says so).

    Args:
        profile: a profile with ``flops``, ``intensity`` and ``latency_ms`` per layer.
        ceilings: measured machine ceilings (a `Ceilings` or a mapping); by default the
            ones measured with the profile (``environment["machine_ceilings"]``), so
            every page and report draws the same roofs; without any, only the points.
        selected: a layer to outline (each point's ``text`` is its layer, for clicks).
        missing: the note shown without ceilings (how to get them, where it is read).

    Example:
        >>> viz.roofline(p, wb.machine_ceilings("cpu"))
    """
    title = f"Roofline — {profile.label}"
    table = layers_with(profile, ("layer", "op_type", "flops", "latency_ms"))
    if table is None:
        return no_layers_figure(profile, title)
    if ceilings is None:
        ceilings = (profile.environment or {}).get("machine_ceilings")
    return table_roofline(table, title, ceilings, selected=selected, missing=missing)


def table_roofline(
    table: pd.DataFrame,
    title: str,
    ceilings: Any = None,
    *,
    selected: str | None = None,
    missing: str = MEASURE_CEILINGS,
) -> go.Figure:
    """The roofline of any per-layer table with ``layer``, ``op_type``, ``flops``,
    ``bytes`` and ``latency_ms`` (a profile's, a generation phase's), as `roofline`
    draws it.

    Example:
        >>> table_roofline(g.prefill_layers, "prefill", g.ceilings)
    """
    points = _roof_points(table)
    if points.empty:
        return empty_figure("No layer has both FLOPs and bytes counted.", title)
    fig = go.Figure()
    points = points.assign(op_type=points["op_type"].map(canonical_op_type))
    for op_type, part in points.groupby("op_type", sort=False):
        fig.add_trace(
            go.Scatter(
                x=part["intensity"],
                y=part["achieved"],
                mode="markers",
                name=str(op_type),
                text=part["layer"],
                marker={
                    "size": 8 + 40 * np.sqrt(part["share"].clip(0, 1)),
                    "color": op_type_color(str(op_type)),
                    "line": {
                        "width": [3 if layer == selected else 1 for layer in part["layer"]],
                        "color": [
                            "black" if layer == selected else "white" for layer in part["layer"]
                        ],
                    },
                },
                customdata=np.stack([part["latency_ms"], part["roof_pct"], part["bound"]], -1),
                hovertemplate="<b>%{text}</b><br>intensity %{x:.3g} FLOP/byte<br>"
                "achieved %{y:.3g} FLOP/s<br>%{customdata[0]:.4g} ms, "
                "%{customdata[1]:.0f}% of roof (%{customdata[2]})<extra></extra>",
            )
        )
    if ceilings is not None and not isinstance(ceilings, Mapping):
        ceilings = ceilings.to_dict() if hasattr(ceilings, "to_dict") else vars(ceilings)
    _add_roofs(fig, points, ceilings or {}, missing)
    fig.update_layout(
        title=title,
        xaxis=log_axis(_drawn(fig, "x"), "", title="arithmetic intensity (FLOP/byte)"),
        yaxis=log_axis(_drawn(fig, "y"), "", title="achieved FLOP/s"),
        legend_title="op type",
        **LAYOUT,
    )
    return fig


def _drawn(fig: go.Figure, axis: str) -> list[float]:
    """Every value the figure's traces draw on ``axis`` (``"x"`` or ``"y"``)."""
    return [
        float(v)
        for trace in fig.data
        for v in (() if getattr(trace, axis) is None else getattr(trace, axis))
    ]


def _roof_points(table: pd.DataFrame) -> pd.DataFrame:
    points = table[(table["flops"].fillna(0) > 0) & (table["latency_ms"].fillna(0) > 0)].copy()
    if "intensity" not in points or points["intensity"].isna().all():
        points["intensity"] = points["flops"] / points["bytes"].replace(0, np.nan)
    executed = points.get("executed_flops", pd.Series(np.nan, index=points.index)).astype(float)
    # a layer whose backend reported its executed work sits at that work's intensity
    executed_intensity = executed / points["bytes"].replace(0, np.nan)
    points["intensity"] = executed_intensity.where(executed.notna(), points["intensity"])
    points = points[points["intensity"].fillna(0) > 0]
    if "achieved_flops_per_s" in points and points["achieved_flops_per_s"].notna().any():
        points["achieved"] = points["achieved_flops_per_s"].astype(float)
    else:
        points["achieved"] = points["flops"].astype(float) / (points["latency_ms"] / 1e3)
    if "share" not in points:
        points["share"] = points["latency_ms"] / table["latency_ms"].sum()
    fraction = points.get("roof_fraction", pd.Series(np.nan, index=points.index))
    points["roof_pct"] = 100 * fraction.astype(float)
    points["bound"] = points.get("bound", pd.Series("", index=points.index)).fillna("")
    points["bound"] = points["bound"].where(executed.isna(), points["bound"] + ", executed FLOPs")
    points["share"] = points["share"].fillna(0).astype(float)
    return points


def _add_roofs(
    fig: go.Figure, points: pd.DataFrame, ceilings: Mapping[str, Any], missing: str
) -> None:
    peak = _ceiling(ceilings, "peak_flops_per_s", "flops_per_s", "peak_flops")
    bandwidth = _ceiling(ceilings, "bandwidth_bytes_per_s", "memory_bytes_per_s", "bandwidth")
    if not (peak and bandwidth):
        fig.add_annotation(
            text=missing,
            showarrow=False,
            x=0.02,
            y=0.98,
            xref="paper",
            yref="paper",
            xanchor="left",
        )
        return
    ridge = peak / bandwidth
    low = min(float(points["intensity"].min()), ridge) / 4
    high = max(float(points["intensity"].max()), ridge) * 4
    xs = np.geomspace(low, high, 64)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=np.minimum(peak, bandwidth * xs),
            mode="lines",
            name="roof",
            line={"color": "black"},
            hovertemplate="roof %{y:.3g} FLOP/s at %{x:.3g} FLOP/byte<extra></extra>",
        )
    )
    by_bytes = [(int(size), float(rate)) for size, rate in ceilings.get("bandwidth_by_bytes", ())]
    cache_size, cache_rate = max(by_bytes, key=lambda pair: pair[1], default=(0, 0.0))
    if cache_rate > bandwidth:  # layers whose data fit a cache are held to this roof
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=np.minimum(peak, cache_rate * xs),
                mode="lines",
                name=f"cache roof (data up to {cache_size / 2**20:.3g} MiB)",
                line={"color": "black", "dash": "dot"},
                hovertemplate="cache roof %{y:.3g} FLOP/s at %{x:.3g} FLOP/byte<extra></extra>",
            )
        )
    theoretical = _ceiling(ceilings, "theoretical_flops_per_s")
    if theoretical:  # the specification's peak over the measured one: the headroom left
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=np.minimum(theoretical, bandwidth * xs),
                mode="lines",
                name="theoretical peak",
                line={"color": "grey", "dash": "dash"},
                hovertemplate="theoretical %{y:.3g} FLOP/s at %{x:.3g} FLOP/byte<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[ridge],
            y=[peak],
            mode="markers",
            name="ridge point",
            marker={"symbol": "x", "size": 10, "color": "black"},
            hovertemplate="ridge %{x:.3g} FLOP/byte, peak %{y:.3g} FLOP/s<extra></extra>",
        )
    )
