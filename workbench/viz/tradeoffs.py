"""Trade-offs of model variants: metric against latency with the Pareto front, and the
per-layer sensitivity of a transform.

Example:
    >>> from workbench.viz import tradeoffs as viz_tradeoffs
    >>> viz_tradeoffs.tradeoff(wb.sweep(m, variants=["int8-dynamic"], data=data)).show()
"""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.evaluation.pareto import pareto_mask
from workbench.viz.style import (
    LAYOUT,
    corner_note,
    empty_figure,
    op_type_color,
    precision_color,
    zero_aligned_ranges,
)

__all__ = [
    "lm_tradeoff_figure",
    "sensitivity",
    "technique_of",
    "tradeoff",
]

#: the share of the plot's height the strip of unscored points takes (below the main plot)
UNSCORED_STRIP = 0.14


def _tradeoff_frame(table: Any) -> tuple[pd.DataFrame, str | None]:
    """The rows of a `TradeoffTable` (or DataFrame) with the metric's value in ``metric``.

    A sweep's rows name the metric in ``metric`` and hold its value in ``metric_value``;
    failed points (``error`` set) are dropped.
    """
    frame = getattr(table, "df", table)
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    name = None
    if "metric_value" in frame:
        names = frame["metric"].dropna() if "metric" in frame else pd.Series(dtype=object)
        name = str(names.iloc[0]) if len(names) else None
        frame = frame.drop(columns=["metric"], errors="ignore").rename(
            columns={"metric_value": "metric"}
        )
    if "error" in frame:
        frame = frame[frame["error"].isna()]
    return frame, name


def tradeoff(
    table: Any,
    *,
    metric_name: str | None = None,
    higher_is_better: bool = True,
    selected: str | None = None,
    band: float | None = 0.01,
    latency_title: str = "median latency (ms)",
    size_column: str = "size_bytes",
    unscored: str | None = None,
) -> go.Figure:
    """Metric against median latency, one point per (variant, backend, device), with the front.

    Marker size is model size (bytes), colour the variant's precision and symbol the
    backend; the Pareto front is a step line (computed here, with ties kept, unless the
    table carries its own ``pareto`` column). Points carry ``customdata[0]`` = variant so
    a click handler can tell which was clicked.

    Args:
        table: a `TradeoffTable` (its ``.df``; its ``metric`` and ``higher_is_better``
            win over the arguments) or a DataFrame with columns variant, latency_ms,
            metric (the value) or metric_value (then ``metric`` is its name), and
            optionally backend, latency_p90_ms, size_bytes, precision, pareto, error.
        metric_name: the metric's axis title (defaults to ``table.metric`` or "metric").
        higher_is_better: the metric's direction (accuracy: True; error: False).
        selected: a variant to outline.
        band: half-width of the shaded band around the ``baseline`` row's metric (0.01:
            one accuracy point either side); None draws none.
        latency_title: the latency axis's title (what ``latency_ms`` measures).
        size_column: the column of bytes that sizes the markers.
        unscored: why some rows have no metric (e.g. ``"random weights"``): those rows
            are drawn hollow in a strip under the plot, on the same latency axis, with
            the reason, never on the metric axis or the front; None leaves them out.

    The metric axis is fitted to the points and the band (a metric that lies in [0, 1],
    such as accuracy, never runs past them), so variants a point apart stay apart.

    Example:
        >>> viz.tradeoff(wb.sweep(m, backends=["onnxruntime"]))
    """
    frame, named = _tradeoff_frame(table)
    # a DataFrame's ``metric`` is its column, not the metric's name
    owner = None if isinstance(table, pd.DataFrame) else table
    name = metric_name or named or str(getattr(owner, "metric", None) or "metric")
    higher_is_better = bool(getattr(owner, "higher_is_better", higher_is_better))
    title = f"{name} vs latency"
    needed = ("variant", "latency_ms", "metric")
    if frame.empty or any(c not in frame for c in needed):
        return empty_figure("No variants measured yet: build one on the Optimize page.", title)
    timed = frame.dropna(subset=["latency_ms"]).reset_index(drop=True)
    frame = timed.dropna(subset=["metric"]).reset_index(drop=True)
    speed_only = timed[timed["metric"].isna()] if unscored else timed.iloc[:0]
    if frame.empty and speed_only.empty:
        return empty_figure(f"No variant has both a latency and a {name}.", title)
    frame = _with_display_columns(frame, higher_is_better, size_column)
    fig = go.Figure()
    for (precision, backend), part in frame.groupby(["precision", "backend"], sort=False):
        fig.add_trace(_tradeoff_trace(part, precision, backend, selected, name))
    if len(speed_only):
        _unscored_strip(
            fig,
            _with_display_columns(speed_only, higher_is_better, size_column),
            name,
            str(unscored),
        )
    front = frame[frame["pareto"]].sort_values("latency_ms")
    fig.add_trace(
        go.Scatter(
            x=front["latency_ms"],
            y=front["metric"],
            mode="lines",
            line={"shape": "hv" if higher_is_better else "vh", "color": "#333", "dash": "dot"},
            name="Pareto front",
            hoverinfo="skip",
        )
    )
    if len(frame):
        _fit_metric_axis(fig, frame, band)
    _fit_latency_axis(fig, pd.concat([frame, speed_only]) if len(speed_only) else frame)
    fig.update_layout(
        title=title,
        xaxis_title=f"{latency_title} — lower is better",
        yaxis_title=f"{name} — {'higher' if higher_is_better else 'lower'} is better",
        legend_title="technique, backend",
        clickmode="event+select",
        **LAYOUT,
    )
    return fig


