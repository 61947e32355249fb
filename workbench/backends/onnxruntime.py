"""ONNX Runtime, one device per available execution provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import (
    Availability,
    Inputs,
    LayerTiming,
    Support,
    check_device,
    register,
)
from workbench.errors import BackendError, DeviceUnavailableError, InputError

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
_OPT_LEVELS = ("disable", "basic", "extended", "all")


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


@register("onnxruntime")
class OnnxRuntimeBackend:
    """ONNX Runtime with each available execution provider as a device.

    Options for `compile`: ``threads`` (intra-op threads), ``optimization``
    (``"disable" | "basic" | "extended" | "all"``, default ``"all"``), ``profiling``
    (enable ORT's node profiler, used by `run_layers`).
    """

    name = "onnxruntime"

    def availability(self) -> Availability:
        try:
            import onnxruntime as ort
        except ImportError:
            return Availability(False, "onnxruntime is not installed: pip install onnxruntime")
        providers = ort.get_available_providers()
        details = {PROVIDER_DEVICES[p]: p for p in providers if p in PROVIDER_DEVICES}
        return Availability(True, version=ort.__version__, details=details)

    def devices(self) -> list[str]:
        availability = self.availability()
        return list(availability.details) if availability.ok else []

    def supports(self, model: Model) -> Support:
        return Support(True)

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> OrtSession:
        check_device(self, device)
        return OrtSession(model, device, **options)


class OrtSession:
    """An ``onnxruntime.InferenceSession`` on one execution provider."""

    backend = "onnxruntime"

    def __init__(
        self,
        model: Model,
        device: str,
        *,
        threads: int | None = None,
        optimization: str = "all",
        profiling: bool = False,
        **options: Any,
    ):
        if options:
            raise BackendError(
                f"unknown onnxruntime option(s): {sorted(options)}; known: threads, "
                "optimization, profiling"
            )
        if optimization not in _OPT_LEVELS:
            raise BackendError(f"optimization must be one of {_OPT_LEVELS}, got {optimization!r}")
        self.model = model
        self.device = device
        self.options = {"threads": threads, "optimization": optimization}
        self.provider = provider_for(device)
        self._profiling = profiling
        self.session = self._create(threads, optimization, profiling)

    def _create(
        self, threads: int | None, optimization: str, profiling: bool
    ) -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel,
            {
                "disable": "ORT_DISABLE_ALL",
                "basic": "ORT_ENABLE_BASIC",
                "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL",
            }[optimization],
        )
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        if profiling:
            import tempfile

            opts.enable_profiling = True
            opts.profile_file_prefix = tempfile.mkdtemp(prefix="wb-ort-") + "/ort"
        providers = [self.provider] + (
            ["CPUExecutionProvider"] if self.provider != "CPUExecutionProvider" else []
        )
        try:
            session = ort.InferenceSession(
                self.model.to_onnx().onnx_bytes, opts, providers=providers
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

    def _feeds(self, inputs: Inputs) -> dict[str, np.ndarray]:
        return self.model.check_inputs(inputs)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self.session.run(None, feeds))
        except Exception as exc:
            text = str(exc)
            if "out of memory" in text.lower() or "Failed to allocate" in text:
                raise BackendError(
                    f"out of memory on {self.device} running {self.model.name!r}: "
                    "use a smaller batch size"
                ) from exc
            raise InputError(f"onnxruntime failed to run {self.model.name!r}: {text}") from exc

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        return self._run(self._feeds(inputs))

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        feeds = self._feeds(inputs)
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
        from workbench.profiling.layers import onnxruntime_layer_timings

        return onnxruntime_layer_timings(self, inputs, repeats)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
