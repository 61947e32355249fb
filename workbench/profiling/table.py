"""The per-layer table of a `Profile`: its columns, the unattributed row, and how it is built.

`layer_table` turns raw `LayerTiming`s (from a session's per-layer pass or an imported
trace) into one row per canonical layer plus an explicit ``(unattributed)`` row: the
end-to-end median minus the sum of the per-layer medians, negative when instrumentation
inflates layers. Costs and roofline columns are added later (`workbench.profiling.cost`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from workbench.backends.base import LayerTiming

#: the columns of `Profile.layers`, in display order (per-layer profiling fills them)
LAYER_COLUMNS = [
    "layer",
    "op_type",
    "latency_ms",
    "latency_p90_ms",
    "share",
    "flops",
    "executed_flops",
    "bytes",
    "intensity",
    "params_bytes",
    "activation_bytes",
    "achieved_flops_per_s",
    "bound",
    "roof_fraction",
    "samples",
    "fused_into",
    "note",
    "kernels",
    "provider",
]
#: name of the row holding end-to-end time no layer accounts for
UNATTRIBUTED = "(unattributed)"
#: layer views: ``leaves`` (leaf modules + containers' own code) or ``containers`` (inclusive)
VIEWS = {"leaves": {"leaf", "self"}, "containers": {"leaf", "container"}}


def layer_table(timings: Sequence[LayerTiming], end_to_end_ms: float, view: str) -> pd.DataFrame:
    """The per-layer table (timing columns) from raw timings; costs are added later.

    Args:
        timings: per-layer timings in execution order.
        end_to_end_ms: the uninstrumented end-to-end median, for the unattributed row.
        view: ``"leaves"`` or ``"containers"`` (filters ``detail["scope"]`` when present).

    Returns:
        One row per canonical layer, then the ``(unattributed)`` row.
    """
    keep = VIEWS[view]
    rows = [t for t in timings if t.detail.get("scope", "leaf") in keep]
    rows = _merge_duplicates(rows)
    names = {t.layer for t in rows}
    parents = {t.layer: t.detail.get("parent") for t in timings}
    nested = view == "containers"
    records = [_row(t, names, parents, nested) for t in rows]
    table = pd.DataFrame.from_records(records)
    top = table["top_level"] if len(table) else pd.Series(dtype=bool)
    layers_sum = float(table.loc[top, "latency_ms"].sum()) if len(table) else 0.0
    # nested rows (containers view) get a share of the top-level total too
    table["share"] = table["latency_ms"] / layers_sum if layers_sum > 0 else np.nan
    table = table.drop(columns="top_level")
    gap = end_to_end_ms - layers_sum
    extra = {
        "layer": UNATTRIBUTED,
        "op_type": "",
        "latency_ms": gap,
        "latency_p90_ms": np.nan,
        "share": np.nan,
        "samples": 0,
        "note": "end-to-end median minus the sum of layer medians (negative: "
        "instrumentation inflates the layers)",
    }
    table = pd.concat([table, pd.DataFrame([extra])], ignore_index=True)
    return order_columns(table)


def _merge_duplicates(rows: Sequence[LayerTiming]) -> list[LayerTiming]:
    """One timing per layer name: a layer timed in pieces is summed run by run."""
    merged: dict[str, LayerTiming] = {}
    for t in rows:
        if t.layer in merged and t.samples_ms and merged[t.layer].samples_ms:
            old = merged[t.layer]
            samples = tuple(a + b for a, b in zip(old.samples_ms, t.samples_ms, strict=False))
            merged[t.layer] = LayerTiming(old.layer, old.op_type, samples, old.detail)
        elif t.layer not in merged or not merged[t.layer].samples_ms:
            merged[t.layer] = t
    return list(merged.values())


def _row(t: LayerTiming, names: set[str], parents: dict[str, Any], nested: bool) -> dict[str, Any]:
    samples = np.asarray(t.samples_ms, dtype=float)
    # in the containers view a row inside another row's time is not summed again
    top = not (nested and _has_ancestor(t.layer, names, parents))
    fused_from = t.detail.get("fused_from") or []
    note = t.detail.get("note") or t.detail.get("error") or ""
    if fused_from:
        note = "; ".join(filter(None, [note, f"runs fused with {', '.join(fused_from)}"]))
    if t.detail.get("fused_into") and not note:
        note = f"fused into {t.detail['fused_into']}"
    if t.detail.get("also_fused_into"):
        note = "; ".join(filter(None, [note, f"partly fused into {t.detail['also_fused_into']}"]))
    return {
        "layer": t.layer,
        "op_type": t.op_type,
        "latency_ms": float(np.median(samples)) if samples.size else np.nan,
        "latency_p90_ms": float(np.percentile(samples, 90)) if samples.size else np.nan,
        "samples": int(samples.size),
        "fused_into": t.detail.get("fused_into"),
        # work the backend really did (e.g. a Winograd conv), next to the nominal flops
        "executed_flops": float(t.detail.get("executed_flops", np.nan)),
        "note": note,
        "kernels": kernel_ops(t.detail),
        # where the layer ran (ONNX Runtime's execution provider; CPU fallbacks show here)
        "provider": t.detail.get("provider") or None,
        "top_level": top,
    }


def kernel_ops(detail: Any) -> str | None:
    """The ops a layer's kernels ran, in order and once each (``"QLinearConv"``), or None.

    Read from ``detail["kernels"]`` (``"node:op"`` strings, as ORT's trace names them) or
    ``detail["ops"]``; a quantized layer is then named by what it ran (``QLinearConv``, or
    ``Conv`` with Quantize/Dequantize kernels) rather than by its first graph node.
    """
    kernels = detail.get("kernels") or detail.get("ops") or []
    ops = dict.fromkeys(str(k).rsplit(":", 1)[-1].strip() for k in kernels)
    return ", ".join(op for op in ops if op) or None


def _has_ancestor(layer: str, names: set[str], parents: dict[str, Any]) -> bool:
    parent, seen = parents.get(layer), {layer}
    while parent and parent not in seen:
        if parent in names:
            return True
        seen.add(parent)
        parent = parents.get(parent)
    return False


def order_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every `LAYER_COLUMNS` column, in order, missing ones empty; extras last."""
    for column in LAYER_COLUMNS:
        if column not in table:
            table[column] = np.nan
    # text columns: missing is None, as after JSON
    for column in ("fused_into", "bound", "kernels", "provider"):
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    table["note"] = table["note"].fillna("")
    rest = [c for c in table.columns if c not in LAYER_COLUMNS]
    return table[LAYER_COLUMNS + rest]