def lm_tradeoff_figure(table: Any, *, selected: str | None = None) -> go.Figure:
    """The generative trade-off: KL against median time per output token, one point per
    (variant, runtime), the Pareto front as a step line; marker size is weights + KV
    cache memory. Rows without a KL (random weights) are drawn in a strip under the plot
    with the reason, speed only.

    Args:
        table: `wb.lm_sweep`'s or `wb.lm_tradeoff`'s `TradeoffTable` (or its DataFrame).
        selected: a variant to outline.

    Example:
        >>> viz.lm_tradeoff_figure(wb.lm_sweep(model, ["int4", "int8-dynamic"]))
    """
    frame = getattr(table, "df", table)
    reasons = frame.get("accuracy_unavailable", pd.Series(dtype=object)).dropna()
    why = "; ".join(dict.fromkeys(str(r) for r in reasons if r)) or "accuracy not measured"
    fig = tradeoff(
        table,
        metric_name="KL vs fp32 (nats)",
        higher_is_better=False,
        selected=selected,
        band=None,
        latency_title="median time per output token (ms)",
        size_column="memory_bytes" if "memory_bytes" in frame else "size_bytes",
        unscored=why,
    )
    if fig.data:
        fig.update_layout(title="Generative trade-off: KL against time per output token")
    return fig


def _fit_metric_axis(fig: go.Figure, frame: pd.DataFrame, band: float | None) -> None:
    """Zoom the metric axis to the points (and the baseline's band), inside [0, 1] when
    every value lies there."""
    values = [float(v) for v in frame["metric"]]
    bounded = all(0.0 <= v <= 1.0 for v in values)
    base = frame.loc[frame["variant"] == "baseline", "metric"]
    if band and len(base):
        centre = float(base.iloc[0])
        low, high = centre - band, centre + band
        fig.add_hrect(
            y0=max(low, 0.0) if bounded else low,
            y1=min(high, 1.0) if bounded else high,
            fillcolor="#4C78A8",
            opacity=0.1,
            line_width=0,
            layer="below",
            annotation_text=f"baseline ± {band:g}",
            annotation_position="top left",
            annotation_font={"size": 10, "color": "#4C78A8"},
        )
        values += [low, high]
    low, high = min(values), max(values)
    span = max(high - low, 0.02 if bounded else abs(high) * 0.02 or 1.0)
    low, high = low - 0.15 * span, high + 0.15 * span
    if bounded:
        low, high = max(low, 0.0), min(high, 1.0)
    fig.update_yaxes(range=[low, high])
    fig.update_traces(cliponaxis=False, selector={"type": "scatter"})


def technique_of(variant: str) -> str:
    """A variant's technique, the trade-off plot's colour key: the quantization scheme
    when quantized (``int8-static``, ``int8-dynamic``, ``fp16``...), ``sparse`` when
    only pruned, ``fp32`` for the baseline.

    Example:
        >>> viz.technique_of("prune-channels(50%) → int8-static(entropy)")
        'int8-static'
    """
    text = str(variant).lower()
    for scheme in ("int8-static", "int8-dynamic", "int8-weight", "int4", "fp16", "bf16"):
        if scheme in text:
            return scheme
    if "int8" in text:
        return "int8"
    if "estimate" in text:
        return "estimate"
    return "sparse" if "prune" in text or "sparse" in text else "fp32"


