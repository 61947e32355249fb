"""`OnnxRuntimeSession`: an ``onnxruntime.InferenceSession`` on one execution provider."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import Inputs, LayerMethod, LayerTiming, MemoryReport
from workbench.backends.onnxruntime.layers import onnxruntime_layer_timings
from workbench.backends.onnxruntime.memory import onnxruntime_memory
from workbench.backends.onnxruntime.options import (
    OrtOptions,
    intra_op_threads,
    ort_default_threads,
)
from workbench.backends.onnxruntime.plain import plain_session
from workbench.errors import BackendError, DeviceUnavailableError, InputError, out_of_memory

if TYPE_CHECKING:
    import onnxruntime

    from workbench.model import Model

#: execution provider -> the device name users type
PROVIDER_DEVICES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda:0",
    "TensorrtExecutionProvider": "tensorrt:0",
    "ROCMExecutionProvider": "rocm:0",
    "MIGraphXExecutionProvider": "migraphx:0",
    "OpenVINOExecutionProvider": "openvino",
    "DmlExecutionProvider": "dml:0",
    "CoreMLExecutionProvider": "coreml",
    "QNNExecutionProvider": "qnn",
    "XnnpackExecutionProvider": "xnnpack",
    "DnnlExecutionProvider": "dnnl",
}


TENSORRT = "TensorrtExecutionProvider"


def provider_chain(provider: str, available: list[str]) -> list[str]:
    """Providers to ask for, in preference order: ``provider``, then where its nodes fall back.

    TensorRT hands the nodes it cannot build to CUDA (when present), and every provider
    falls back to the CPU, so a model always loads and the trace shows what ran where.
    """
    chain = [provider]
    if provider == TENSORRT and "CUDAExecutionProvider" in available:
        chain.append("CUDAExecutionProvider")
    return list(dict.fromkeys([*chain, "CPUExecutionProvider"]))


def _shapes(feeds: Mapping[str, np.ndarray]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(a.shape) for a in feeds.values())


def provider_for(device: str) -> str:
    """The execution provider serving ``device`` (``"cuda:0"`` -> ``CUDAExecutionProvider``)."""
    kind = device.split(":")[0]
    for provider, name in PROVIDER_DEVICES.items():
        if name.split(":")[0] == kind:
            return provider
    raise DeviceUnavailableError(
        f"onnxruntime has no execution provider for device {device!r}; "
        f"devices are named {sorted(set(PROVIDER_DEVICES.values()))}"
    )


class OnnxRuntimeSession:
    """An ``onnxruntime.InferenceSession`` on one execution provider.

    Attributes:
        model: the model it was compiled from.
        device: the device string.
        options: the validated `OrtOptions`.
        provider: the execution provider serving ``device``.
        session: the ``onnxruntime.InferenceSession``.
        threads: the intra-op threads it runs with (see `intra_op_threads`).
    """

    backend = "onnxruntime"

    def __init__(self, model: Model, device: str, options: OrtOptions | None = None) -> None:
        self.model = model
        self.device = device
        self.options = options or OrtOptions()
        self.provider = self.options.provider or provider_for(device)
        self.threads = intra_op_threads(self.options.threads, device)
        #: facts a profile of this session reports (TensorRT's engine build)
        self.notes: list[str] = []
        self.session = self._create()
        if self.provider == TENSORRT:
            self._build_engine()

    def _build_engine(self) -> None:
        """Run once so TensorRT builds its engine now: ``compile`` (compile_s) holds it.

        TensorRT builds an engine for the shapes it first meets; another batch size
        builds again, which `runner` does before timing and reports in `notes`.
        """
        seconds = self._warm(self.stage(self.model.example_inputs(1)))
        self.notes.append(
            f"TensorRT built its engine in {seconds:.2f} s while compiling (in compile_s), "
            "for batch 1"
        )

    def _warm(self, feeds: dict[str, np.ndarray]) -> float:
        """Seconds of one run on ``feeds`` (for TensorRT: an engine build for new shapes)."""
        started = time.perf_counter()
        self.run_staged(feeds)
        self._built_shapes.add(_shapes(feeds))
        return time.perf_counter() - started

    def _create(self) -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        self._built_shapes: set[tuple[tuple[int, ...], ...]] = set()
        available = ort.get_available_providers()
        if self.provider not in available:
            raise DeviceUnavailableError(
                f"execution provider {self.provider!r} is not in this onnxruntime build; "
                f"available: {', '.join(available)}"
            )
        own = ort_default_threads()
        graph = self.model.to_onnx().onnx_bytes  # an export failure says so itself
        try:
            session = plain_session(
                graph,
                optimization=self.options.optimization,
                # ORT's own default stays ORT's choice; only a cap or the user's count is set
                threads=self.options.threads or (self.threads if self.threads < own else None),
                profiling=self.options.profiling,
                providers=provider_chain(self.provider, available),
                spinning=self.options.spinning,
            )
        except Exception as exc:  # ORT raises its own exception types per failure kind
            raise BackendError(
                f"onnxruntime could not load {self.model.name!r} on {self.device}: {exc}"
            ) from exc
        if session.get_providers()[0] != self.provider:
            raise DeviceUnavailableError(
                f"onnxruntime could not start {self.provider} for {self.device}; "
                "check the GPU driver and the onnxruntime-gpu install"
            )
        return session

    def profiling_copy(self, model: Model) -> OnnxRuntimeSession:
        """A new session of ``model`` with these options and ORT's node profiler on.

        `run_layers` profiles a copy so that this session's own runs stay unprofiled.
        """
        return OnnxRuntimeSession(
            model, self.device, dataclasses.replace(self.options, profiling=True)
        )

    @contextlib.contextmanager
    def profiled_trace(
        self, inputs: Inputs, runs: int, model: Model | None = None
    ) -> Iterator[tuple[Path, dict[str, np.ndarray]]]:
        """ORT's node-profiler trace of ``runs`` runs of a profiling copy (`profiling_copy`).

        Args:
            inputs: model inputs.
            runs: runs to trace (all of them, warm-up runs included).
            model: the model the copy runs (default: this session's; the per-layer timing
                passes one with every node named).

        Yields:
            The trace file ``end_profiling()`` wrote and the staged feeds it ran. The copy
            is closed and the trace's folder deleted on exit; this session is never
            profiled.
        """
        prof = self.profiling_copy(model or self.model)
        trace_path = ""
        try:
            feeds = prof.stage(inputs)
            for _ in range(runs):
                prof.run_staged(feeds)
            trace_path = prof.session.end_profiling()
            yield Path(trace_path), feeds
        finally:
            prof.close()
            if trace_path:
                shutil.rmtree(Path(trace_path).parent, ignore_errors=True)

    def stage(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """The inputs validated, by input name: what `run_staged` takes.

        Raises:
            InputError: an input is missing or has the wrong shape or dtype.
        """
        return self.model.check_inputs(inputs)

    def run_staged(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One run on `stage`'s feeds; the outputs as numpy arrays (synchronises).

        Raises:
            BackendError: the provider ran out of memory (the line gives the input sizes).
            InputError: ORT failed on these inputs (its message quoted).
        """
        try:
            return list(self.session.run(None, feeds))
        except Exception as exc:
            text = str(exc)
            if "out of memory" in text.lower() or "Failed to allocate" in text:
                raise out_of_memory(self.device, self.model.name, feeds.items()) from exc
            raise InputError(f"onnxruntime failed to run {self.model.name!r}: {text}") from exc

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        return self.run_staged(self.stage(inputs))

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        feeds = self.stage(inputs)
        if self.provider == TENSORRT and _shapes(feeds) not in self._built_shapes:
            seconds = self._warm(feeds)  # an engine build must never be timed as inference
            self.notes.append(
                f"TensorRT built an engine for input shapes {list(_shapes(feeds))} in "
                f"{seconds:.2f} s before timing (not in compile_s, not in latency)"
            )
        if self.provider == "CPUExecutionProvider":
            return lambda: self.session.run(None, feeds)
        return self._device_runner(feeds)

    def _device_runner(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """Inputs and outputs bound on the device, so timing excludes host copies."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        kind, _, index = self.device.partition(":")
        device_id = int(index or 0)
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(
                array, kind.replace("tensorrt", "cuda"), device_id
            )
            binding.bind_ortvalue_input(name, value)
        for output in self.session.get_outputs():
            binding.bind_output(output.name, kind.replace("tensorrt", "cuda"), device_id)

        def run_once() -> None:
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run_once

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """Per-layer timings from ORT's node profiler (see `onnxruntime_layer_timings`)."""
        return onnxruntime_layer_timings(self, inputs, repeats)

    def layer_methods(self) -> Mapping[str, LayerMethod]:
        """Only the node profiler: ``{"default": run_layers}``."""
        return {"default": self.run_layers}

    def memory(self, inputs: Inputs) -> MemoryReport:
        """ORT's arena statistics of a profiled copy (see `onnxruntime_memory`)."""
        return onnxruntime_memory(self, inputs)

    def settings(self) -> AbstractContextManager[None]:
        """Nothing process-wide to apply: ORT's threads belong to the session."""
        return contextlib.nullcontext()

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
