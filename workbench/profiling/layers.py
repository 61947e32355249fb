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

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import LayerMethod, LayerTiming, Session, layer_methods_of
from workbench.errors import BackendError, InputError
from workbench.profiling.table import UNATTRIBUTED, VIEWS, layer_table, order_columns

if TYPE_CHECKING:
    from workbench.profiling.profile import Profile

__all__ = ["UNATTRIBUTED", "attribution", "layer_table", "profile_layers"]


def profile_layers(
    result: Profile,
    session: Session,
    inputs: dict[str, np.ndarray],
    repeats: int,
    *,
    view: str = "leaves",
    method: str | None = None,
    roofline: bool = True,
) -> None:
    """Fill ``result.layers``, ``result.memory``, ``result.layer_method`` and ``result.notes``.

    Works for any backend through ``session.layer_methods()`` (a session that predates
    it through ``session.run_layers``). When per-layer timing fails
    (a layer raises, the backend has no profiler), the profile keeps its end-to-end
    numbers, the table stays empty and a note says what is missing.

    Args:
        result: the profile to complete (changed in place; its ``latency`` must be set).
        session: a compiled `Session` of ``result``'s model.
        inputs: the inputs the end-to-end pass used.
        repeats: instrumented runs (the median and p90 are over these).
        view: ``"leaves"`` (default: leaf modules plus the own code of containers, which
            partition the forward pass) or ``"containers"`` (every module, inclusive
            times; shares are then of the top-level rows).
        method: a name from ``session.layer_methods()`` other than ``"default"``, e.g.
            torch's ``"torch.profiler"`` (with per-layer memory).
        roofline: add attained FLOP/s and bound from `machine_ceilings` (measured once,
            cached on disk).

    Raises:
        InputError: an unknown ``view`` or ``method``.

    Example:
        >>> p = wb.profile(m, "torch", batch_size=32, layers=False)
        >>> s = wb.backend("torch").compile(m, "cpu")
        >>> profile_layers(p, s, m.example_inputs(32), 20, method="torch.profiler")
        >>> s.close()
        >>> p.layers.head()
    """
    from workbench.profiling.memory import measure_memory

    if view not in VIEWS:
        raise InputError(f"view must be one of {sorted(VIEWS)}, got {view!r}")
    timer = _timing_method(session, method)
    result.memory.update(measure_memory(session, inputs))
    try:
        timings = timer(inputs, repeats)
        if not timings:
            raise BackendError(f"backend {session.backend!r} returned no per-layer timings")
    except Exception as exc:  # a partial profile that says what is missing beats no profile
        result.layer_method = "failed"
        result.notes.append(f"per-layer timing failed, no layer table: {exc}")
        return
    label = method or f"{session.backend} default"
    result.layer_method = f"instrumented ({label}, {repeats} runs, view={view})"
    result.layers = layer_table(timings, result.latency.median, view)
    result.notes.extend(_timing_notes(timings))
    _add_costs(result, session, inputs, roofline)
    result.notes.append(_overhead_note(attribution(result)))
    result.memory.update(_memory_from_timings(timings))


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
    table = profile.layers
    end_to_end = profile.latency.median
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


def _memory_from_timings(timings: Sequence[LayerTiming]) -> dict[str, Any]:
    """Backend-reported memory: ORT's arena peak, torch.profiler's per-layer allocations."""
    peaks = [int(t.detail["peak_bytes"]) for t in timings if t.detail.get("peak_bytes")]
    allocated = {
        t.layer: int(t.detail["allocated_bytes"])
        for t in timings
        if t.detail.get("allocated_bytes") and t.detail.get("scope", "leaf") == "leaf"
    }
    out: dict[str, Any] = {}
    if peaks:
        out["backend_peak_bytes"] = max(peaks)
    if allocated:
        out["allocated_bytes_by_layer"] = allocated
    return out


def _add_costs(
    result: Profile, session: Session, inputs: dict[str, np.ndarray], roofline: bool
) -> None:
    from workbench.profiling.cost import add_roofline, layer_costs

    try:
        costs, notes = layer_costs(session.model, inputs, list(result.layers["layer"]))
    except Exception as exc:  # costs are extra information: the timings stand without them
        result.notes.append(f"cost model failed, FLOPs and bytes unknown: {exc}")
        return
    table = result.layers.set_index("layer")
    for column in ("flops", "bytes", "params_bytes", "activation_bytes"):
        table[column] = costs[column].reindex(table.index) if column in costs else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        table["intensity"] = table["flops"] / table["bytes"].where(table["bytes"] > 0)
    from workbench.profiling.trees import node_visits

    visits = node_visits(session.model, inputs)  # trees' work: nodes visited per input row
    if visits:
        table["node_visits"] = table.index.map(visits).astype(float)
        result.notes.append("tree layers: work is node_visits per input row, not FLOPs")
    from workbench.profiling.embeddings import table_columns

    # embedding tables: rows, width, and what this batch looked up (docs/recommendation.md)
    for column, values in table_columns(session.model, inputs).items():
        table[column] = table.index.map(values).astype(float)
    result.layers = order_columns(table.reset_index())
    result.notes.extend(notes)
    result.memory["params_bytes"] = int(np.nansum(result.layers["params_bytes"]))
    if roofline:
        try:
            add_roofline(result)
        except Exception as exc:
            result.notes.append(f"roofline unavailable: {exc}")
