"""Read profiles someone produced elsewhere into the same per-layer table.

`from_onnxruntime_trace` reads an ONNX Runtime profiling JSON (``enable_profiling``);
`from_torch_trace` a ``torch.profiler`` Chrome trace (``export_chrome_trace``). Both
return a `Profile` whose ``layer_method`` says it was imported; what a trace cannot tell
(batch size, the device, an end-to-end pass free of instrumentation) is said in notes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from workbench.backends.base import LayerTiming
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement

_RUN_MARKERS = ("ProfilerStep#", "wb::run#")


def from_onnxruntime_trace(path: str | Path, model: Any = None) -> Profile:
    """A `Profile` from an ONNX Runtime profiling JSON.

    Args:
        path: the JSON file ``InferenceSession.end_profiling()`` wrote.
        model: optionally the model that was run (anything `workbench.load` accepts); its
            graph maps kernels (fused ones included) to canonical layers. Without it, each
            kernel name is a layer.

    Returns:
        A `Profile`; ``latency`` holds the ``model_run`` durations (these ran with the
        profiler on, so they are instrumented too, as a note says).

    Raises:
        ValueError: the file is not an ORT trace.
    """
    from workbench.profiling.layers import _optimized_graph_for, layer_table, timings_from_runs
    from workbench.profiling.ort_trace import NodeMap, map_kernels, read_trace

    runs = read_trace(path)
    notes = [f"imported from ONNX Runtime trace {Path(path).name}"]
    if model is not None:
        from workbench.loaders import load

        onnx_model = load(model).to_onnx()
        optimized = _optimized_graph_for(onnx_model, "all", "CPUExecutionProvider")
        assert onnx_model.proto is not None
        node_map = map_kernels(onnx_model.proto, optimized)
        name = onnx_model.name
    else:
        kernels = list(dict.fromkeys((n, op) for run in runs for n, op, _, _ in run.events))
        node_map = NodeMap([(n, op, [n]) for n, op in kernels], {}, dict(kernels))
        name = Path(path).stem
        notes.append("no model given: layers are ORT kernel names (fused, after optimization)")
    timings = timings_from_runs(runs, node_map)
    totals = [r.total_ms for r in runs if not np.isnan(r.total_ms)]
    if not totals:
        totals = [sum(e[3] for e in r.events) for r in runs]
        notes.append("the trace has no model_run events: end to end is the sum of kernels")
    providers = {e[2] for r in runs for e in r.events}
    device = "cpu" if providers <= {"CPUExecutionProvider", ""} else "cuda:0"
    notes.append("end-to-end times come from the profiled runs themselves (instrumented)")
    latency = Measurement(tuple(totals), label=f"{name} onnxruntime trace")
    result = Profile(
        model=name, backend="onnxruntime", device=device, batch_size=_batch(path), latency=latency
    )
    result.layers = layer_table(timings, latency.median, "leaves")
    result.layer_method = f"imported ORT trace ({len(runs)} runs)"
    result.notes.extend(notes)
    peaks = [r.peak_bytes for r in runs if r.peak_bytes]
    if peaks:
        result.memory["backend_peak_bytes"] = max(peaks)
    return result


def _batch(path: str | Path) -> int:
    """The first dimension of the first kernel's first input (0 when the trace lacks it)."""
    events = json.loads(Path(path).read_text())
    events = events.get("traceEvents", []) if isinstance(events, dict) else events
    for e in events:
        shapes = e.get("args", {}).get("input_type_shape") if e.get("cat") == "Node" else None
        for entry in shapes or []:
            dims: list[int] = next(iter(entry.values()), [])
            if dims:
                return int(dims[0])
    return 0


