"""``native``: a tree library's own predict, the baseline its users have today.

A tree `Model` loaded from a scikit-learn, XGBoost or LightGBM object (or their files)
keeps the library object (`workbench.loaders.trees.Native`); this backend calls its
``predict`` / ``predict_proba`` and returns the outputs in the converted graph's order,
shapes and dtypes, so it lines up with ONNX Runtime and the Numba kernel. Each library
runs at its own defaults (its own thread count). A model loaded from an ONNX file, or
derived by a transform, has no library object: `supports` says so.

Per-layer timing is the whole predict call, reported as one row: the library does not
expose its stages.

Example:
    >>> m = wb.load(xgb_classifier, example_inputs=x)
    >>> label, proba = wb.backend("native").compile(m).run({"input": x})
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.backends.base import (
    Availability,
    Inputs,
    LayerMethod,
    LayerTiming,
    Support,
    check_device,
    check_supported,
    parse_options,
    register,
)
from workbench.model import Model

__all__ = ["NativeBackend", "NativeOptions", "NativeSession"]

#: the per-layer row of a model whose stages the library runs in one call
WHOLE_CALL = "(predict)"


@dataclass(frozen=True)
class NativeOptions:
    """Options of the ``native`` backend's ``compile``: none (each library's defaults)."""


@register("native")
class NativeBackend:
    """The library's own predict for tree models loaded from a library object."""

    name = "native"

    def availability(self) -> Availability:
        """Always available: it runs whatever library the model came from."""
        return Availability(True, details={"cpu": "the tree library's own predict"})

    def devices(self) -> list[str]:
        """``["cpu"]``."""
        return ["cpu"]

    def supports(self, model: Model) -> Support:
        """Whether ``model`` still holds the library object it was converted from."""
        if model.metadata.get("native") is not None:
            return Support(True)
        why = "it has no tree-library object: load the scikit-learn, XGBoost or LightGBM model"
        if model.recipe:
            why = "a transformed model has no tree-library object behind it"
        return Support(False, (why,))

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> NativeSession:
        """A session calling the library's predict; never changes ``model``.

        Raises:
            BackendOptionError: any option (native takes none).
            DeviceUnavailableError: ``device`` is not ``"cpu"``.
            UnsupportedModelError: the model has no library object.
        """
        parse_options(NativeOptions, self.name, options)
        check_device(self, device)
        check_supported(self, model)
        return NativeSession(model, device)


class NativeSession:
    """A model's library object, called like a compiled session."""

    backend = "native"

    def __init__(self, model: Model, device: str) -> None:
        self.model, self.device = model, device
        self._predict: Callable[[np.ndarray], list[np.ndarray]] = model.metadata["native"].predict

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        """Predict once; outputs in the ONNX graph's order, shapes and dtypes."""
        (x,) = self.model.check_inputs(inputs).values()
        return self._shaped(self._predict(x), len(x))

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        """One predict call on inputs validated once."""
        (x,) = self.model.check_inputs(inputs).values()
        return lambda: self._predict(x)

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """The whole predict call ``repeats`` times, as one row (the model's single layer,
        or `WHOLE_CALL` when it has stages the library does not time apart)."""
        call = self.runner(inputs)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1e3)
        layers = self.model.layers
        name, op = (layers[0].name, layers[0].op_type) if len(layers) == 1 else (WHOLE_CALL, "")
        library = self.model.metadata.get("trees", {}).get("library", "")
        return [LayerTiming(name, op or "predict", tuple(samples), {"library": library})]

    def layer_methods(self) -> Mapping[str, LayerMethod]:
        return {"default": self.run_layers}

    def settings(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        pass

    def _shaped(self, outputs: list[np.ndarray], rows: int) -> list[np.ndarray]:
        shaped = []
        for spec, out in zip(self.model.outputs, outputs, strict=True):
            array = np.asarray(out).astype(spec.dtype, copy=False)
            shaped.append(array.reshape(rows, -1) if len(spec.shape) == 2 else array.ravel())
        return shaped
