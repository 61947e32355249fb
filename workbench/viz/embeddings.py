"""Embedding tables: where lookups fall out of cache, and what each table costs a batch.

- `cache_cliffs`: a `CacheSweep`'s effective GB/s against table size, one line per
  runtime and batch, with the cache sizes the machine reports, the cliffs found in the
  data and the measured memory bandwidth.
- `table_bytes`: one row per table (`embedding_tables`' frame or a profile's per-layer
  table): the whole table's bytes beside the bytes one batch touches, with rows, width
  and lookups in the labels.

Example:
    >>> from workbench.viz import embeddings
    >>> embeddings.cache_cliffs(wb.cache_sweep(batches=(2048,))).show()
    >>> embeddings.table_bytes(embedding_tables(m, m.example_inputs(256, ids="zipf"))).show()
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.profiling.cache_sweep import CacheSweep
from workbench.units import format_bytes
from workbench.viz.style import INK, LAYOUT, MUTED, empty_figure, log_axis, run_color

__all__ = ["cache_cliffs", "table_bytes"]

_DASHES = ("solid", "dash", "dot", "dashdot")


def cache_cliffs(sweep: CacheSweep) -> go.Figure:
    """Effective GB/s of the lookups against table size, with the caches and the cliffs.

    Each (runtime, batch) curve is one line (a runtime keeps its colour, a batch its
    dash); dotted verticals mark the cache sizes the machine reports, diamonds the
    cliffs `find_cliffs` detected (hover: level, ratio to the reported size), and a
    horizontal line the measured memory bandwidth when there is one.

    Args:
        sweep: a `CacheSweep` (`wb.cache_sweep`).

    Returns:
        A new figure; the sweep is not changed.
    """
    points = sweep.points
    if points.empty:
        return empty_figure("No points: run wb.cache_sweep().", "Embedding lookups vs cache")
    fig = go.Figure()
    batches = sorted(points["batch"].unique())
    for (runtime, batch), curve in points.groupby(["runtime", "batch"], sort=False):
        curve = curve.sort_values("table_bytes")
        fig.add_trace(
            go.Scatter(
                x=curve["table_bytes"],
                y=curve["gb_per_s"],
                mode="lines+markers",
                name=f"{runtime}, batch {batch:,}",
                line={"color": run_color(runtime), "dash": _DASHES[batches.index(batch) % 4]},
                customdata=np.stack([curve["latency_ms"], curve["samples"]], axis=1),
                hovertemplate="%{x:.3s}B table: %{y:.3g} GB/s<br>"
                "median %{customdata[0]:.4g} ms of %{customdata[1]} runs<extra></extra>",
            )
        )
    for level, size in sweep.caches.items():
        fig.add_vline(
            x=size,
            line={"color": MUTED, "dash": "dot", "width": 1},
            annotation={"text": f"{level} {format_bytes(size)}", "font_color": MUTED},
        )
    if not sweep.cliffs.empty:
        cliffs = sweep.cliffs
        fig.add_trace(
            go.Scatter(
                x=cliffs["detected_bytes"],
                y=np.sqrt(cliffs["gb_per_s_before"] * cliffs["gb_per_s_after"]),
                mode="markers",
                name="cliff found",
                marker={"symbol": "diamond", "size": 11, "color": INK},
                customdata=np.stack([cliffs["level"], cliffs["ratio"], cliffs["runtime"]], axis=1),
                hovertemplate="%{customdata[2]}: cliff at %{x:.3s}B, "
                "%{customdata[1]:.2f}x the reported %{customdata[0]}<extra></extra>",
            )
        )
    if sweep.bandwidth_bytes_per_s:
        fig.add_hline(
            y=sweep.bandwidth_bytes_per_s / 1e9,
            line={"color": INK, "dash": "dash", "width": 1},
            annotation={"text": "measured memory bandwidth", "font_color": INK},
        )
    rates = [*points["gb_per_s"], (sweep.bandwidth_bytes_per_s or 0) / 1e9]
    fig.update_layout(
        title=f"Embedding-bag lookups vs cache ({sweep.ids} ids, width {sweep.width}, "
        f"bags of {sweep.bag})",
        xaxis=log_axis(points["table_bytes"], "B", title="table size"),
        yaxis=log_axis(rates, "GB/s", title="effective rate (bytes looked up / median latency)"),
        **LAYOUT,
    )
    return fig


def table_bytes(tables: pd.DataFrame) -> go.Figure:
    """Each table's bytes beside the bytes one batch touches (log scale).

    Args:
        tables: `embedding_tables`' frame (``layer, rows, width, table_bytes, lookups,
            unique_rows, bytes_touched``), or a profile's per-layer table (its table
            columns ``table_rows, table_width, params_bytes, lookups, bytes_touched``;
            other layers are left out).

    Returns:
        A new horizontal bar figure, one row per table, largest last; the frame is not
        changed.
    """
    frame = _tables_of(tables)
    if frame.empty:
        return empty_figure(
            "No embedding tables: profile a model with nn.Embedding/nn.EmbeddingBag or "
            "ONNX Gather tables.",
            "Embedding tables",
        )
    frame = frame.sort_values("table_bytes")
    labels = [
        f"{layer} ({rows:,} x {width})"
        for layer, rows, width in zip(frame["layer"], frame["rows"], frame["width"], strict=True)
    ]
    fig = go.Figure()
    for column, name, color in (
        ("table_bytes", "table", MUTED),
        ("bytes_touched", "touched per batch", INK),
    ):
        fig.add_trace(
            go.Bar(
                y=labels,
                x=frame[column],
                name=name,
                orientation="h",
                marker_color=color,
                customdata=np.stack(
                    [frame["lookups"], [format_bytes(v) for v in frame[column]]], 1
                ),
                hovertemplate=f"%{{y}}<br>{name}: %{{customdata[1]}}"
                "<br>%{customdata[0]:,} lookups per batch<extra></extra>",
            )
        )
    values = [*frame["table_bytes"], *frame["bytes_touched"]]
    fig.update_layout(
        title="Embedding tables: bytes held vs bytes touched per batch",
        barmode="group",
        xaxis=log_axis(values, "B", title="bytes"),
        height=max(300, 60 + 40 * len(frame)),
        **LAYOUT,
    )
    return fig


def _tables_of(tables: pd.DataFrame) -> pd.DataFrame:
    """`embedding_tables`' columns, from either frame the figure takes."""
    if "table_rows" in tables.columns:  # a profile's per-layer table
        rows = tables[tables["table_rows"].notna()]
        renamed: dict[str, Any] = {
            "table_rows": "rows",
            "table_width": "width",
            "params_bytes": "table_bytes",
        }
        rows = rows.rename(columns=renamed)
    else:
        rows = tables
    needed = ["layer", "rows", "width", "table_bytes", "lookups", "bytes_touched"]
    if not set(needed) <= set(rows.columns):
        return pd.DataFrame(columns=needed)
    frame = rows[needed].copy()
    for column in needed[1:]:
        frame[column] = frame[column].astype(np.int64)
    return frame
