"""Shipped, really trained sample models and their data (``wb.samples``).

Four classifiers of scikit-learn's 8x8 handwritten digits, trained by
``sample_models/train.py`` (deterministic, CPU, a few minutes in all): an MLP, a CNN,
a small transformer and a small ResNet. Each lives in ``sample_models/<name>/`` as
``weights.safetensors``, ``model.onnx`` (its export, reused by `Model.to_onnx`) and
``card.json`` (what it is and its accuracy on the held-out split).

The folder is found next to the package in a source checkout (workbench is installed
editable); set ``WORKBENCH_SAMPLES_DIR`` to use another copy.

Example:
    >>> import workbench as wb
    >>> wb.samples.names("digits")
    ['digits-mlp', 'digits-cnn', 'digits-transformer', 'digits-resnet']
    >>> m = wb.samples.load("digits-cnn")
    >>> data = wb.samples.dataset("digits", split="test")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data import Dataset
from workbench.errors import ModelLoadError, WorkbenchError
from workbench.model import Model

__all__ = ["dataset", "info", "load", "names", "samples_dir"]

#: environment variable naming the folder that holds the sample models
SAMPLES_DIR_ENV = "WORKBENCH_SAMPLES_DIR"

# Kept here rather than read from sample_archs so that listing samples imports no torch.
_NAMES = ("digits-mlp", "digits-cnn", "digits-transformer", "digits-resnet")
_DATASETS = ("digits",)
_SPLITS = ("train", "test", "all")


#: sample kinds: the neural networks on digits, the tree ensembles (docs/trees.md), the
#: recommendation models and the anomaly autoencoder (docs/recommendation.md)
KINDS = ("digits", "trees", "recommendation", "anomaly")


def names(kind: str | None = None) -> list[str]:
    """Names of the sample models, smallest first: every kind, or one of `KINDS`.

    Args:
        kind: ``"digits"`` (the torch networks on digits), ``"trees"`` (ONNX-ML tree
            ensembles), ``"recommendation"`` (``dlrm``, ``two-tower``) or ``"anomaly"``
            (``anomaly-autoencoder``); None for all.

    Raises:
        WorkbenchError: an unknown kind.

    Example:
        >>> "digits-cnn" in wb.samples.names()
        True
        >>> wb.samples.names("trees")
        ['trees-forest', 'trees-gbm', 'trees-anomaly']
    """
    from workbench.loaders import rec_samples, tree_samples

    by_kind = {
        "digits": list(_NAMES),
        "trees": list(tree_samples.NAMES),
        "recommendation": list(rec_samples.RECOMMENDATION),
        "anomaly": list(rec_samples.ANOMALY),
    }
    if kind is None:
        return [name for kind_names in by_kind.values() for name in kind_names]
    if kind not in by_kind:
        raise WorkbenchError(f"unknown sample kind {kind!r}; kinds: {', '.join(KINDS)}")
    return by_kind[kind]


def samples_dir() -> Path:
    """The folder holding the sample models (``$WORKBENCH_SAMPLES_DIR`` if set).

    Raises:
        ModelLoadError: the folder does not exist.
    """
    configured = os.environ.get(SAMPLES_DIR_ENV)
    if configured:
        path = Path(configured).expanduser()
        where = f"${SAMPLES_DIR_ENV}"
    else:
        # workbench/loaders/samples.py -> the checkout root holding sample_models/
        path = Path(__file__).resolve().parents[2] / "sample_models"
        where = "the workbench source checkout"
    if not path.is_dir():
        raise ModelLoadError(
            f"sample models folder not found at {path} (from {where}); install workbench "
            f"from a source checkout (pip install -e .) or set {SAMPLES_DIR_ENV} to a folder "
            "holding sample_models/"
        )
    return path


def info(name: str) -> dict[str, Any]:
    """The model card of a sample: description, architecture, parameters, test accuracy.

    Args:
        name: one of `names`.

    Returns:
        A new dict read from ``card.json`` (``test_accuracy`` is a fraction in [0, 1],
        measured on the held-out split of `dataset`).

    Raises:
        ModelLoadError: unknown name, or the card is missing.

    Example:
        >>> wb.samples.info("digits-cnn")["test_accuracy"]
        0.993333
    """
    from workbench.loaders import rec_samples, tree_samples

    if name in tree_samples.NAMES:
        return tree_samples.info(samples_dir(), name)
    if name in rec_samples.NAMES:
        return rec_samples.info(samples_dir(), name)
    path = _folder(name) / "card.json"
    if not path.is_file():
        raise ModelLoadError(
            f"sample {name!r} has no card at {path}; run python sample_models/train.py {name}"
        )
    card: dict[str, Any] = json.loads(path.read_text())
    return card


def load(name: str) -> Model:
    """Load a trained sample model as a torch `Model` (eval mode).

    Builds the architecture, loads ``weights.safetensors``, and attaches the committed
    ``model.onnx`` so that `Model.to_onnx` reuses it instead of exporting again. The
    card is in ``model.metadata["card"]``. Each call returns a new, independent model.

    Args:
        name: one of `names`.

    Returns:
        A torch `Model` whose single input ``x`` is float32 ``(batch, 1, 8, 8)`` in
        [0, 1] and whose output is ``(batch, 10)`` logits.

    Raises:
        ModelLoadError: unknown name, or the sample's files are missing or do not match
            the architecture.

    Example:
        >>> m = wb.samples.load("digits-mlp")
        >>> m.to_onnx().framework
        'onnx'
    """
    from workbench.loaders import rec_samples, tree_samples

    if name in tree_samples.NAMES:  # ONNX-ML tree ensembles (docs/trees.md)
        return tree_samples.load(samples_dir(), name)
    if name in rec_samples.NAMES:  # recommendation (docs/recommendation.md)
        return rec_samples.load(samples_dir(), name)
    folder = _folder(name)
    card = info(name)
    weights = folder / "weights.safetensors"
    if not weights.is_file():
        raise ModelLoadError(
            f"sample {name!r} has no weights at {weights}; run python sample_models/train.py {name}"
        )
    import torch
    from safetensors.torch import load_file

    from workbench.loaders import load as load_model
    from workbench.loaders.sample_archs import ARCHITECTURES

    module = ARCHITECTURES[name][0]()
    try:
        module.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as exc:
        raise ModelLoadError(f"weights at {weights} do not fit {name}: {exc}") from exc
    module.eval()
    onnx_path = folder / "model.onnx"
    model = load_model(
        module,
        example_inputs=(torch.zeros(1, 1, 8, 8),),
        name=name,
        onnx_path=onnx_path if onnx_path.is_file() else None,
    )
    model.source = f"sample:{name}"
    model.metadata["card"] = card
    return model


def dataset(name: str = "digits", split: str = "test", batch_size: int = 64) -> Dataset:
    """A bundled dataset: the 8x8 digits, pixels scaled to [0, 1].

    The split is the one the samples were trained and scored on: stratified, 25% held
    out (1347 train, 450 test samples).

    Args:
        name: ``"digits"``, or a sample name to get the data that sample was trained on.
        split: ``"test"`` (held out), ``"train"`` or ``"all"``.
        batch_size: samples per batch.

    Returns:
        A `Dataset` with float32 inputs ``(N, 1, 8, 8)`` and int64 labels ``(N,)``.

    Raises:
        WorkbenchError: unknown dataset or split.
        ModelLoadError: the data file is missing.

    Example:
        >>> data = wb.samples.dataset("digits", split="test", batch_size=32)
        >>> data.num_samples, len(data)
        (450, 15)
    """
    from workbench.loaders import rec_samples, tree_samples

    if name in tree_samples.NAMES or name in tree_samples.DATASETS:
        return tree_samples.dataset(samples_dir(), name, split, batch_size)
    if name in rec_samples.NAMES or name in rec_samples.DATASETS:
        return rec_samples.dataset(name, split, batch_size)
    if name in _NAMES:
        name = str(info(name).get("dataset", "digits"))
    if name not in _DATASETS:
        raise WorkbenchError(f"unknown dataset {name!r}; bundled datasets: {list(_DATASETS)}")
    if split not in _SPLITS:
        raise WorkbenchError(f"unknown split {split!r}; choose one of {list(_SPLITS)}")
    path = samples_dir() / name / f"{name}.npz"
    if not path.is_file():
        raise ModelLoadError(f"dataset file {path} is missing; run python sample_models/train.py")
    with np.load(path) as arrays:
        x, y = arrays["x"], arrays["y"]
        if split != "all":
            index = arrays[f"{split}_idx"]
            x, y = x[index], y[index]
    inputs = (x.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    return Dataset(inputs, y.astype(np.int64), batch_size, f"{name}/{split}")


def _folder(name: str) -> Path:
    if name not in _NAMES:
        raise ModelLoadError(f"unknown sample model {name!r}; samples are {', '.join(_NAMES)}")
    return samples_dir() / name
