"""Per-layer profiling: where the time and memory go, layer by layer, on any backend.

`profile_layers` speaks only to the `Session` protocol: it times with one of
``session.layer_methods()`` (``"default"`` is ``session.run_layers``; each backend times
its layers the right way for its runtime, in its own package) and never reaches into a
session. The table it builds (`workbench.profiling.table.layer_table`) has one row per
canonical layer, costs from `workbench.profiling.cost`, and an explicit
``(unattributed)`` row: the end-to-end median (uninstrumented pass) minus the sum of the
per-layer medians (instrumented pass), negative when instrumentation inflates layers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.backends.base import LayerMethod, LayerTiming, Session, layer_methods_of
from workbench.errors import BackendError, InputError
from workbench.profiling.memory import ProfileMemory
from workbench.profiling.table import (
    LAYER_COLUMNS,
    UNATTRIBUTED,
    VIEWS,
    layer_table,
    order_columns,
)

if TYPE_CHECKING:
    from workbench.profiling.profile import Profile

__all__ = [
    "UNATTRIBUTED",
    "LayerReport",
    "LayersInterrupted",
    "attribution",
    "layer_table",
    "profile_layers",
]


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=LAYER_COLUMNS)


@dataclass(frozen=True)
class LayerReport:
    """What the per-layer pass found, for the `Profile` built from it.

    Attributes:
        layers: the per-layer table (`LAYER_COLUMNS`); empty when timing failed.
        method: how the layers were timed (``Profile.layer_method``); ``"failed"``.
        memory: the memory report measured on the way.
        notes: what is missing or approximate, in words.
        ceilings: the machine ceilings of the roofline (``environment["machine_ceilings"]``),
            None when it was not drawn.
    """

    layers: pd.DataFrame = field(default_factory=_empty_table)
    method: str = ""
    memory: ProfileMemory = field(default_factory=ProfileMemory)
    notes: tuple[str, ...] = ()
    ceilings: dict[str, Any] | None = None

    def with_note(self, *notes: str) -> LayerReport:
        """The same report with ``notes`` added at the end."""
        return dataclasses.replace(self, notes=(*self.notes, *notes))


class LayersInterrupted(KeyboardInterrupt):
    """Ctrl+C (a kernel interrupt) during the per-layer pass; ``found`` is what it had."""

    def __init__(self, found: LayerReport) -> None:
        super().__init__()
        self.found = found


def profile_layers(
    session: Session,
    inputs: dict[str, np.ndarray],
    end_to_end_ms: float,
    repeats: int,
    *,
    view: str = "leaves",
    method: str | None = None,
    roofline: bool = True,
    group_timing: bool = True,
) -> LayerReport:
    """Time each layer of ``session``'s model; the table, memory and notes as data.

    Works for any backend through ``session.layer_methods()`` (a session that predates
    it through ``session.run_layers``). When per-layer timing fails
    (a layer raises, the backend has no profiler), the report has an empty table and a
    note says what is missing; the profile keeps its end-to-end numbers.

    Args:
        session: a compiled `Session`.
        inputs: the inputs the end-to-end pass used.
        end_to_end_ms: the uninstrumented end-to-end median, for the ``(unattributed)`` row.
        repeats: instrumented runs (the median and p90 are over these).
        view: ``"leaves"`` (default: leaf modules plus the own code of containers, which
            partition the forward pass) or ``"containers"`` (every module, inclusive
            times; shares are then of the top-level rows).
        method: a name from ``session.layer_methods()`` other than ``"default"``, e.g.
            torch's ``"torch.profiler"`` (with per-layer memory).
        roofline: add attained FLOP/s and bound from `machine_ceilings` (measured once,
            cached on disk).
        group_timing: time each group of trees alone where the runtime can
            (`workbench.profiling.trees.with_tree_groups`).

    Returns:
        A `LayerReport`.

    Raises:
        InputError: an unknown ``view`` or ``method``.
        LayersInterrupted: Ctrl+C during the pass, carrying what it had found.

    Example:
        >>> s = wb.backend("torch").compile(m, "cpu")
        >>> found = profile_layers(s, m.example_inputs(32), 1.2, 20, method="torch.profiler")
        >>> s.close()
        >>> found.layers.head()
    """
    from workbench.profiling.memory import measure_memory

    if view not in VIEWS:
        raise InputError(f"view must be one of {sorted(VIEWS)}, got {view!r}")
    timer = _timing_method(session, method)
    found = LayerReport(memory=measure_memory(session, inputs))
    try:
        try:
            timings = timer(inputs, repeats)
            if not timings:
                raise BackendError(f"backend {session.backend!r} returned no per-layer timings")
        except Exception as exc:  # a partial profile that says what is missing beats none
            note = f"per-layer timing failed, no layer table: {exc}"
            return dataclasses.replace(found, method="failed").with_note(note)
        label = method or f"{session.backend} default"
        found = dataclasses.replace(
            found,
            method=f"instrumented ({label}, {repeats} runs, view={view})",
            layers=layer_table(timings, end_to_end_ms, view),
        ).with_note(*_timing_notes(timings))
        found = _with_costs(found, session, inputs, roofline, group_timing)
        found = found.with_note(_overhead_note(_attributed(found.layers, end_to_end_ms)))
        return dataclasses.replace(found, memory=found.memory.merged(_memory_from_timings(timings)))
    except KeyboardInterrupt as exc:
        raise LayersInterrupted(found) from exc


def _timing_method(session: Any, method: str | None) -> LayerMethod:
    """The session's timing method called ``method`` (None: ``"default"``)."""
    methods = layer_methods_of(session)
    name = method or "default"
    if name in methods:
        return methods[name]
    if name == "default":
        return _unavailable(f"backend {session.backend!r} has no per-layer profiler")
    raise InputError(
        f"unknown layer method {method!r} for backend {session.backend!r}; "
        f"known: {['default', *(m for m in methods if m != 'default')]}"
    )


