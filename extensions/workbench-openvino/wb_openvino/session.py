"""`OpenVinoSession`: a model compiled by OpenVINO for one device, with one infer request."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from wb_openvino.options import OpenVinoOptions, compile_config
from workbench.backends.base import Inputs, LayerMethod, LayerTiming
from workbench.errors import BackendError, InputError, out_of_memory

if TYPE_CHECKING:
    import openvino

    from workbench.model import Model


class OpenVinoSession:
    """A model read by OpenVINO's ONNX frontend and compiled for one device.

    Attributes:
        model: the model it was compiled from.
        device: the workbench device name (``"cpu"``, ``"gpu:0"``, ``"npu"``).
        ov_device: OpenVINO's name for it (``"CPU"``, ``"GPU.0"``, ``"NPU"``).
        options: the validated `OpenVinoOptions`.
        compiled: the ``openvino.CompiledModel``.
        request: the infer request every run uses.
        threads: the inference threads the compiled model uses on the CPU (None elsewhere).
    """

    backend = "openvino"

    def __init__(
        self,
        model: Model,
        device: str,
        ov_device: str,
        options: OpenVinoOptions,
        core: openvino.Core,
    ) -> None:
        self.model, self.device, self.ov_device, self.options = model, device, ov_device, options
        self._core = core
        ov_model = read_onnx(core, model)
        try:
            self.compiled = core.compile_model(
                ov_model, ov_device, compile_config(options, ov_device)
            )
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses per plugin
            raise BackendError(
                f"openvino could not compile {model.name!r} for {ov_device}: {_first_line(exc)}"
            ) from exc
        self.request = self.compiled.create_infer_request()
        self.threads = _cpu_threads(self.compiled) if ov_device == "CPU" else None

    def profiling_copy(self) -> OpenVinoSession:
        """A new session with these options and the performance counters on.

        `run_layers` profiles a copy so that this session's own runs stay uncounted.
        """
        options = dataclasses.replace(self.options, profiling=True)
        return OpenVinoSession(self.model, self.device, self.ov_device, options, self._core)

    def feeds(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Validated inputs by name, C-contiguous so OpenVINO can read them in place."""
        return {k: np.ascontiguousarray(v) for k, v in self.model.check_inputs(inputs).items()}

    def _infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            result = self.request.infer(feeds, share_inputs=True)
        except Exception as exc:
            text = _first_line(exc)
            if "out of memory" in text.lower() or "allocate" in text.lower():
                raise out_of_memory(self.device, self.model.name, feeds.items()) from exc
            raise InputError(f"openvino failed to run {self.model.name!r}: {text}") from exc
        return [np.asarray(result[out]) for out in self.compiled.outputs]

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        """Run once; the outputs are copies (synchronises)."""
        return self._infer(self.feeds(inputs))

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        """One synchronous inference on inputs validated once (outputs copied, as ORT's)."""
        feeds = self.feeds(inputs)
        return lambda: self.request.infer(feeds, share_inputs=True)

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """Per-layer timings from OpenVINO's performance counters (see `wb_openvino.layers`)."""
        from wb_openvino.layers import openvino_layer_timings

        return openvino_layer_timings(self, inputs, repeats)

    def layer_methods(self) -> Mapping[str, LayerMethod]:
        """Only the performance counters: ``{"default": run_layers}``."""
        return {"default": self.run_layers}

    def settings(self) -> AbstractContextManager[None]:
        """Nothing process-wide to apply: OpenVINO's threads belong to the compiled model."""
        return contextlib.nullcontext()

    def close(self) -> None:
        self.request = None  # type: ignore[assignment]
        self.compiled = None  # type: ignore[assignment]


def read_onnx(core: openvino.Core, model: Model) -> openvino.Model:
    """``model`` (its ONNX export for a torch model) read by OpenVINO's ONNX frontend.

    Raises:
        BackendError: the frontend cannot convert it (e.g. an op it has no rule for).
    """
    try:
        return core.read_model(model=model.to_onnx().onnx_bytes)
    except Exception as exc:  # the frontend raises OpConversionFailure and RuntimeError
        raise BackendError(f"openvino cannot read {model.name!r}: {_first_line(exc)}") from exc


def _cpu_threads(compiled: openvino.CompiledModel) -> int | None:
    """The inference threads OpenVINO settled on (None where it does not say)."""
    try:
        return int(compiled.get_property("INFERENCE_NUM_THREADS")) or None
    except Exception:  # an OpenVINO version without the property
        return None


def _first_line(exc: BaseException) -> str:
    """The informative part of an OpenVINO message (it starts with C++ source locations).

    A conversion failure's summary lines (``-- No conversion rule found for operations:
    custom.Foo``) are the reason; otherwise the first line that is not a location.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    summary = [line.removeprefix("-- ") for line in lines if line.startswith("-- ")]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return "; ".join(summary) or (useful or lines or [type(exc).__name__])[0]
