"""The ONNX reference evaluator as a workbench backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.backends.base import Availability, LayerTiming, Support, check_device
from workbench.errors import BackendError
from workbench.model import Model


class OnnxReferenceBackend:
    """Runs ONNX graphs with ``onnx.reference.ReferenceEvaluator`` on the CPU."""

    name = "onnx-reference"

    def availability(self) -> Availability:
        import onnx

        return Availability(
            True, version=onnx.__version__, details={"cpu": "onnx.reference (pure Python/numpy)"}
        )

    def devices(self) -> list[str]:
        return ["cpu"]

    def supports(self, model: Model) -> Support:
        return Support(True)

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> ReferenceSession:
        check_device(self, device)
        if options:
            raise BackendError(f"onnx-reference takes no options, got {sorted(options)}")
        return ReferenceSession(model, device)


class ReferenceSession:
    backend = "onnx-reference"

    def __init__(self, model: Model, device: str) -> None:
        from onnx.reference import ReferenceEvaluator

        self.model, self.device = model, device
        try:
            self._evaluator = ReferenceEvaluator(model.to_onnx().proto)
        except Exception as exc:  # the evaluator raises bare exceptions for unknown ops
            raise BackendError(f"onnx-reference cannot load {model.name!r}: {exc}") from exc

    def run(self, inputs: Any) -> list[np.ndarray]:
        feeds = self.model.check_inputs(inputs)
        return [np.asarray(o) for o in self._evaluator.run(None, feeds)]

    def runner(self, inputs: Any) -> Callable[[], Any]:
        feeds = self.model.check_inputs(inputs)
        return lambda: self._evaluator.run(None, feeds)

    def run_layers(self, inputs: Any, repeats: int = 10) -> list[LayerTiming]:
        raise BackendError(
            "onnx-reference has no per-layer profiler; profile end to end "
            "(wb.profile(..., layers=False)) or per layer on onnxruntime"
        )

    def close(self) -> None:
        self._evaluator = None
