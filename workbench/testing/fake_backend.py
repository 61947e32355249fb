"""A fake backend for tests and plugin authors: numpy reference execution, fake timings."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from workbench.backends.base import (
    Availability,
    Inputs,
    LayerMethod,
    LayerTiming,
    Support,
    check_device,
)
from workbench.model import Model


class FakeBackend:
    """Runs torch models eagerly on the CPU and reports fixed per-layer timings.

    It satisfies the `Backend` protocol without subclassing anything, which is what a
    plugin does. Register it with ``workbench.backends.base.register("fake")(FakeBackend)``.
    """

    name = "fake"

    def __init__(self, layer_ms: float = 1.0) -> None:
        self.layer_ms = layer_ms

    def availability(self) -> Availability:
        return Availability(True, version="0", details={"cpu": "fake device"})

    def devices(self) -> list[str]:
        return ["cpu"]

    def supports(self, model: Model) -> Support:
        ok = model.framework == "torch"
        return Support(ok, () if ok else ("the fake backend runs torch models only",))

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> FakeSession:
        check_device(self, device)
        return FakeSession(model, device, self.layer_ms)


class FakeSession:
    backend = "fake"

    def __init__(self, model: Model, device: str, layer_ms: float) -> None:
        self.model, self.device, self.layer_ms = model, device, layer_ms

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        import torch

        arrays = self.model.check_inputs(inputs)
        assert self.model.module is not None
        with torch.inference_mode():
            out = self.model.module(*(torch.from_numpy(a) for a in arrays.values()))
        return [out.numpy()]

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        arrays = self.model.check_inputs(inputs)
        return lambda: self.run(arrays)

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        return [
            LayerTiming(layer.name, layer.op_type, (self.layer_ms,) * repeats)
            for layer in self.model.layers
        ]

    def layer_methods(self) -> Mapping[str, LayerMethod]:
        return {"default": self.run_layers}

    def settings(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        pass
