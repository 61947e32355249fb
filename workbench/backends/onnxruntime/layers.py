"""Per-layer timing of ONNX Runtime sessions with ORT's own node profiler.

A profiling copy of the session (same threads and optimisation level) runs the inputs,
its trace is parsed and each kernel is mapped back to the canonical layers it covers
(`workbench.backends.onnxruntime.trace`); the session timed end to end is never profiled.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from workbench.backends.base import Inputs, LayerTiming
from workbench.backends.onnxruntime.trace import (
    map_kernels,
    mark_fallbacks,
    optimized_graph,
    read_trace,
    timings_from_runs,
)

if TYPE_CHECKING:
    import numpy as np

    from workbench.backends.onnxruntime.options import OrtOptions
    from workbench.model import Model


class TracedSession(Protocol):
    """What per-layer timing and memory need of an ORT session (`OnnxRuntimeSession` is one).

    Attributes:
        model: the model it was compiled from.
        provider: the execution provider it runs on.
        options: its compile options (the optimisation level maps fused kernels back).
    """

    model: Model
    provider: str
    options: OrtOptions

    def profiled_trace(
        self, inputs: Inputs, runs: int, model: Model | None = None
    ) -> AbstractContextManager[tuple[Path, dict[str, np.ndarray]]]:
        """The node profiler's trace of ``runs`` runs of a profiling copy, and its feeds."""
        ...


def onnxruntime_layer_timings(
    session: TracedSession, inputs: Inputs, repeats: int
) -> list[LayerTiming]:
    """Time every layer of an ORT session with ORT's own node profiler.

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
        ``detail["provider"]`` names the execution provider(s) its kernels ran on, and
        ``detail["fallback"]`` those other than the session's (see `mark_fallbacks`).

    Raises:
        BackendError: ORT could not build the profiling session or wrote no trace.

    Example:
        >>> s = wb.backend("onnxruntime").compile(m, "cpu")
        >>> [(t.layer, t.detail.get("fused_into")) for t in s.run_layers(x, repeats=10)]
    """
    onnx_model = _named_nodes(session.model.to_onnx())
    with session.profiled_trace(inputs, repeats + 1, onnx_model) as (trace_path, _):
        runs = read_trace(trace_path)
    runs = runs[-repeats:] if len(runs) > repeats else runs  # drop the warm-up run
    optimized = optimized_graph(onnx_model, session.options.optimization, session.provider)
    assert onnx_model.proto is not None
    node_map = map_kernels(onnx_model.proto, optimized)
    return mark_fallbacks(timings_from_runs(runs, node_map), session.provider)


def _named_nodes(onnx_model: Model) -> Model:
    """The graph with every node named uniquely, so each kernel in the trace is traceable.

    Unnamed or duplicate nodes get ``<op>_<index>`` (the canonical name an unnamed node
    already has); layer metadata is untouched, so canonical layers do not change.
    """
    proto = onnx_model.proto
    assert proto is not None
    names = [n.name for n in proto.graph.node]
    if all(names) and len(set(names)) == len(names):
        return onnx_model
    from workbench.loaders.onnx import canonical_layer_name
    from workbench.model import LAYER_KEY, set_layer_name

    copy = type(proto)()
    copy.CopyFrom(proto)
    seen: set[str] = set()
    for index, node in enumerate(copy.graph.node):
        if not any(kv.key == LAYER_KEY for kv in node.metadata_props):
            set_layer_name(node, canonical_layer_name(node, index))
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)
    return onnx_model.derive(proto=copy, parent=onnx_model.parent)