def from_torch_trace(path: str | Path) -> Profile:
    """A `Profile` from a ``torch.profiler`` Chrome trace (``prof.export_chrome_trace``).

    Layers are, in order of preference: ``record_function`` ranges (workbench's own
    ``wb::<module path>`` ranges, or the user's), the ``nn.Module: <Class>_<n>`` ranges of
    a trace recorded ``with_stack=True``, or else the top-level aten ops (the note then
    says the table is per op, not per module). Nested ranges count their own time only,
    so rows partition the traced time. Runs are split on ``ProfilerStep#N`` /
    ``wb::run#N`` ranges; without them, the n-th occurrence of a layer is run n.

    Raises:
        ValueError: the file holds no usable events.
    """
    data = json.loads(Path(path).read_text())
    events = data.get("traceEvents", []) if isinstance(data, dict) else data
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    markers = [e for e in spans if str(e.get("name", "")).startswith(_RUN_MARKERS)]
    layers, how = _torch_layer_events(spans)
    if not layers:
        raise ValueError(f"{path} holds no torch.profiler ranges or ops")
    samples = _exclusive_samples(layers, markers)
    timings = [
        LayerTiming(name, op, tuple(s), {"scope": "leaf"}) for (name, op), s in samples.items()
    ]
    if markers:
        totals = [m["dur"] / 1e3 for m in sorted(markers, key=lambda e: e["ts"])]
    else:
        runs = max(len(s) for s in samples.values())
        totals = [sum(s[i] for s in samples.values() if i < len(s)) for i in range(runs)]
    from workbench.profiling.layers import layer_table

    latency = Measurement(tuple(totals), label=f"{Path(path).stem} torch trace")
    device = "cuda:0" if any(e.get("cat") == "kernel" for e in spans) else "cpu"
    result = Profile(
        model=Path(path).stem, backend="torch", device=device, batch_size=0, latency=latency
    )
    result.layers = layer_table(timings, latency.median, "leaves")
    result.layer_method = f"imported torch.profiler trace ({how}, {len(totals)} runs)"
    result.notes += [
        f"imported from torch.profiler trace {Path(path).name}; batch size unknown (0)",
        "end-to-end times come from the profiled runs themselves (instrumented)",
    ]
    if how == "aten ops":
        result.notes.append("the trace has no module ranges: the table is per aten op")
    return result


def _torch_layer_events(spans: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    annotations = [
        e
        for e in spans
        if e.get("cat") == "user_annotation" and not str(e["name"]).startswith(_RUN_MARKERS)
    ]
    if annotations:
        for e in annotations:
            e["_layer"] = str(e["name"]).removeprefix("wb::")
            e["_op"] = "record_function"
        return annotations, "record_function ranges"
    modules = [e for e in spans if e.get("cat") == "python_function" and "nn.Module: " in e["name"]]
    if modules:
        for e in modules:
            label = e["name"].split("nn.Module: ", 1)[1]
            e["_layer"], e["_op"] = label, label.rsplit("_", 1)[0]
        return modules, "nn.Module ranges"
    ops = [e for e in spans if e.get("cat") == "cpu_op"]
    for e in ops:
        e["_layer"] = e["_op"] = str(e["name"])
    return _top_level(ops), "aten ops"


def _top_level(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    ends: dict[Any, float] = defaultdict(float)
    for e in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
        if e["ts"] >= ends[e.get("tid")]:
            result.append(e)
            ends[e.get("tid")] = e["ts"] + e["dur"]
    return result


def _exclusive_samples(
    events: list[dict[str, Any]], markers: list[dict[str, Any]]
) -> dict[tuple[str, str], list[float]]:
    """Own time (ms) of each range per run: its duration minus its directly nested ranges."""
    ordered = sorted(events, key=lambda e: (e.get("tid"), e["ts"], -e["dur"]))
    own = {id(e): float(e["dur"]) for e in ordered}
    stacks: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in ordered:
        stack = stacks[e.get("tid")]
        while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
            stack.pop()
        if stack:
            own[id(stack[-1])] -= float(e["dur"])
        stack.append(e)
    spans = sorted((m["ts"], m["ts"] + m["dur"]) for m in markers)
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    if spans:
        per_run: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * len(spans))
        for e in ordered:
            run = next((i for i, (s, end) in enumerate(spans) if s <= e["ts"] <= end), None)
            if run is not None:
                per_run[(e["_layer"], e["_op"])][run] += max(0.0, own[id(e)]) / 1e3
        return dict(per_run)
    for e in sorted(ordered, key=lambda e: e["ts"]):
        samples[(e["_layer"], e["_op"])].append(max(0.0, own[id(e)]) / 1e3)
    return dict(samples)
