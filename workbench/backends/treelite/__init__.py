"""``treelite``: tree models compiled to native code by treelite and tl2cgen.

A tree `Model` loaded from an XGBoost or LightGBM booster (object or file) or a
scikit-learn tree ensemble keeps the library object; treelite's frontends read it
(``treelite.frontend.from_xgboost`` / ``from_lightgbm``, ``treelite.sklearn.import_model``)
and tl2cgen writes the trees as C if/else code and compiles it with the machine's C
compiler into a shared library, which this backend loads and calls. The outputs are
shaped as the converted ONNX graph's (label and probabilities, or the predictions).

Compiling takes seconds (minutes for thousands of trees), so each library is cached in
``$WORKBENCH_CACHE_DIR/treelite`` (default ``~/.cache/workbench/treelite``) under a hash
of the model's graph, the treelite and tl2cgen versions and the compiler: a second
``compile`` of the same model loads it at once.

Unavailable, with the reason, when treelite or tl2cgen is not installed (``pip install
'inference-workbench[trees]'``) or no C compiler (``gcc`` or ``clang``) is on the ``PATH``. A model
loaded from an ONNX file or derived by a transform has no library object for treelite's
frontends to read (treelite has no ONNX frontend), and an IsolationForest's scores follow
rules the compiled code does not: `supports` says so.

Per-layer timing is the whole predict call, reported as one row, as for ``native``.

Example:
    >>> m = wb.load(xgb_classifier, example_inputs=x)
    >>> label, proba = wb.backend("treelite").compile(m).run({"input": x})
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.backends.base import (
    Availability,
    Support,
    cache_dir,
    check_device,
    check_supported,
    parse_options,
    register,
)
from workbench.backends.native import NativeSession
from workbench.errors import BackendError, UnsupportedModelError
from workbench.model import Model

__all__ = ["TreeliteBackend", "TreeliteOptions", "TreeliteSession"]

#: trees per C file: tl2cgen splits bigger ensembles into files compiled in parallel
TREES_PER_FILE = 100


@dataclass(frozen=True)
class TreeliteOptions:
    """Options of the ``treelite`` backend's ``compile``.

    Attributes:
        threads: threads of tl2cgen's predictor (None: its default, every core).
    """

    threads: int | None = None


@register("treelite")
class TreeliteBackend:
    """Tree models compiled to a native library by treelite + tl2cgen."""

    name = "treelite"

    def availability(self) -> Availability:
        """Available when treelite and tl2cgen import and a C compiler is on the PATH."""
        try:
            import tl2cgen
            import treelite
        except ImportError:
            return Availability(
                False,
                "treelite and tl2cgen are not installed: pip install 'inference-workbench[trees]'",
            )
        if _compiler() is None:
            return Availability(
                False, "no C compiler (gcc or clang) on the PATH: tl2cgen compiles the trees as C"
            )
        version = f"treelite {treelite.__version__}, tl2cgen {tl2cgen.__version__}"
        return Availability(True, version=version, details={"cpu": f"compiled with {_compiler()}"})

    def devices(self) -> list[str]:
        """``["cpu"]`` when available, else none."""
        return ["cpu"] if self.availability().ok else []

    def supports(self, model: Model) -> Support:
        """Whether ``model`` holds a library object that treelite's frontends read."""
        native = model.metadata.get("native")
        if native is None:
            why = (
                "it has no tree-library object for treelite's frontends (treelite reads "
                "XGBoost, LightGBM and scikit-learn models, not ONNX): load the library's model"
            )
            if model.recipe:
                why = "a transformed model has no tree-library object for treelite to compile"
            return Support(False, (why,))
        if native.task == "anomaly":
            return Support(False, ("an outlier detector's scores are not compiled by tl2cgen",))
        return Support(True)

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> TreeliteSession:
        """Compile (or load from the cache) the model's trees; never changes ``model``.

        Raises:
            BackendOptionError: an unknown option or a bad value.
            DeviceUnavailableError: ``device`` is not ``"cpu"``, or treelite is unavailable.
            UnsupportedModelError: no library object, or treelite's frontend refuses it
                (its message is quoted).
            BackendError: the C compiler failed (its message is quoted).
        """
        config = parse_options(TreeliteOptions, self.name, options)
        check_device(self, device)
        check_supported(self, model)
        import tl2cgen

        library = compiled_library(model)
        predictor = tl2cgen.Predictor(str(library), nthread=config.threads)
        return TreeliteSession(model, device, predictor, library)


