"""ONNX Runtime options: the typed `compile` options and the one builder of ``SessionOptions``.

Every ``onnxruntime.InferenceSession`` workbench creates (the backend's sessions, the
profiling copy, the optimized-graph dump, the cost model's shape probe, the quantizer's
Conv+BatchNorm folding) gets its ``SessionOptions`` from `session_options`, so the level
names, the log level and the profiling set-up are written once.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import onnxruntime

#: graph optimisation levels; ``"disable"`` is an older spelling of ``"disabled"``
Optimization = Literal["disabled", "basic", "extended", "all", "disable"]
#: optimisation level name -> ``onnxruntime.GraphOptimizationLevel`` member
_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass(frozen=True)
class OrtOptions:
    """Options of the onnxruntime backend's ``compile``.

    Attributes:
        threads: intra-op threads (None or 0: ORT's default, one per physical core,
            capped on the CPU by the CPUs free here; see `intra_op_threads`).
        optimization: graph optimisation level, ``"disabled" | "basic" | "extended" |
            "all"`` (``"disable"`` is accepted for ``"disabled"``).
        provider: an execution provider of the installed build
            (``onnxruntime.get_available_providers()``) to run instead of the device's
            own, e.g. ``"TensorrtExecutionProvider"`` on ``cuda:0``; nodes it cannot run
            fall back to the CPU provider (the per-layer ``provider`` column shows where).
        profiling: enable ORT's node profiler (the trace `run_layers` reads).
        spinning: whether idle intra-op threads spin-wait for work (ORT's default, True)
            or sleep. A spinning pool keeps a core busy for a while after each run, which
            slows whatever runs next on that core: another runtime's part in a pipeline
            placed on the same CPU (docs/placement.md).

    Example:
        >>> wb.backend("onnxruntime").compile(m, "cpu", threads=1, optimization="basic")
    """

    threads: int | None = None
    optimization: Optimization = "all"
    provider: str | None = None
    profiling: bool = False
    spinning: bool = True

    def __post_init__(self) -> None:
        if self.optimization == "disable":  # one spelling downstream (labels, stored options)
            object.__setattr__(self, "optimization", "disabled")


def ort_default_threads() -> int:
    """The intra-op threads ORT picks by itself: one per physical core."""
    import os

    import psutil

    return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def intra_op_threads(threads: int | None, device: str = "cpu") -> int:
    """The intra-op threads a session runs with: ``threads`` when given, else ORT's own
    default capped by the CPUs free here (`workbench.backends.cpus.default_threads`).

    ORT counts the machine's physical cores, not a container's quota, and its pool
    spins on every core it has; capped, a quiet machine keeps ORT's count and a busy one
    gets no thread more than it has free CPUs for. Other devices keep ORT's default.
    """
    if threads:
        return threads
    own = ort_default_threads()
    if device != "cpu":
        return own
    from workbench.backends.cpus import default_threads

    return default_threads(own)


def session_options(
    optimization: str = "all",
    *,
    threads: int | None = None,
    profiling: bool = False,
    optimized_model_filepath: str | None = None,
    spinning: bool = True,
    shared_pool: bool = False,
) -> onnxruntime.SessionOptions:
    """``onnxruntime.SessionOptions`` for an optimisation level name, quiet (errors only).

    Args:
        optimization: ``"disabled" | "basic" | "extended" | "all"`` (or ``"disable"``).
        threads: intra-op threads; None or 0 keeps ORT's default.
        profiling: enable the node profiler, writing into a new temporary folder (the
            caller deletes it: it is the parent of ``end_profiling()``'s path).
        optimized_model_filepath: where ORT writes the graph it will run, if anywhere.
        spinning: False: idle intra-op threads sleep instead of spin-waiting (ORT's
            ``session.intra_op.allow_spinning``).
        shared_pool: True: the session runs on the process's global thread pool
            (``use_per_session_threads`` off; ``threads`` is the pool's), which the process
            must have made before its first session
            (`workbench.backends.onnxruntime.decoder_blocks.time_blocks` does, in a
            process of its own: ORT refuses per-session pools after it).

    Returns:
        New options; nothing process-wide is changed.

    Example:
        >>> opts = session_options("basic", optimized_model_filepath="/tmp/folded.onnx")
        >>> onnxruntime.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[optimization])
    # fatal only: a failed run reaches the caller as an exception (one line on the CLI);
    # ORT's own error log would print the same failure a second time
    opts.log_severity_level = 4
    if threads and not shared_pool:
        opts.intra_op_num_threads = threads
    if profiling:
        opts.enable_profiling = True
        opts.profile_file_prefix = tempfile.mkdtemp(prefix="wb-ort-") + "/ort"
    if optimized_model_filepath:
        opts.optimized_model_filepath = optimized_model_filepath
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if shared_pool:
        opts.use_per_session_threads = False
    return opts
