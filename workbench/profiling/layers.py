"""Per-layer profiling: where the time and memory go, layer by layer, on any backend.

`profile_layers` speaks only to the `Session` protocol (``session.run_layers``); each
backend times its layers the right way for its runtime (`torch_layer_timings`,
`onnxruntime_layer_timings`, the numba executor's own timer). The table it builds has
one row per canonical layer, costs from `workbench.profiling.cost`, and an explicit
``(unattributed)`` row: the end-to-end median (uninstrumented pass) minus the sum of
the per-layer medians (instrumented pass), negative when instrumentation inflates layers.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.backends.base import Inputs, LayerTiming
from workbench.errors import BackendError
from workbench.profiling.profile import LAYER_COLUMNS, Profile
from workbench.profiling.torch_layers import torch_layer_timings, torch_profiler_layer_timings

__all__ = [
    "UNATTRIBUTED",
    "attribution",
    "layer_table",
    "onnxruntime_layer_timings",
    "profile_layers",
    "torch_layer_timings",
    "torch_profiler_layer_timings",
]

#: name of the row holding end-to-end time no layer accounts for
UNATTRIBUTED = "(unattributed)"
#: layer views: ``leaves`` (leaf modules + containers' own code) or ``containers`` (inclusive)
VIEWS = {"leaves": {"leaf", "self"}, "containers": {"leaf", "container"}}
#: alternative timing methods per backend name (the default is ``session.run_layers``)
METHODS: dict[str, dict[str, Callable[[Any, Inputs, int], list[LayerTiming]]]] = {
    "torch": {"torch.profiler": torch_profiler_layer_timings},
}


def onnxruntime_layer_timings(session: Any, inputs: Inputs, repeats: int) -> list[LayerTiming]:
    """Time every layer of an `OrtSession` with ORT's own node profiler.

    Compiles a separate profiling session (same threads and optimization level), runs it
    ``repeats`` times after one warm-up run, parses the trace, maps each kernel to the
    canonical layers it covers (fused kernels to the first of them, with
    ``detail["fused_from"]`` naming the rest, whose timings carry ``detail["fused_into"]``)
    and deletes the profiling files. The session given is not changed.

    Args:
        session: an onnxruntime backend session.
        inputs: model inputs.
        repeats: profiled runs (one sample per layer per run).

    Returns:
        `LayerTiming` per canonical layer in graph order: executed layers with one sample
        per run (kernel times summed within the run, ms), fused and folded layers with
        zero samples and a note, and layers ORT never ran with no samples.

    Raises:
        BackendError: ORT could not build the profiling session or wrote no trace.

    Example:
        >>> s = wb.backend("onnxruntime").compile(m, "cpu")
        >>> [(t.layer, t.detail.get("fused_into")) for t in s.run_layers(x, repeats=10)]
    """
    from workbench.backends.onnxruntime import OrtSession
    from workbench.profiling.ort_trace import map_kernels, read_trace

    onnx_model = _named_nodes(session.model.to_onnx())
    options = dict(session.options)
    prof = OrtSession(onnx_model, session.device, profiling=True, **options)
    trace_path: str | None = None
    try:
        feeds = prof._feeds(inputs)
        prof._run(feeds)
        for _ in range(repeats):
            prof._run(feeds)
        trace_path = prof.session.end_profiling()
        runs = read_trace(trace_path)
        runs = runs[-repeats:] if len(runs) > repeats else runs  # drop the warm-up run
        level = session.options.get("optimization") or "all"
        optimized = _optimized_graph_for(onnx_model, level, session.provider)
        node_map = map_kernels(onnx_model.proto, optimized)
    finally:
        prof.close()
        if trace_path:
            shutil.rmtree(Path(trace_path).parent, ignore_errors=True)
    return timings_from_runs(runs, node_map)


def timings_from_runs(runs: Sequence[Any], node_map: Any) -> list[LayerTiming]:
    """`LayerTiming` per canonical layer from parsed ORT runs and a kernel map."""
    from workbench.profiling.ort_trace import layer_samples

    samples, detail = layer_samples(runs, node_map)
    fused_into = {layer: head for head, info in detail.items() for layer in info["fused_from"]}
    zero = tuple(0.0 for _ in runs)
    result = []
    order = list(dict.fromkeys([*node_map.layer_order, *samples]))
    for layer in order:
        op = node_map.layer_ops.get(layer) or detail.get(layer, {}).get("op", "")
        if layer in samples:
            info = dict(detail[layer])
            info.pop("op", None)
            if layer in fused_into:
                info["also_fused_into"] = fused_into[layer]
            result.append(LayerTiming(layer, op, tuple(samples[layer]), info))
        elif layer in fused_into:
            info = {"fused_into": fused_into[layer], "note": f"fused into {fused_into[layer]}"}
            result.append(LayerTiming(layer, op, zero, info))
        elif layer in node_map.not_run:
            result.append(LayerTiming(layer, op, zero, {"note": node_map.not_run[layer]}))
        else:
            result.append(LayerTiming(layer, op, (), {"note": "not seen in the trace"}))
    return result


def _named_nodes(onnx_model: Any) -> Any:
    """The graph with every node named uniquely, so each kernel in the trace is traceable.

    Unnamed or duplicate nodes get ``<op>_<index>`` (the canonical name an unnamed node
    already has); layer metadata is untouched, so canonical layers do not change.
    """
    proto = onnx_model.proto
    names = [n.name for n in proto.graph.node]
    if all(names) and len(set(names)) == len(names):
        return onnx_model
    from workbench.loaders.onnx import canonical_layer_name
    from workbench.model import LAYER_KEY

    copy = type(proto)()
    copy.CopyFrom(proto)
    seen: set[str] = set()
    for index, node in enumerate(copy.graph.node):
        if not any(kv.key == LAYER_KEY for kv in node.metadata_props):
            entry = node.metadata_props.add()
            entry.key, entry.value = LAYER_KEY, canonical_layer_name(node, index)
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)
    return onnx_model.derive(proto=copy, parent=onnx_model.parent)


def _optimized_graph_for(onnx_model: Any, optimization: str, provider: str) -> Any:
    """The graph ORT really runs (after fusion) at an optimization level, or None."""
    import tempfile

    import onnx
    import onnxruntime as ort

    level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    folder = tempfile.mkdtemp(prefix="wb-ort-opt-")
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.optimized_model_filepath = f"{folder}/optimized.onnx"
        opts.log_severity_level = 3
        providers = list(dict.fromkeys([provider, "CPUExecutionProvider"]))
        ort.InferenceSession(onnx_model.onnx_bytes, opts, providers=providers)
        return onnx.load(f"{folder}/optimized.onnx", load_external_data=False)
    except Exception:  # without the optimized graph, kernels still map by their names
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- the generic per-layer pass ----------------------------------------------------------
def profile_layers(
    result: Profile,
    session: Any,
    inputs: dict[str, np.ndarray],
    repeats: int,
    *,
    view: str = "leaves",
    method: str | None = None,
    roofline: bool = True,
) -> None:
    """Fill ``result.layers``, ``result.memory``, ``result.layer_method`` and ``result.notes``.

    Works for any backend through ``session.run_layers``. When per-layer timing fails
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
        method: an alternative timing method from `METHODS` for the session's backend,
            e.g. ``"torch.profiler"`` (with per-layer memory).
        roofline: add attained FLOP/s and bound from `machine_ceilings` (measured once,
            cached on disk).

    Raises:
        ValueError: an unknown ``view`` or ``method``.

    Example:
        >>> p = wb.profile(m, "torch", batch_size=32, layers=False)
        >>> s = wb.backend("torch").compile(m, "cpu")
        >>> profile_layers(p, s, m.example_inputs(32), 20, method="torch.profiler")
        >>> s.close()
        >>> p.layers.head()
    """
    from workbench.profiling.memory import peak_memory

    if view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)}, got {view!r}")
    timer = _timing_method(session, method)
    result.memory.update(peak_memory(session, inputs))
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


def _timing_method(session: Any, method: str | None) -> Callable[[Inputs, int], Any]:
    if method is None or method == "default":
        if not callable(getattr(session, "run_layers", None)):
            return _unavailable(f"backend {session.backend!r} has no per-layer profiler")
        return lambda inputs, repeats: session.run_layers(inputs, repeats)
    known = METHODS.get(session.backend, {})
    if method not in known:
        raise ValueError(
            f"unknown layer method {method!r} for backend {session.backend!r}; "
            f"known: {['default', *known]}"
        )
    return lambda inputs, repeats: known[method](session, inputs, repeats)


def _unavailable(message: str) -> Callable[[Inputs, int], Any]:
    def fail(inputs: Inputs, repeats: int) -> Any:
        raise BackendError(message)

    return fail


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
    return _ordered(table)


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
        "note": note,
        "top_level": top,
    }


def _has_ancestor(layer: str, names: set[str], parents: dict[str, Any]) -> bool:
    parent, seen = parents.get(layer), {layer}
    while parent and parent not in seen:
        if parent in names:
            return True
        seen.add(parent)
        parent = parents.get(parent)
    return False


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    for column in LAYER_COLUMNS:
        if column not in table:
            table[column] = np.nan
    for column in ("fused_into", "bound"):  # text columns: missing is None, as after JSON
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    table["note"] = table["note"].fillna("")
    rest = [c for c in table.columns if c not in LAYER_COLUMNS]
    return table[LAYER_COLUMNS + rest]


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
    result: Profile, session: Any, inputs: dict[str, np.ndarray], roofline: bool
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
    result.layers = _ordered(table.reset_index())
    result.notes.extend(notes)
    result.memory["params_bytes"] = int(np.nansum(result.layers["params_bytes"]))
    if roofline:
        try:
            add_roofline(result)
        except Exception as exc:
            result.notes.append(f"roofline unavailable: {exc}")