def _unavailable(message: str) -> LayerMethod:
    def fail(inputs: Any, repeats: int) -> list[LayerTiming]:
        raise BackendError(message)

    return fail


def _timing_notes(timings: Sequence[LayerTiming]) -> list[str]:
    missing = [t.layer for t in timings if not t.samples_ms]
    if not missing:
        return []
    shown = ", ".join(missing[:8]) + (" …" if len(missing) > 8 else "")
    return [f"{len(missing)} layer(s) have no timing (never ran or not in the trace): {shown}"]


def attribution(profile: Profile) -> dict[str, float]:
    """The per-layer pass against the end-to-end pass: ``layers_sum_ms``, ``end_to_end_ms``,
    ``ratio`` (layers / end to end; above 1 when instrumentation inflates layers).
    """
    return _attributed(profile.layers, profile.latency.median)


def _attributed(table: pd.DataFrame, end_to_end: float) -> dict[str, float]:
    if table.empty or "latency_ms" not in table:
        return {"layers_sum_ms": math.nan, "end_to_end_ms": end_to_end, "ratio": math.nan}
    gap = table.loc[table["layer"] == UNATTRIBUTED, "latency_ms"]
    layers_sum = end_to_end - float(gap.iloc[0]) if len(gap) else math.nan
    ratio = layers_sum / end_to_end if end_to_end > 0 else math.nan
    return {"layers_sum_ms": layers_sum, "end_to_end_ms": end_to_end, "ratio": ratio}


def _overhead_note(numbers: dict[str, float]) -> str:
    return (
        f"per-layer times are instrumented: layers sum to {numbers['layers_sum_ms']:.4g} ms vs "
        f"{numbers['end_to_end_ms']:.4g} ms end to end (ratio {numbers['ratio']:.2f}); the "
        f"difference is the {UNATTRIBUTED} row"
    )


def _memory_from_timings(timings: Sequence[LayerTiming]) -> ProfileMemory:
    """Backend-reported memory: ORT's arena peak, torch.profiler's per-layer allocations."""
    peaks = [int(t.detail["peak_bytes"]) for t in timings if t.detail.get("peak_bytes")]
    allocated = {
        t.layer: int(t.detail["allocated_bytes"])
        for t in timings
        if t.detail.get("allocated_bytes") and t.detail.get("scope", "leaf") == "leaf"
    }
    return ProfileMemory(
        backend_peak_bytes=max(peaks) if peaks else None,
        allocated_bytes_by_layer=allocated or None,
    )


def _with_costs(
    found: LayerReport,
    session: Session,
    inputs: dict[str, np.ndarray],
    roofline: bool,
    group_timing: bool = True,
) -> LayerReport:
    """``found`` with FLOPs, bytes, tree and embedding columns and, asked, the roofline."""
    from workbench.profiling import cost

    model = session.model
    # the graph, read once: its node-level costs when the model has been exported
    graph = model.to_onnx().proto if model.has_onnx else None
    try:
        costs, notes = cost.layer_costs(model, inputs, list(found.layers["layer"]), graph)
    except Exception as exc:  # costs are extra information: the timings stand without them
        return found.with_note(f"cost model failed, FLOPs and bytes unknown: {exc}")
    table = found.layers.set_index("layer")
    for column in ("flops", "bytes", "params_bytes", "activation_bytes"):
        table[column] = costs[column].reindex(table.index) if column in costs else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        table["intensity"] = table["flops"] / table["bytes"].where(table["bytes"] > 0)
    from workbench.profiling.trees import with_tree_groups

    graph = graph if graph is not None else model.to_onnx().proto
    # trees' work (node visits per row) and their groups of trees, timed where the runtime can
    table, tree_notes = with_tree_groups(table, graph, inputs, session if group_timing else None)
    found = found.with_note(*tree_notes)
    from workbench.profiling.embeddings import table_columns

    # embedding tables: rows, width, and what this batch looked up (docs/recommendation.md)
    for column, values in table_columns(model, inputs).items():
        table[column] = table.index.map(values).astype(float)
    layers = order_columns(table.reset_index())
    params = ProfileMemory(params_bytes=int(np.nansum(layers["params_bytes"])))
    found = dataclasses.replace(found, layers=layers, memory=found.memory.merged(params))
    found = found.with_note(*notes)
    if not roofline:
        return found
    try:
        placed = cost.roofline(layers, session.device)
    except Exception as exc:
        return found.with_note(f"roofline unavailable: {exc}")
    found = dataclasses.replace(found, layers=placed.layers, ceilings=placed.ceilings)
    return found.with_note(*placed.notes)
