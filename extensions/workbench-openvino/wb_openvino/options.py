"""The typed ``compile`` options of the openvino backend and the OpenVINO config built from them.

Every compiled model the plugin makes (the timed session and its profiling copy) gets its
configuration from `compile_config`, so the property names are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Hint = Literal["latency", "throughput"]
Precision = Literal["f32", "bf16", "f16"]


@dataclass(frozen=True)
class OpenVinoOptions:
    """Options of the openvino backend's ``compile``.

    Attributes:
        hint: OpenVINO's performance hint: ``"latency"`` (one stream, every core on one
            request) or ``"throughput"`` (several streams sharing the cores, for concurrent
            requests; a single request then gets a share of the cores).
        threads: inference threads on the CPU (None or 0: OpenVINO's default, one per
            physical core, capped by the CPUs free here; see `cpu_threads`).
        precision: inference precision, ``"f32" | "bf16" | "f16"``. OpenVINO's own
            default on CPUs with bf16 units is bf16, which does not match other runtimes
            within float32 tolerances; workbench defaults to ``"f32"`` so that outputs do,
            and ``precision="bf16"`` gives OpenVINO's native choice. INT8 (QDQ) models
            run their int8 kernels whatever this says.
        profiling: enable OpenVINO's performance counters (what `run_layers` reads).

    Example:
        >>> wb.backend("openvino").compile(m, "cpu", hint="throughput", threads=2)
    """

    hint: Hint = "latency"
    threads: int | None = None
    precision: Precision = "f32"
    profiling: bool = False


def compile_config(options: OpenVinoOptions, ov_device: str) -> dict[str, Any]:
    """The ``Core.compile_model`` config for ``options`` on an OpenVINO device name.

    Args:
        options: validated options.
        ov_device: OpenVINO's device name (``"CPU"``, ``"GPU.0"``, ``"NPU"``).

    Returns:
        A property dict; nothing process-wide is changed.
    """
    from wb_openvino.runtime import openvino

    ov = openvino()
    props = ov.properties
    config: dict[str, Any] = {
        props.hint.performance_mode(): getattr(props.hint.PerformanceMode, options.hint.upper()),
        props.hint.inference_precision(): getattr(ov.Type, options.precision),
        props.enable_profiling(): options.profiling,
    }
    threads = cpu_threads(options) if ov_device == "CPU" else None
    if threads:
        config[props.inference_num_threads()] = threads
    return config


def cpu_threads(options: OpenVinoOptions) -> int | None:
    """CPU inference threads: the option, else OpenVINO's own default (one per physical
    core) capped by the CPUs free here (`workbench.backends.cpus.default_threads`);
    None where that cap leaves OpenVINO's own choice.

    OpenVINO counts the machine's cores, not a container's quota, and one request's
    threads wait for each other: a core held by another process stalls them all.
    """
    if options.threads:
        return options.threads
    import os

    import psutil

    from workbench.backends.cpus import default_threads

    own = int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    chosen = default_threads(own)
    return chosen if chosen < own else None
