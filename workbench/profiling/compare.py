"""`compare`: per-layer profiles lined up on canonical layer names.

One row per canonical layer (the union over the profiles: a layer missing from one says
so), one column group per profile, ratios and deltas against the first profile, sorted
by the largest absolute delta. A ``reasons`` column explains what it can detect; more
detectors can be added with `register_reason` (e.g. quantization's added Q/DQ nodes).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import InvalidArgumentError
from workbench.profiling.profile import UNATTRIBUTED, Profile
from workbench.profiling.reasons import quantization_reasons

#: a reason detector: (layer, per-profile rows or None, labels) -> reasons in words
ReasonFn = Callable[[str, list[dict[str, Any] | None], list[str]], list[str]]
_REASONS: list[ReasonFn] = []


def register_reason(fn: ReasonFn) -> ReasonFn:
    """Add a detector whose reasons fill the ``reasons`` column of every comparison.

    Example:
        >>> @register_reason
        ... def qdq(layer, rows, labels):
        ...     return ["Q/DQ added"] if "QuantizeLinear" in str(rows) else []
    """
    _REASONS.append(fn)
    return fn


# eq=False: == is identity; a generated __eq__ would compare DataFrames and raise
@dataclass(frozen=True, eq=False)
class Comparison:
    """An aligned per-layer comparison.

    Attributes:
        table: one row per canonical layer: ``layer``, ``op_type``, then per profile label
            ``<label> latency_ms``, ``<label> ratio`` and ``<label> delta_ms`` (against the
            first profile), ``present_in``, ``reasons``; sorted by the largest |delta|,
            the ``(unattributed)`` row last.
        labels: the short label of each profile, in order (the first is the baseline).
        profiles: the compared profiles.
    """

    table: pd.DataFrame
    labels: list[str]
    profiles: list[Profile] = field(repr=False, default_factory=list)

    def verdicts(self) -> list[str]:
        """``"<label>: noisy: load 3.8 on 2 CPUs"`` for each profile measured noisy: the
        ratios against or of that profile are uncertain (read them with its CI)."""
        return [
            f"{label}: {p.latency.verdict}"
            for label, p in zip(self.labels, self.profiles, strict=False)
            if p.latency.noisy
        ]

    def __repr__(self) -> str:
        from workbench.profiling.formatting import frame_text

        notes = "".join(f"\nuncertain ratios, {v}" for v in self.verdicts())
        head = f"Comparison({self.labels}, {len(self.table)} layers)"
        return f"{head}\n{frame_text(self.table)}{notes}"

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import frame_html, summary_html
        from workbench.profiling.results import figure_html
        from workbench.units import format_ms

        facts = [
            (label, format_ms(profile.latency.median))
            for label, profile in zip(self.labels, self.profiles, strict=False)
        ]
        facts.append(("layers", f"{len(self.table):,}"))
        title = f"Per-layer comparison: {' vs '.join(self.labels)}"
        figure = figure_html(self)
        notes = "".join(f"<li>uncertain ratios, {html.escape(v)}</li>" for v in self.verdicts())
        notes = f"<ul class='noisy'>{notes}</ul>" if notes else ""
        return summary_html(title, facts, figure + notes + frame_html(self.table))


def compare(
    profiles: Sequence[Profile], *, labels: Sequence[str] | None = None, metric: str = "latency_ms"
) -> Comparison:
    """Line up the per-layer tables of several profiles on canonical layer names.

    Args:
        profiles: two or more profiles with per-layer tables; the first is the baseline.
        labels: column-group labels (default: what differs between the profiles, e.g.
            the backends, or the recipes of two variants).
        metric: the per-layer column compared (``latency_ms`` by default).

    Returns:
        A `Comparison` (``.table`` is a DataFrame; shows as HTML in a notebook).

    Raises:
        InvalidArgumentError: fewer than two profiles, a profile without a layer table,
            or duplicate labels (also a `ValueError`).

    Example:
        >>> wb.compare([wb.profile(m, "torch"), wb.profile(m, "onnxruntime")]).table.head()
    """
    profiles = list(profiles)
    if len(profiles) < 2:
        raise InvalidArgumentError(
            f"compare needs at least two profiles, got {len(profiles)}; add one to compare with"
        )
    for p in profiles:
        if p.layers.empty or metric not in p.layers:
            raise InvalidArgumentError(
                f"{p.label} has no per-layer {metric}; profile it with layers=True"
            )
    names = list(labels) if labels is not None else default_labels(profiles)
    if len(set(names)) != len(names) or len(names) != len(profiles):
        raise InvalidArgumentError(f"labels must be unique, one per profile; got {names}")
    tables = [p.layers.drop_duplicates("layer").set_index("layer") for p in profiles]
    order = _union_order([list(t.index) for t in tables])
    rows = [_row(layer, tables, names, metric) for layer in order]
    table = pd.DataFrame.from_records(rows)
    size = table["sort_key"].where(table["layer"] != UNATTRIBUTED, -1.0)
    table = table.assign(sort_key=size).sort_values("sort_key", ascending=False, kind="stable")
    return Comparison(table.drop(columns="sort_key").reset_index(drop=True), names, profiles)


def default_labels(profiles: Sequence[Profile]) -> list[str]:
    """Short labels made of what differs between profiles (backend, recipe, device, batch)."""
    parts = [
        [f"{p.model}[{p.recipe_name}]", p.backend, p.device, f"bs={p.batch_size}"] for p in profiles
    ]
    varying = [i for i in range(4) if len({row[i] for row in parts}) > 1]
    labels = [" ".join(row[i] for i in varying) or f"#{k}" for k, row in enumerate(parts)]
    if len(set(labels)) < len(labels):
        labels = [f"#{k} {label}".strip() for k, label in enumerate(labels)]
    return labels


def _union_order(orders: list[list[str]]) -> list[str]:
    """All layers, in the first profile's order, others' extra layers after their predecessor."""
    result = [x for x in orders[0] if x != UNATTRIBUTED]
    for order in orders[1:]:
        previous = ""
        for layer in order:
            if layer == UNATTRIBUTED:
                continue
            if layer not in result:
                at = result.index(previous) + 1 if previous in result else len(result)
                result.insert(at, layer)
            previous = layer
    return [*result, UNATTRIBUTED]


def _row(layer: str, tables: list[pd.DataFrame], labels: list[str], metric: str) -> dict[str, Any]:
    found = [t.loc[layer].to_dict() if layer in t.index else None for t in tables]
    values = [float(r[metric]) if r is not None else math.nan for r in found]
    base = values[0]
    row: dict[str, Any] = {
        "layer": layer,
        "op_type": next((r["op_type"] for r in found if r is not None), ""),
    }
    biggest = 0.0
    for label, value in zip(labels, values, strict=True):
        row[f"{label} {metric}"] = value
    for label, value in zip(labels[1:], values[1:], strict=True):
        ratio = value / base if base and not math.isnan(base) and not math.isnan(value) else np.nan
        delta = np.nan_to_num(value) - np.nan_to_num(base)
        row[f"{label} ratio"] = ratio
        row[f"{label} delta_ms" if metric == "latency_ms" else f"{label} delta"] = delta
        biggest = max(biggest, abs(delta))
    row["present_in"] = ", ".join(lb for lb, r in zip(labels, found, strict=True) if r is not None)
    reasons: list[str] = []
    # quantization_reasons: why a quantized variant's layer got slower, from the rows alone;
    # the graph-level explanation with both models is workbench.optimize.explain.explain
    for detector in [_presence, _op_change, _fusion, quantization_reasons, *_REASONS]:
        reasons.extend(detector(layer, found, labels))
    row["reasons"] = "; ".join(reasons)
    row["sort_key"] = biggest
    return row


def _presence(layer: str, rows: list[dict[str, Any] | None], labels: list[str]) -> list[str]:
    if layer == UNATTRIBUTED:
        return []
    missing = [lb for lb, r in zip(labels, rows, strict=True) if r is None]
    if not missing:
        return []
    present = [lb for lb, r in zip(labels, rows, strict=True) if r is not None]
    return [f"only in {', '.join(present)}"]


_OP_FAMILIES = {
    "conv": "conv", "fusedconv": "conv", "linear": "gemm", "gemm": "gemm", "matmul": "gemm",
    "fusedmatmul": "gemm", "batchnorm": "batchnorm", "batchnormalization": "batchnorm",
    "layernorm": "layernorm", "layernormalization": "layernorm", "relu": "relu",
    "gelu": "gelu", "flatten": "reshape", "reshape": "reshape", "softmax": "softmax",
    "maxpool": "maxpool", "adaptiveavgpool": "avgpool", "globalaveragepool": "avgpool",
    "avgpool": "avgpool", "averagepool": "avgpool",
}  # fmt: skip


def op_family(op_type: str) -> str:
    """A framework-neutral op family (``Conv2d`` and ``Conv`` -> ``conv``) for comparisons."""
    key = op_type.lower()
    for suffix in ("1d", "2d", "3d"):
        key = key.removesuffix(suffix)
    return _OP_FAMILIES.get(key, key)


def _op_change(layer: str, rows: list[dict[str, Any] | None], labels: list[str]) -> list[str]:
    if any(r and "own code of a container" in str(r.get("note", "")) for r in rows):
        return []  # a torch container's own code has no single op to compare
    ops = [(lb, str(r.get("op_type", ""))) for lb, r in zip(labels, rows, strict=True) if r]
    families = {op_family(op) for _, op in ops if op}
    if len(families) <= 1:
        return []
    return ["op type differs: " + ", ".join(f"{op} ({lb})" for lb, op in ops)]


def _fusion(layer: str, rows: list[dict[str, Any] | None], labels: list[str]) -> list[str]:
    reasons = []
    for label, row in zip(labels, rows, strict=True):
        target = row.get("fused_into") if row else None
        if isinstance(target, str) and target:
            reasons.append(f"fused into {target} in {label}")
    return reasons