def _unscored_strip(fig: go.Figure, part: pd.DataFrame, metric: str, why: str) -> None:
    """Rows without a metric, hollow in a strip under the plot on the same latency axis."""
    fig.add_trace(
        go.Scatter(
            x=part["latency_ms"],
            y=[0.0] * len(part),
            yaxis="y2",
            mode="markers+text",
            text=[_short_variant(v) for v in part["variant"]],
            textposition="top center",
            textfont={"size": 10, "color": "#555"},
            name=f"no {metric}: {why}",
            marker={
                "size": part["marker"],
                "symbol": "circle-open",
                "color": [precision_color(p) for p in part["precision"]],
                "line": {"width": 2},
            },
            customdata=np.stack([part["variant"], part["backend"], part["size_mib"]], -1),
            hovertemplate=f"<b>%{{customdata[0]}}</b> on %{{customdata[1]}}<br>median "
            f"%{{x:.4g}} ms<br>{metric} unavailable: {why}<br>size %{{customdata[2]:.3g}} MiB"
            "<extra></extra>",
        )
    )
    fig.update_layout(
        yaxis={"domain": [UNSCORED_STRIP + 0.1, 1.0]},
        yaxis2={
            "domain": [0.0, UNSCORED_STRIP],
            "anchor": "x",
            "range": [-1, 1.6],
            "showticklabels": False,
            "showgrid": False,
            "zeroline": False,
            "title": {"text": f"no {metric}", "font": {"size": 10}},
        },
    )
    fig.add_annotation(
        text=f"{metric} unavailable: {why} (speed only)",
        xref="paper",
        yref="paper",
        x=0.0,
        y=UNSCORED_STRIP + 0.02,
        xanchor="left",
        showarrow=False,
        font={"size": 10, "color": "#777"},
    )


def _with_display_columns(
    frame: pd.DataFrame, higher_is_better: bool, size_column: str = "size_bytes"
) -> pd.DataFrame:
    frame = frame.copy()
    # a missing backend or precision never drops a point (groupby leaves out NaN keys)
    frame["backend"] = frame["backend"].fillna("") if "backend" in frame else ""
    derived = [technique_of(v) for v in frame["variant"]]
    if "precision" in frame:
        given = frame["precision"].astype(object)
        frame["precision"] = [
            d if (g is None or g != g or str(g) in ("int8", "")) else str(g)
            for g, d in zip(given, derived, strict=True)
        ]
    else:
        frame["precision"] = derived
    if "pareto" not in frame:
        frame["pareto"] = pareto_mask(
            frame["latency_ms"], frame["metric"], higher_is_better=higher_is_better
        )
    frame["pareto"] = frame["pareto"].fillna(False).astype(bool)
    size = pd.to_numeric(frame.get(size_column, pd.Series(1.0, index=frame.index)), errors="coerce")
    frame["size_mib"] = size / 2**20
    largest = float(size.max()) if size.notna().any() else 1.0
    # an unknown size gets the smallest marker, not a failed figure
    frame["marker"] = (10 + 30 * np.sqrt(size / max(largest, 1.0))).fillna(10.0)
    # neighbours in latency take turns above and below their points: labels stay apart
    rank = frame["latency_ms"].rank(method="first").fillna(0).astype(int)
    frame["label_at"] = np.where(rank % 2 == 0, "bottom center", "top center")
    return frame


def _fit_latency_axis(fig: go.Figure, frame: pd.DataFrame) -> None:
    """Fit the latency axis to the medians when a p90 whisker would stretch it past
    twice the slowest median (and twice the medians' spread): the whiskers past the
    edge are clipped and a note names them, so one slow tail cannot squash the points."""
    medians = frame["latency_ms"].astype(float)
    if "latency_p90_ms" not in frame or medians.empty:
        return
    low, high = float(medians.min()), float(medians.max())
    span = max(high - low, 0.25 * high, 1e-9)
    edge = max(high + 2 * span, 2 * high)
    p90 = frame["latency_p90_ms"].astype(float)
    long = frame[p90 > edge]
    if long.empty:
        return
    fig.update_xaxes(range=[max(0.0, low - 0.4 * span), edge])
    names = ", ".join(
        f"{v} (p90 {p:.3g} ms)"
        for v, p in zip(long["variant"], long["latency_p90_ms"], strict=True)
    )
    corner_note(
        fig,
        textwrap.shorten(f"p90 whiskers clipped at the edge: {names}", 160),
        "clipped",
        size=10,
        color="#777",
    )


_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x")


