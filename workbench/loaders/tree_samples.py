"""The tree-ensemble samples and their tables (``wb.samples`` lists them with the rest).

Trained by ``sample_models/trees_train.py`` (see its docstring for data and recipes):
``trees-gbm`` (XGBoost, 300 trees), ``trees-forest`` (random forest, 100 trees) and
``trees-anomaly`` (IsolationForest, 200 trees). Each loads from its committed
``model.onnx`` as an ONNX `Model` with its card in ``metadata["card"]``; ``trees-gbm``
also loads XGBoost's own ``model.ubj`` (a format that runs no code) when XGBoost is
installed, so the ``native`` backend can run it. Features are min-max scaled to [0, 1]
on each training split.

Example:
    >>> m = wb.samples.load("trees-gbm")
    >>> data = wb.samples.dataset("trees-gbm", split="test")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data import Dataset
from workbench.errors import ModelLoadError, WorkbenchError
from workbench.model import Model

NAMES = ("trees-forest", "trees-gbm", "trees-anomaly")
DATASETS = ("tabular", "breast-cancer", "anomalies")
_SPLITS = ("train", "test", "all")


def info(folder: Path, name: str) -> dict[str, Any]:
    """The card of sample ``name`` in ``folder`` (the samples folder)."""
    path = folder / name / "card.json"
    if not path.is_file():
        raise ModelLoadError(
            f"sample {name!r} has no card at {path}; run python sample_models/trees_train.py {name}"
        )
    card: dict[str, Any] = json.loads(path.read_text())
    return card


def load(folder: Path, name: str) -> Model:
    """Sample ``name`` as an ONNX `Model` (with XGBoost's own model where it ships one)."""
    from workbench.loaders.onnx import load_onnx

    card = info(folder, name)
    model = load_onnx(folder / name / "model.onnx", name=name)
    model.source = f"sample:{name}"
    model.metadata["card"] = card
    keys = ("library", "library_version", "estimator", "task", "converter")
    model.metadata["trees"] = {k: card[k] for k in keys if k in card}
    native = folder / name / "model.ubj"
    if native.is_file():
        try:
            import xgboost
        except ImportError:  # the ONNX model still runs everywhere else
            return model
        from workbench.loaders.trees import native_of

        model.metadata["native"] = native_of(xgboost.Booster(model_file=str(native)))
    return model


def dataset(folder: Path, name: str, split: str = "test", batch_size: int = 64) -> Dataset:
    """A tree sample's table: float32 features ``(N, features)`` and int64 labels."""
    if name in NAMES:
        name = str(info(folder, name)["dataset"])
    if name not in DATASETS:
        raise WorkbenchError(f"unknown dataset {name!r}; tree datasets: {list(DATASETS)}")
    if split not in _SPLITS:
        raise WorkbenchError(f"unknown split {split!r}; choose one of {list(_SPLITS)}")
    path = folder / name / f"{name}.npz"
    if not path.is_file():
        raise ModelLoadError(
            f"dataset file {path} is missing; run python sample_models/trees_train.py"
        )
    with np.load(path) as arrays:
        x, y = arrays["x"], arrays["y"]
        if split != "all":
            x, y = x[arrays[f"{split}_idx"]], y[arrays[f"{split}_idx"]]
    return Dataset(x.astype(np.float32), y.astype(np.int64), batch_size, f"{name}/{split}")
