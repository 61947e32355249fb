"""ONNX Runtime node profiles: parse the trace JSON and map kernels back to canonical layers.

ORT rewrites the graph before running it: it folds constants, fuses Conv+BatchNorm+Relu
into one ``FusedConv`` (or an NCHWc ``Conv`` named after a tensor, ``relu_nchwc``),
MatMul+Add into ``Gemm``, MatMul+Add+Gelu into ``BiasGelu``, and inserts layout
conversions (``ReorderInput``/``ReorderOutput``). A kernel in the trace is therefore
matched to the *optimized* graph (dumped once with ``optimized_model_filepath``) and,
through the tensors it reads and writes, to the original nodes it covers. Nothing is
dropped: every original node ends up executed, fused into a kernel, folded at load time,
or explicitly not seen.

`import_trace` reads a trace someone produced outside workbench (``enable_profiling``)
into the same timings; `workbench.profiling.profile.Profile.from_onnxruntime_trace` turns
them into a `Profile`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import ImportedTrace, LayerTiming
from workbench.backends.onnxruntime.plain import plain_session
from workbench.errors import InvalidArgumentError
from workbench.loaders.onnx import LAYOUT_LAYER

if TYPE_CHECKING:
    import onnx

    from workbench.model import Model

#: layout conversions ORT inserts (they belong to no model layer)
_LAYOUT_OPS = {"ReorderInput", "ReorderOutput"}
#: the original op at the heart of a fused kernel (the walk back stops there)
_CORES = {
    "FusedConv": ("Conv",),
    "NhwcFusedConv": ("Conv",),
    "FusedGemm": ("Gemm", "MatMul"),
    "Gemm": ("Gemm", "MatMul"),
    "FusedMatMul": ("MatMul",),
    "MatMulNBits": ("MatMul",),
}
#: no-ops ORT removes (their consumers read the input directly): never "fused"
_NO_OPS = {"Identity", "Dropout"}
_SUFFIXES = re.compile(r"(_nchwc|_token_\d+|/[^/]*Fusion/?.*|_fused.*)$")


@dataclass
class TraceRun:
    """Kernel events of one ``model_run``: ``(kernel name, op, provider, duration ms)``."""

    events: list[tuple[str, str, str, float]] = field(default_factory=list)
    total_ms: float = float("nan")
    peak_bytes: int = 0


def read_trace(path: str | Path) -> list[TraceRun]:
    """Split an ORT profiling JSON into runs of kernel events, in execution order.

    Args:
        path: the file ``end_profiling()`` wrote (a JSON list of Chrome trace events).

    Returns:
        One `TraceRun` per ``model_run`` event (a single run when the trace has none).

    Raises:
        InvalidArgumentError: the file is not an ORT trace (no ``Node`` kernel events);
            also a ``ValueError``.
    """
    events = json.loads(Path(path).read_text())
    if isinstance(events, dict):  # some tools wrap the list in {"traceEvents": [...]}
        events = events.get("traceEvents", [])
    kernels = [
        e
        for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
    ]
    if not kernels:
        raise InvalidArgumentError(
            f"{path} holds no ONNX Runtime node events (cat 'Node', '*_kernel_time'): pass "
            "the JSON file a session with enable_profiling wrote (end_profiling() names it)"
        )
    runs_spans = sorted(
        (e["ts"], e["ts"] + e["dur"], e["dur"])
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    runs = [TraceRun(total_ms=d / 1000.0) for _, _, d in runs_spans] or [TraceRun()]
    for event in sorted(kernels, key=lambda e: e["ts"]):
        index = _run_index(runs_spans, event["ts"])
        args = event.get("args", {})
        name = str(event["name"]).removesuffix("_kernel_time")
        runs[index].events.append(
            (name, str(args.get("op_name", "")), str(args.get("provider", "")), event["dur"] / 1e3)
        )
        peak = args.get("mem_in_use_peak") or args.get("mem_bytes_in_use") or 0
        runs[index].peak_bytes = max(runs[index].peak_bytes, int(peak))
    return [r for r in runs if r.events]


def _run_index(spans: Sequence[tuple[float, float, float]], ts: float) -> int:
    for i, (start, end, _) in enumerate(spans):
        if start <= ts <= end:
            return i
    return max(0, len(spans) - 1) if spans else 0


@dataclass(frozen=True)
class ProfilerOverhead:
    """What ORT's node profiler adds to every kernel's reported time, measured here.

    A chain of cheap nodes (``Neg`` of one float: no work to speak of) runs plain and
    profiled at the same threads; the profiled run reports each node at ``reported_ms``,
    while the plain run spends ``plain_ms`` per node, the executor's dispatch included.
    The difference, ``kernel_ms``, is the profiler's own cost inside a kernel's
    reported time (its timestamps, the event's arguments, the thread pool's
    statistics): a lower bound, since the plain time also holds the dispatch that the
    reported one leaves out.

    Attributes:
        kernel_ms: ``reported_ms - plain_ms``, floored at 0 (ms per kernel event).
        reported_ms: a node's reported time, profiled (the median run's sum / nodes).
        plain_ms: a node's time in the plain run (the median run / nodes).
        nodes: nodes in the chain.
        runs: timed runs of each session (after a few untimed).
        threads: intra-op threads of both sessions.
    """

    kernel_ms: float
    reported_ms: float
    plain_ms: float
    nodes: int
    runs: int
    threads: int

    def describe(self) -> str:
        """One line: the calibration and how it was measured."""
        return (
            f"{self.kernel_ms * 1e3:.2f} us per kernel (a chain of {self.nodes} one-float Neg "
            f"nodes at {self.threads} thread(s): {self.reported_ms * 1e3:.2f} us reported per "
            f"node profiled, {self.plain_ms * 1e3:.2f} us per node plain, medians of "
            f"{self.runs} runs)"
        )


@lru_cache(maxsize=8)
def profiler_overhead(threads: int, nodes: int = 200, runs: int = 30) -> ProfilerOverhead:
    """Measure `ProfilerOverhead` on this machine (once per process and thread count).

    Takes a few tenths of a second: two sessions of a ``nodes``-long chain, each run
    ``runs`` times after 5 untimed runs.
    """
    import time

    import onnx
    from onnx import TensorProto, helper

    names = ["x"] + [f"t{i}" for i in range(nodes)]
    graph = helper.make_graph(
        [
            helper.make_node("Neg", [a], [b], name=f"n{i}")
            for i, (a, b) in enumerate(pairwise(names))
        ],
        "profiler-calibration",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [1])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = min(proto.ir_version, onnx.IR_VERSION)
    feeds = {"x": np.ones(1, np.float32)}
    plain = plain_session(proto, threads=threads)
    for _ in range(5):
        plain.run(None, feeds)
    wall = []
    for _ in range(runs):
        began = time.perf_counter()
        plain.run(None, feeds)
        wall.append((time.perf_counter() - began) * 1000.0)
    profiled = plain_session(proto, threads=threads, profiling=True)
    for _ in range(runs + 5):
        profiled.run(None, feeds)
    trace = profiled.end_profiling()
    try:
        traced = read_trace(trace)[-runs:]
    finally:  # the profiler wrote into a folder of its own
        shutil.rmtree(Path(trace).parent, ignore_errors=True)
    reported = float(np.median([sum(e[3] for e in run.events) for run in traced])) / nodes
    per_node = float(np.median(wall)) / nodes
    return ProfilerOverhead(max(0.0, reported - per_node), reported, per_node, nodes, runs, threads)


def less_overhead(runs: Sequence[TraceRun], kernel_ms: float) -> list[TraceRun]:
    """``runs`` with ``kernel_ms`` taken off every kernel event (floored at 0): the
    kernels' times without the node profiler's own per-kernel cost (`profiler_overhead`)."""
    return [
        TraceRun(
            [(name, op, where, max(0.0, ms - kernel_ms)) for name, op, where, ms in run.events],
            run.total_ms,
            run.peak_bytes,
        )
        for run in runs
    ]


@dataclass
class NodeMap:
    """How the kernels of an optimized graph cover the original graph's layers.

    Attributes:
        kernel_layers: per optimized node (in order, ``(name, op)``), the canonical layers
            it covers; the first is the layer its time is attributed to.
        not_run: layers no kernel covers, with why: folded into constants when the
            session loaded, or removed by the graph optimizer.
        layer_ops: the main op type of each canonical layer (from the original graph).
        layer_order: canonical layers in the original graph's order.
    """

    kernel_layers: list[tuple[str, str, list[str]]]
    not_run: dict[str, str]
    layer_ops: dict[str, str]
    layer_order: list[str] = field(default_factory=list)


def map_kernels(original: onnx.ModelProto, optimized: onnx.ModelProto | None) -> NodeMap:
    """Map every node of ``optimized`` to the canonical layers of ``original`` it computes.

    Without an optimized graph (e.g. an imported trace), kernels map by name only.
    """
    from workbench.loaders.onnx import canonical_layer_name, onnx_layers

    graph = original.graph
    layer_of = {i: canonical_layer_name(n, i) for i, n in enumerate(graph.node)}
    layers = onnx_layers(original)
    layer_ops = {layer.name: layer.op_type for layer in layers}
    order = [layer.name for layer in layers]
    by_name = {n.name: i for i, n in enumerate(graph.node) if n.name}
    if optimized is None:
        by_node = [(n.name, n.op_type, [layer_of[i]]) for i, n in enumerate(graph.node)]
        return NodeMap(by_node, {}, layer_ops, order)
    producer = {t: i for i, n in enumerate(graph.node) for t in n.output if t}
    dynamic = dynamic_nodes(original)
    opt_names = {n.name for n in optimized.graph.node}
    claimed: dict[int, int] = {}
    kernels: list[tuple[str, str, list[int]]] = []
    anchors: list[int | None] = []
    for k, node in enumerate(optimized.graph.node):
        covered: list[int] = []
        anchor = None if node.op_type in _LAYOUT_OPS else _anchor(node, by_name, producer)
        if anchor is not None and anchor not in claimed:
            stops = set(node.input)
            core = _CORES.get(node.op_type, (node.op_type,))
            covered = _walk_back(anchor, core, stops, graph, producer, dynamic, opt_names, claimed)
        for i in covered:
            claimed[i] = k
        kernels.append((node.name, node.op_type, covered))
        anchors.append(anchor)
    _claim_leftovers(graph, producer, dynamic, claimed, kernels)
    named: list[tuple[str, str, list[str]]] = []
    for (name, op, covered), anchor in zip(kernels, anchors, strict=True):
        owned = _unique(layer_of[i] for i in sorted(covered))
        if not owned and anchor is not None:  # a helper kernel ORT added next to a layer
            owned = [layer_of[anchor]]
        named.append((name, op, owned or ([LAYOUT_LAYER] if op in _LAYOUT_OPS else [])))
    executed = {layer for _, _, owned in named for layer in owned}
    not_run: dict[str, str] = {}
    for i in range(len(graph.node)):
        if i not in claimed and layer_of[i] not in executed:
            why = "removed by the graph optimizer" if i in dynamic else "folded into constants"
            not_run.setdefault(layer_of[i], why)
    return NodeMap(named, not_run, layer_ops, order)


def _anchor(node: onnx.NodeProto, by_name: dict[str, int], producer: dict[str, int]) -> int | None:
    """The original node an optimized node is named after, or that writes its output."""
    bare = node.name.removeprefix("fused ")
    for candidate in (node.name, bare, _SUFFIXES.sub("", bare)):
        if candidate in by_name:
            return by_name[candidate]
        if candidate in producer:  # NCHWc kernels are named after their output tensor
            return producer[candidate]
    for output in node.output:
        if output in producer:
            return producer[output]
    return None


def _walk_back(
    anchor: int,
    core: tuple[str, ...],
    stop_tensors: set[str],
    graph: onnx.GraphProto,
    producer: dict[str, int],
    dynamic: set[int],
    opt_names: set[str],
    claimed: dict[int, int],
) -> list[int]:
    """Original nodes between a kernel's inputs and its anchor: what the kernel fused.

    The walk stops at the kernel's core op (a Conv kernel holds one Conv), so that a
    previous kernel's fused epilogue (its Add and Relu) is never claimed by the next one.
    """
    covered, stack = [anchor], [anchor]
    while stack:
        current = graph.node[stack.pop()]
        if current.op_type in core:
            continue
        for tensor in current.input:
            if not tensor or tensor in stop_tensors or tensor not in producer:
                continue
            source = producer[tensor]
            if source in covered or source in claimed or source not in dynamic:
                continue
            if graph.node[source].op_type in _NO_OPS:
                continue
            if graph.node[source].name in opt_names:  # it runs as its own kernel
                continue
            covered.append(source)
            stack.append(source)
    return covered


def _claim_leftovers(
    graph: onnx.GraphProto,
    producer: dict[str, int],
    dynamic: set[int],
    claimed: dict[int, int],
    kernels: list[tuple[str, str, list[int]]],
) -> None:
    """Fused epilogues (a Relu after a Conv, an Add after a MatMul) join their input's kernel.

    Only along an edge with a single consumer: a node reading a tensor that others read
    too was not fused but removed (e.g. a duplicate merged by common-subexpression
    elimination), and stays unclaimed.
    """
    readers: dict[str, int] = defaultdict(int)
    for node in graph.node:
        for t in set(node.input):
            readers[t] += 1
    for i, node in enumerate(graph.node):
        if i in claimed or i not in dynamic or node.op_type in _NO_OPS:
            continue
        sources = [
            producer[t]
            for t in node.input
            if t in producer and producer[t] in claimed and readers[t] == 1
        ]
        if sources:
            owner = claimed[sources[0]]
            claimed[i] = owner
            kernels[owner][2].append(i)


def dynamic_nodes(proto: onnx.ModelProto) -> set[int]:
    """Nodes that depend on a graph input (the others fold into constants at load time)."""
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    live = {v.name for v in graph.input if v.name not in initializers}
    result = set()
    for i, node in enumerate(graph.node):
        if any(t in live for t in node.input):
            result.add(i)
            live.update(node.output)
    return result


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def layer_samples(
    runs: Sequence[TraceRun], node_map: NodeMap
) -> tuple[dict[str, list[float]], dict[str, dict[str, Any]]]:
    """Per-layer durations (ms), one per run, and per-layer details (kernels, fusion).

    Kernels are matched to optimized nodes by name, in execution order; a name used by
    several nodes (``BiasGelu`` twice) is matched occurrence by occurrence.
    """
    slots: dict[str, list[int]] = defaultdict(list)
    for k, (name, _, _) in enumerate(node_map.kernel_layers):
        slots[name].append(k)
    samples: dict[str, list[float]] = defaultdict(list)
    detail: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"kernels": [], "fused_from": [], "provider": set()}
    )
    for run in runs:
        seen: dict[str, int] = defaultdict(int)
        per_run: dict[str, float] = defaultdict(float)
        for name, op, provider, ms in run.events:
            layers = _kernel_layers(node_map, slots, name, seen[name])
            seen[name] += 1
            head = _head(layers, op, node_map.layer_ops) if layers else f"({name})"
            per_run[head] += ms
            info = detail[head]
            if f"{name}:{op}" not in info["kernels"]:
                info["kernels"].append(f"{name}:{op}")
            rest = [layer for layer in layers if layer != head]
            info["fused_from"] = _unique([*info["fused_from"], *rest])
            info["provider"].add(provider)
            info.setdefault("op", op)
            if not layers:
                info["note"] = "a kernel ORT added while running; it maps to no model layer"
        for layer, ms in per_run.items():
            samples[layer].append(ms)
    for info in detail.values():
        info["provider"] = ",".join(sorted(info["provider"]))
    return dict(samples), dict(detail)


def _head(layers: list[str], op: str, layer_ops: dict[str, str]) -> str:
    """The layer a fused kernel's time goes to: the one whose op the kernel implements.

    ``FusedConv`` -> the Conv layer, ``SkipLayerNormalization`` -> the LayerNorm,
    ``BiasGelu`` -> the Gelu, ``FusedMatMul`` -> the MatMul; otherwise the first layer.
    """
    for layer in layers:
        if layer_ops.get(layer) == op:
            return layer
    for layer in layers:
        main = layer_ops.get(layer, "")
        if main and main in op:
            return layer
    return layers[0]


def _kernel_layers(
    node_map: NodeMap, slots: dict[str, list[int]], name: str, occurrence: int
) -> list[str]:
    candidates = slots.get(name)
    if not candidates:
        return []
    return node_map.kernel_layers[candidates[min(occurrence, len(candidates) - 1)]][2]


def timings_from_runs(runs: Sequence[TraceRun], node_map: NodeMap) -> list[LayerTiming]:
    """`LayerTiming` per canonical layer from parsed ORT runs and a kernel map.

    Args:
        runs: parsed runs (`read_trace`), one sample per layer per run.
        node_map: how the kernels cover the canonical layers (`map_kernels`).

    Returns:
        Executed layers with one sample per run (kernel times summed within the run, ms;
        a fused kernel's time goes to the layer it implements, ``detail["fused_from"]``
        naming the rest), fused and folded layers with zero samples and a note, and
        layers no kernel ran with no samples, in graph order.
    """
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


def mark_fallbacks(timings: Sequence[LayerTiming], provider: str) -> list[LayerTiming]:
    """``timings`` with the layers that ran on another provider than ``provider`` noted.

    ORT places each node on the first provider in the session's list that can run it;
    the trace's ``args.provider`` says which did. A layer whose kernels ran elsewhere
    (a CPU fallback on a CUDA or TensorRT session) gets ``detail["fallback"]`` naming it
    and a note, so the per-layer table shows it next to the ``provider`` column.
    """
    marked = []
    for t in timings:
        ran = [p for p in str(t.detail.get("provider", "")).split(",") if p]
        elsewhere = [p for p in ran if p != provider]
        if not elsewhere:
            marked.append(t)
            continue
        note = f"ran on {', '.join(elsewhere)} (fallback from {provider})"
        old = t.detail.get("note")
        detail = {
            **t.detail,
            "fallback": ",".join(elsewhere),
            "note": "; ".join(filter(None, [old, note])),
        }
        marked.append(LayerTiming(t.layer, t.op_type, t.samples_ms, detail))
    return marked


def optimized_graph(onnx_model: Model, optimization: str, provider: str) -> onnx.ModelProto | None:
    """The graph ORT really runs (after fusion) at an optimisation level, or None.

    Args:
        onnx_model: an ONNX `Model` (not changed).
        optimization: ``"disabled" | "basic" | "extended" | "all"``.
        provider: the execution provider whose fusions apply.
    """
    import onnx

    folder = tempfile.mkdtemp(prefix="wb-ort-opt-")
    try:
        plain_session(
            onnx_model.onnx_bytes,
            optimization=optimization,
            optimized_model_filepath=f"{folder}/optimized.onnx",
            providers=list(dict.fromkeys([provider, "CPUExecutionProvider"])),
        )
        return onnx.load(f"{folder}/optimized.onnx", load_external_data=False)
    except Exception:  # without the optimized graph, kernels still map by their names
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def import_trace(path: str | Path, model: Any = None) -> ImportedTrace:
    """Per-layer timings from an ONNX Runtime profiling JSON written outside workbench.

    Args:
        path: the JSON file ``InferenceSession.end_profiling()`` wrote.
        model: optionally the model that was run (anything `workbench.load` accepts); its
            graph maps kernels (fused ones included) to canonical layers. Without it, each
            kernel name is a layer.

    Returns:
        An `ImportedTrace`; ``run_ms`` holds the ``model_run`` durations (these ran with
        the profiler on, so they are instrumented too, as a note says).

    Raises:
        ValueError: the file is not an ORT trace.

    Example:
        >>> import_trace("onnxruntime_profile.json", model="model.onnx").timings[0]
    """
    runs = read_trace(path)
    notes = [f"imported from ONNX Runtime trace {Path(path).name}"]
    if model is not None:
        from workbench.loaders import load

        onnx_model = load(model).to_onnx()
        optimized = optimized_graph(onnx_model, "all", "CPUExecutionProvider")
        assert onnx_model.proto is not None
        node_map = map_kernels(onnx_model.proto, optimized)
        name = onnx_model.name
    else:
        kernels = list(dict.fromkeys((n, op) for run in runs for n, op, _, _ in run.events))
        node_map = NodeMap([(n, op, [n]) for n, op in kernels], {}, dict(kernels))
        name = Path(path).stem
        notes.append("no model given: layers are ORT kernel names (fused, after optimization)")
    totals = [r.total_ms for r in runs if not np.isnan(r.total_ms)]
    if not totals:
        totals = [sum(e[3] for e in r.events) for r in runs]
        notes.append("the trace has no model_run events: end to end is the sum of kernels")
    providers = {e[2] for r in runs for e in r.events}
    notes.append("end-to-end times come from the profiled runs themselves (instrumented)")
    peaks = [r.peak_bytes for r in runs if r.peak_bytes]
    return ImportedTrace(
        model=name,
        backend="onnxruntime",
        device="cpu" if providers <= {"CPUExecutionProvider", ""} else "cuda:0",
        batch_size=_batch(path),
        timings=tuple(timings_from_runs(runs, node_map)),
        run_ms=tuple(totals),
        method=f"imported ORT trace ({len(runs)} runs)",
        notes=tuple(notes),
        memory={"backend_peak_bytes": max(peaks)} if peaks else {},
    )


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
