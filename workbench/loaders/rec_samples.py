"""The recommendation samples (``wb.samples.names("recommendation")``); docs/recommendation.md.

``dlrm``: a DLRM-style click model trained by ``sample_models/dlrm_train.py`` on the
seeded click log of `workbench.loaders.rec_data` (dataset ``clicks``, regenerated on
demand: nothing but the model is stored). It loads as a torch `Model` from
``weights.safetensors`` (no code runs from the file) with its committed ``model.onnx``.

Example:
    >>> m = wb.samples.load("dlrm")
    >>> data = wb.samples.dataset("dlrm", split="test")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data import Dataset
from workbench.errors import ModelLoadError, WorkbenchError
from workbench.model import Model

NAMES = ("dlrm",)
DATASETS = ("clicks",)
_SPLITS = ("train", "test")
_SCRIPT = "python sample_models/dlrm_train.py"


def info(folder: Path, name: str) -> dict[str, Any]:
    """The card of sample ``name`` in ``folder`` (the samples folder)."""
    path = folder / name / "card.json"
    if not path.is_file():
        raise ModelLoadError(f"sample {name!r} has no card at {path}; run {_SCRIPT}")
    card: dict[str, Any] = json.loads(path.read_text())
    return card


def load(folder: Path, name: str) -> Model:
    """Sample ``name`` as a torch `Model` (eval mode) with its committed ONNX export."""
    from safetensors.torch import load_file

    from workbench.loaders import load as load_model
    from workbench.loaders.rec_archs import DLRM, INPUT_NAMES, example_inputs

    card = info(folder, name)
    weights = folder / name / "weights.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"sample {name!r} has no weights at {weights}; run {_SCRIPT}")
    module = DLRM()
    try:
        module.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as exc:
        raise ModelLoadError(f"weights at {weights} do not fit {name}: {exc}") from exc
    module.eval()
    onnx_path = folder / name / "model.onnx"
    model = load_model(
        module,
        example_inputs=example_inputs(),
        input_names=INPUT_NAMES,
        name=name,
        onnx_path=onnx_path if onnx_path.is_file() else None,
    )
    model.source = f"sample:{name}"
    model.metadata["card"] = card
    return model


def inputs_of(dense: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The model's inputs by name from dense ``(N, 13)`` and ids ``(N, tables, bag)``."""
    from workbench.loaders.rec_archs import INPUT_NAMES

    arrays = [dense, *(np.ascontiguousarray(ids[:, t]) for t in range(ids.shape[1]))]
    return dict(zip(INPUT_NAMES, arrays, strict=True))


def dataset(name: str, split: str = "test", batch_size: int = 64) -> Dataset:
    """The click log: inputs by name (`inputs_of`) and int64 click labels."""
    from workbench.loaders.rec_data import click_log

    if name not in NAMES and name not in DATASETS:
        raise WorkbenchError(f"unknown dataset {name!r}; recommendation datasets: {list(DATASETS)}")
    if split not in _SPLITS:
        raise WorkbenchError(f"unknown split {split!r}; choose one of {list(_SPLITS)}")
    log = click_log(split)
    return Dataset(inputs_of(log.dense, log.ids), log.labels, batch_size, f"clicks/{split}")
