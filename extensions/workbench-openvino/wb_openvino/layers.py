"""Per-layer timing of OpenVINO sessions from its performance counters, in canonical layers.

OpenVINO reports one counter per node of the graph it executes (``get_runtime_model()``),
whose runtime info ``originalLayersNames`` lists the nodes of the converted model that node
computes. Those names are ONNX node names or output tensor names (OpenVINO names an op
after its output when the node has none), sometimes with a ``/WithoutBiases``-style suffix;
nodes its transformations created (a Convolution that absorbed a BatchNorm's multiply) have
new names, and the original Conv is found again by walking back from the nodes that were
fused into it. The result is the same kernel map the ORT path builds, so fused layers show
as ``fused_into`` their executed layer exactly as on ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from workbench.backends.base import Inputs, LayerTiming
from workbench.backends.onnxruntime.trace import NodeMap, TraceRun, timings_from_runs
from workbench.loaders.onnx import LAYOUT_LAYER, canonical_layer_name, onnx_layers

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import openvino

    from workbench.model import Model


class CountedSession(Protocol):
    """What per-layer timing needs of an OpenVINO session (`OpenVinoSession` is one).

    Attributes:
        model: the model it was compiled from.
        compiled: the ``openvino.CompiledModel`` (its runtime graph names the kernels).
        request: the infer request whose ``profiling_info`` holds the counters.
    """

    model: Model
    compiled: Any
    request: Any

    def profiling_copy(self) -> CountedSession:
        """A new session with the same options and the performance counters on."""
        ...

    def feeds(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """The inputs validated, by input name."""
        ...

    def close(self) -> None:
        """Release the compiled model and its request."""
        ...


#: runtime nodes that compute nothing (weights, graph inputs and outputs)
_NOT_KERNELS = {"Const", "Input", "Output", "Parameter", "Result"}
#: the ONNX ops at the heart of an OpenVINO kernel type (the walk back stops at one)
_CORES = {
    "Convolution": ("Conv", "ConvInteger", "QLinearConv"),
    "Deconvolution": ("ConvTranspose",),
    "FullyConnected": ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"),
    "FullyConnectedQuantizedLegacy": ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"),
    "MatMul": ("MatMul", "Gemm"),
}
#: how far back (in original nodes) a renamed kernel's core op may sit
_WALK_DEPTH = 3


def openvino_layer_timings(
    session: CountedSession, inputs: Inputs, repeats: int
) -> list[LayerTiming]:
    """Time every layer of an OpenVINO session with its performance counters.

    Compiles a profiling copy (same device and options, counters on), runs it once to
    warm up and then ``repeats`` times, reading the counters after each run, and maps the
    executed nodes to canonical layers. The session given is not changed.

    Args:
        session: an openvino backend session.
        inputs: model inputs.
        repeats: profiled runs (one sample per layer per run).

    Returns:
        `LayerTiming` per canonical layer in graph order: executed layers with one sample
        per run (ms; ``detail["kernels"]`` names OpenVINO's nodes, ``detail["provider"]``
        its implementation, e.g. ``brgconv_avx512_I8`` for an int8 convolution), layers
        fused into another with zero samples and ``detail["fused_into"]``, and layers
        OpenVINO's transformations removed or folded, or that it computes in place (a
        Reshape as a view), with zero samples and a note.

    Example:
        >>> s = wb.backend("openvino").compile(m, "cpu")
        >>> [(t.layer, t.detail.get("fused_into")) for t in s.run_layers(x, repeats=10)]
    """
    prof = session.profiling_copy()
    try:
        feeds = prof.feeds(inputs)
        prof.request.infer(feeds)
        runs = []
        for _ in range(repeats):
            prof.request.infer(feeds)
            runs.append(trace_run(prof.request.profiling_info))
        proto = session.model.to_onnx().proto
        assert proto is not None
        node_map = map_runtime_graph(proto, prof.compiled.get_runtime_model())
    finally:
        prof.close()
    ran = {event[0] for run in runs for event in run.events}
    for name, _, layers in node_map.kernel_layers:
        if name not in ran:  # OpenVINO reports in-place nodes (a Reshape's view) as NOT_RUN
            for layer in layers:
                node_map.not_run.setdefault(layer, "no kernel: OpenVINO computes it in place")
    return timings_from_runs(runs, node_map)


def trace_run(counters: Iterable[Any]) -> TraceRun:
    """One run's executed counters as kernel events ``(node, type, implementation, ms)``."""
    return TraceRun(
        events=[
            (c.node_name, c.node_type, c.exec_type, c.real_time.total_seconds() * 1e3)
            for c in counters
            if c.status.name == "EXECUTED"
        ]
    )