def _tradeoff_trace(
    part: pd.DataFrame, precision: str, backend: str, selected: str | None, metric: str
) -> go.Scatter:
    error = None
    if "latency_p90_ms" in part:
        error = {
            "type": "data",
            "symmetric": False,
            "visible": True,
            "array": (part["latency_p90_ms"] - part["latency_ms"]).clip(lower=0),
            "arrayminus": [0] * len(part),
            "thickness": 1,
        }
    symbol = _SYMBOLS[zlib.crc32(str(backend).encode()) % len(_SYMBOLS)]
    return go.Scatter(
        x=part["latency_ms"],
        y=part["metric"],
        mode="markers+text",
        text=[_short_variant(v) for v in part["variant"]],
        textposition=list(part["label_at"]),
        textfont={"size": 10, "color": "#555"},
        name=f"{precision}, {backend}" if backend else precision,
        error_x=error,
        marker={
            "size": part["marker"],
            "color": precision_color(precision),
            "symbol": symbol,
            "line": {
                "width": [3 if v == selected else 1 for v in part["variant"]],
                "color": ["black" if v == selected else "white" for v in part["variant"]],
            },
        },
        customdata=np.stack(
            [
                part["variant"],
                part["size_mib"],
                part["pareto"],
                part.get("latency_p90_ms", part["latency_ms"]),
            ],
            -1,
        ),
        hovertemplate=f"<b>%{{customdata[0]}}</b><br>median %{{x:.4g}} ms (bar to p90 "
        f"%{{customdata[3]:.4g}})<br>{metric} %{{y:.4g}}<br>size %{{customdata[1]:.3g}} MiB"
        "<br>Pareto: %{customdata[2]}<extra></extra>",
    )


def _short_variant(variant: str, width: int = 28) -> str:
    """A point's label: the variant's name, cut to ``width`` characters (hover has all)."""
    text = str(variant)
    return text if len(text) <= width else text[: width - 1] + "…"


def sensitivity(
    report: pd.DataFrame,
    *,
    kept: Sequence[str] = (),
    selected: str | None = None,
    order: Sequence[str] | None = None,
) -> go.Figure:
    """Per-layer quality drop of a transform (bars) and its latency gain (diamonds).

    Each layer was transformed alone (`wb.sensitivity`): the bar is the metric lost in
    points (accuracy: percentage points; above zero is worse), the diamond on the right
    axis the end-to-end latency change in percent (above zero is faster), hover adds
    the output SQNR in dB. Layers ``kept`` in full precision are drawn hollow.

    Args:
        report: a `wb.sensitivity` DataFrame (its ``attrs`` name the metric).
        kept: layers the recipe keeps untransformed.
        selected: a layer to outline.
        order: layer names in execution order (default: the report's order).

    Example:
        >>> viz.sensitivity(wb.sensitivity(m, data), kept=["features.0"])
    """
    title = "Sensitivity per layer"
    if report is None or report.empty or "metric_delta" not in report:
        return empty_figure("No sensitivity yet: press Analyse (it transforms one layer "
                            "at a time and measures each).", title)  # fmt: skip
    rows = report[report["error"].isna()] if "error" in report else report
    if order:
        rank = {name: i for i, name in enumerate(order)}
        rows = rows.sort_values("layer", key=lambda s: s.map(rank).fillna(len(rank)))
    metric = str(report.attrs.get("metric", "metric"))
    scale = 100.0 if metric == "accuracy" else 1.0
    drop = -rows["metric_delta"].astype(float) * scale + 0.0  # no "-0" on the axis
    gain = (rows["speedup"].astype(float) - 1.0) * 100 if "speedup" in rows else None
    hollow = [layer in set(kept) for layer in rows["layer"]]
    fig = go.Figure(
        go.Bar(
            x=rows["layer"],
            y=drop,
            name=f"{metric} drop ({'points' if scale == 100 else 'units'})",
            marker={
                "color": [
                    "white" if h else op_type_color(str(t))
                    for h, t in zip(hollow, rows["op_type"], strict=True)
                ],
                "line": {
                    "color": [op_type_color(str(t)) for t in rows["op_type"]],
                    "width": [3 if x == selected else 1.5 for x in rows["layer"]],
                },
            },
            customdata=np.stack([rows["sqnr_db"].astype(float), hollow], -1),
            hovertemplate="<b>%{x}</b><br>drop %{y:.3g}<br>SQNR %{customdata[0]:.1f} dB"
            "<extra></extra>",
        )
    )
    if gain is not None:
        fig.add_trace(
            go.Scatter(
                x=rows["layer"],
                y=gain,
                yaxis="y2",
                mode="markers",
                name="latency gain (%)",
                marker={"symbol": "diamond", "size": 11, "color": "#333"},
                hovertemplate="<b>%{x}</b><br>%{y:+.1f}% faster end to end<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="layer (execution order); hollow = kept in full precision",
        yaxis={"title": f"{metric} drop — lower is better", "zeroline": True},
        yaxis2={
            "title": "latency gain (%)",
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "zeroline": False,
        },
        legend={"orientation": "h", "y": -0.25},
        clickmode="event",
        **LAYOUT,
    )
    if gain is not None:  # one zero line for both axes: bars and diamonds read alike
        drop_range, gain_range = zero_aligned_ranges(list(drop), list(gain))
        fig.update_layout(yaxis_range=drop_range, yaxis2_range=gain_range)
    return fig