class TreeliteSession(NativeSession):
    """A compiled tree library, called like the library's own predict."""

    backend = "treelite"

    def __init__(self, model: Model, device: str, predictor: Any, library: Path) -> None:
        super().__init__(model, device)
        self.library = library
        task = model.metadata["native"].task
        classes = _class_labels(model) if task == "classifier" else None
        self._predict = _predict_with(predictor, classes)


def compiled_library(model: Model) -> Path:
    """The path of ``model``'s compiled library: from the cache, or compiled now.

    Raises:
        UnsupportedModelError: treelite's frontend cannot read the library object.
        BackendError: tl2cgen or the compiler failed.
    """
    import tl2cgen
    import treelite

    compiler = _compiler() or "gcc"
    key = hashlib.sha256(
        f"{model.fingerprint()}|{treelite.__version__}|{tl2cgen.__version__}|{compiler}".encode()
    ).hexdigest()[:24]
    path = _cache_dir() / f"{key}.so"
    if path.is_file():
        return path
    trees = _treelite_model(model)
    partial = path.with_name(f"{key}.{os.getpid()}.tmp.so")  # renamed when whole
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files = max(1, trees.num_tree // TREES_PER_FILE)
        tl2cgen.export_lib(
            trees, toolchain=compiler, libpath=str(partial), params={"parallel_comp": files}
        )
    except (tl2cgen.TL2cgenError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise BackendError(
            f"treelite: compiling {model.name!r} failed: {_message_line(error)}"
        ) from None
    os.replace(partial, path)
    return path


def _treelite_model(model: Model) -> Any:
    """treelite's model of the library object behind ``model``."""
    import treelite
    import treelite.sklearn

    native = model.metadata["native"]
    estimator = native.estimator
    try:
        if native.library == "xgboost":
            booster = estimator.get_booster() if hasattr(estimator, "get_booster") else estimator
            return treelite.frontend.from_xgboost(booster)
        if native.library == "lightgbm":
            return treelite.frontend.from_lightgbm(getattr(estimator, "booster_", estimator))
        return treelite.sklearn.import_model(estimator)
    except (treelite.TreeliteError, TypeError, ValueError, NotImplementedError) as error:
        raise UnsupportedModelError(
            f"treelite cannot read {type(estimator).__name__}: {_message_line(error)}"
        ) from None


def _predict_with(predictor: Any, classes: np.ndarray | None) -> Any:
    """``predict(x)`` -> the graph's outputs from tl2cgen's ``(rows, targets, classes)``."""
    import tl2cgen

    def predict(x: np.ndarray) -> list[np.ndarray]:
        out = np.asarray(predictor.predict(tl2cgen.DMatrix(x, dtype="float32")))
        if classes is None:
            return [out.reshape(len(x), -1)]
        proba = out[:, 0, :]
        if proba.shape[1] == 1:  # a binary model gives the positive class's probability
            proba = np.concatenate([1 - proba, proba], axis=1)
        return [classes[np.argmax(proba, axis=1)], proba]

    return predict


def _class_labels(model: Model) -> np.ndarray:
    from workbench.loaders.trees import ensembles

    labels = next(ensembles(model.proto)).class_labels if model.proto is not None else None
    if labels is None or not len(labels):
        raise UnsupportedModelError(f"treelite: {model.name!r} has no integer class labels")
    return np.asarray(labels)


def _compiler() -> str | None:
    return next((c for c in ("gcc", "clang") if shutil.which(c)), None)


def _cache_dir() -> Path:
    return cache_dir() / "treelite"


def _message_line(error: BaseException) -> str:
    """The error's last non-empty line: compilers and treelite end with the error itself."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
