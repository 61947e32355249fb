"""The one builder of ``onnxruntime.InferenceSession``: a session of a graph with explicit options.

The backend's sessions (`session`) are built here, and so is every session workbench uses
ORT as a tool rather than as the runtime being measured: the optimized-graph dump of the
per-layer timing, the cost model's shape probe, the embedding tables' id probe, the
machine ceilings' probes, the quantizer's Conv+BatchNorm folding, the decoder and the tree
loaders' check of a converted graph against its library. Options not given stay ORT's own
defaults (all graph optimisations, one intra-op thread per physical core), so a probe runs
ORT as shipped; the options themselves come from `options.session_options`.

Example:
    >>> session = plain_session(proto, optimization="disabled")
    >>> session.run(["hidden"], {"x": x})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.onnxruntime.options import session_options

if TYPE_CHECKING:
    import onnx
    import onnxruntime

    from workbench.model import Model

#: what `plain_session` runs by default: ORT's CPU provider
CPU_PROVIDERS = ("CPUExecutionProvider",)


def plain_session(
    graph: bytes | str | Path | onnx.ModelProto | Model,
    *,
    optimization: str = "all",
    threads: int | None = None,
    profiling: bool = False,
    optimized_model_filepath: str | None = None,
    providers: Sequence[str] = CPU_PROVIDERS,
    spinning: bool = True,
    shared_pool: bool = False,
) -> onnxruntime.InferenceSession:
    """A new ``onnxruntime.InferenceSession`` of ``graph`` (by default on the CPU).

    Args:
        graph: serialized ONNX bytes, the path of an ``.onnx`` file, an
            ``onnx.ModelProto`` or a `Model` (its ONNX graph; a torch model is exported).
        optimization: graph optimisation level, ``"disabled" | "basic" | "extended" |
            "all"`` (ORT's default).
        threads: intra-op threads; None keeps ORT's default (one per physical core).
        profiling: turn on ORT's node profiler (see `options.session_options`).
        optimized_model_filepath: where ORT writes the graph it will run, if anywhere.
        providers: execution providers in preference order.
        spinning: False: idle intra-op threads sleep instead of spin-waiting.
        shared_pool: True: the session runs on the process's global thread pool (see
            `options.session_options`).

    Returns:
        The session; nothing process-wide is changed. ORT's own exceptions propagate
        (each caller knows what a failure means for it).

    Example:
        >>> plain_session(model.onnx_bytes, threads=1).run(None, {"input": x})
    """
    import onnxruntime as ort

    options = session_options(
        optimization,
        threads=threads,
        profiling=profiling,
        optimized_model_filepath=optimized_model_filepath,
        spinning=spinning,
        shared_pool=shared_pool,
    )
    return ort.InferenceSession(_source(graph), options, providers=list(providers))


def run_plain(
    graph: bytes | str | Path | onnx.ModelProto | Model,
    feeds: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None = None,
    *,
    optimization: str = "all",
) -> list[np.ndarray]:
    """One run of ``graph`` on the CPU at ORT's defaults: ``outputs`` (default: all), as arrays.

    Example:
        >>> label, proba = run_plain(model, {"input": rows})
    """
    session = plain_session(graph, optimization=optimization)
    names = list(outputs) if outputs is not None else None
    return [np.asarray(value) for value in session.run(names, dict(feeds))]


def _source(graph: Any) -> bytes | str:
    """What ``InferenceSession`` reads: bytes, or a path as a string."""
    if isinstance(graph, bytes | str):
        return graph
    if isinstance(graph, Path):
        return str(graph)
    if hasattr(graph, "SerializeToString"):  # an onnx.ModelProto
        return bytes(graph.SerializeToString())
    return bytes(graph.to_onnx().onnx_bytes)  # a workbench Model