def map_runtime_graph(original: onnx.ModelProto, runtime: openvino.Model) -> NodeMap:
    """Map every node of OpenVINO's executed graph to the canonical layers it computes.

    Args:
        original: the ONNX graph that was compiled.
        runtime: ``compiled_model.get_runtime_model()``.

    Returns:
        A `NodeMap`: per executed node (in execution order) the layers it covers, the first
        the one its time goes to; layout reorders map to ``(layout)``; a helper node with
        no original names joins the layer of the node feeding it.
    """
    graph = original.graph
    layer_of = {i: canonical_layer_name(n, i) for i, n in enumerate(graph.node)}
    index = {t: i for i, n in enumerate(graph.node) for t in n.output if t}
    index.update({n.name: i for i, n in enumerate(graph.node) if n.name})
    claimed: set[int] = set()
    kernels: list[tuple[str, str, list[str]]] = []
    owner: dict[str, list[str]] = {}
    for op in runtime.get_ordered_ops():
        kind = _rt(op, "layerType") or op.get_type_name()
        if kind in _NOT_KERNELS:
            continue
        names = [n for n in _rt(op, "originalLayersNames").split(",") if n]
        names += [t for out in op.outputs() for t in out.get_names()]
        covered = _unique(i for n in names if (i := _resolve(n, index)) is not None)
        covered = [i for i in covered if i not in claimed]
        core = _CORES.get(kind)
        if core and covered and not any(graph.node[i].op_type in core for i in covered):
            covered += _walk_to_core(min(covered), core, graph, claimed)
        claimed.update(covered)
        layers = _unique(layer_of[i] for i in sorted(covered))
        if not layers:
            layers = [LAYOUT_LAYER] if kind == "Reorder" else _fed_by(op, owner)
        name = op.get_friendly_name()
        owner[name] = layers
        kernels.append((name, kind, layers))
    executed = {layer for _, _, layers in kernels for layer in layers}
    not_run = {
        layer_of[i]: "removed or folded by OpenVINO's graph transformations"
        for i in range(len(graph.node))
        if i not in claimed and layer_of[i] not in executed
    }
    layers_ = onnx_layers(original)
    return NodeMap(
        kernels, not_run, {x.name: x.op_type for x in layers_}, [x.name for x in layers_]
    )


def _rt(op: Any, key: str) -> str:
    info = op.get_rt_info()
    return str(info[key].astype(str)) if key in info else ""


def _resolve(name: str, index: dict[str, int]) -> int | None:
    """The original node a runtime name refers to, dropping ``/suffix`` parts OpenVINO adds."""
    while name:
        if name in index:
            return index[name]
        name = name.rpartition("/")[0]
    return None


def _walk_to_core(
    start: int, core: Sequence[str], graph: onnx.GraphProto, claimed: set[int]
) -> list[int]:
    """The unclaimed nodes from ``start`` back to the core op a renamed kernel computes.

    OpenVINO folds a BatchNorm into the preceding Conv's weights and names the result
    after the multiply; the Conv itself is then missing from ``originalLayersNames``.
    """
    producer = {t: i for i, n in enumerate(graph.node) for t in n.output if t}
    path: list[int] = []
    current = start
    for _ in range(_WALK_DEPTH):
        sources = [
            producer[t]
            for t in graph.node[current].input
            if t in producer
            and producer[t] not in claimed
            and graph.node[producer[t]].op_type != "Constant"
        ]
        if len(sources) != 1:  # a join or a graph input: the core is not on a single path
            return []
        current = sources[0]
        path.append(current)
        if graph.node[current].op_type in core:
            return path
    return []


def _fed_by(op: Any, owner: dict[str, list[str]]) -> list[str]:
    """The layers of the executed node feeding ``op`` (a helper node joins its producer)."""
    for value in op.input_values():
        layers = owner.get(value.get_node().get_friendly_name())
        if layers:
            return layers[:1]
    return []


def _unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))
