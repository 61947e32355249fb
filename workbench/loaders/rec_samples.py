"""The recommendation and anomaly samples (``wb.samples.names("recommendation")``,
``wb.samples.names("anomaly")``); docs/recommendation.md.

``dlrm``: a DLRM-style click model (``sample_models/dlrm_train.py``, dataset ``clicks``);
``two-tower``: a retrieval model scoring every item for a user
(``sample_models/two_tower_train.py``, dataset ``interactions``, metric ``recall@10``);
``anomaly-autoencoder``: reconstruction error as an anomaly score
(``sample_models/autoencoder_train.py``, dataset ``readings``, metrics ``roc_auc`` on its
``scores`` and ``f1`` on its ``label``). The data comes from the seeded generators of
`workbench.loaders.rec_data`, regenerated on demand: nothing but the model is stored.
Each loads as a torch `Model` from ``weights.safetensors`` (no code runs from the file)
with its committed ``model.onnx``.

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

#: the recommendation samples, then the anomaly detector (listed as kind ``"anomaly"``)
NAMES = ("dlrm", "two-tower", "anomaly-autoencoder")
RECOMMENDATION = ("dlrm", "two-tower")
ANOMALY = ("anomaly-autoencoder",)
#: each sample's dataset, generated on demand by `workbench.loaders.rec_data`
DATASET_OF = {"dlrm": "clicks", "two-tower": "interactions", "anomaly-autoencoder": "readings"}
DATASETS = tuple(DATASET_OF.values())
_SPLITS = {
    "clicks": ("train", "test"),
    "interactions": ("train", "test"),
    "readings": ("train", "validation", "test"),
}
_SCRIPTS = {
    "dlrm": "python sample_models/dlrm_train.py",
    "two-tower": "python sample_models/two_tower_train.py",
    "anomaly-autoencoder": "python sample_models/autoencoder_train.py",
}


def info(folder: Path, name: str) -> dict[str, Any]:
    """The card of sample ``name`` in ``folder`` (the samples folder)."""
    path = folder / name / "card.json"
    if not path.is_file():
        raise ModelLoadError(f"sample {name!r} has no card at {path}; run {_SCRIPTS[name]}")
    card: dict[str, Any] = json.loads(path.read_text())
    return card


def load(folder: Path, name: str) -> Model:
    """Sample ``name`` as a torch `Model` (eval mode) with its committed ONNX export."""
    from safetensors.torch import load_file

    from workbench.loaders import load as load_model

    card = info(folder, name)
    weights = folder / name / "weights.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"sample {name!r} has no weights at {weights}; run {_SCRIPTS[name]}")
    module, example_inputs, input_names = _architecture(name, card)
    try:
        module.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as exc:
        raise ModelLoadError(f"weights at {weights} do not fit {name}: {exc}") from exc
    module.eval()
    onnx_path = folder / name / "model.onnx"
    model = load_model(
        module,
        example_inputs=example_inputs,
        input_names=input_names,
        name=name,
        onnx_path=onnx_path if onnx_path.is_file() else None,
    )
    model.source = f"sample:{name}"
    model.metadata["card"] = card
    return model


def _architecture(name: str, card: dict[str, Any]) -> tuple[Any, tuple[Any, ...], list[str]]:
    """A fresh module of sample ``name`` as its card describes it, example inputs and
    input names."""
    from workbench.loaders import rec_archs

    if name == "dlrm":
        dim = int(card.get("embedding_dim", rec_archs.EMBEDDING_DIM))
        return rec_archs.DLRM(dim=dim), rec_archs.example_inputs(), rec_archs.INPUT_NAMES
    if name == "two-tower":
        return rec_archs.TwoTower(), rec_archs.two_tower_inputs(), rec_archs.TWO_TOWER_INPUTS
    import torch

    return rec_archs.AnomalyAutoencoder(), (torch.zeros(2, rec_archs.READINGS),), ["x"]


def inputs_of(dense: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The model's inputs by name from dense ``(N, 13)`` and ids ``(N, tables, bag)``."""
    from workbench.loaders.rec_archs import INPUT_NAMES

    arrays = [dense, *(np.ascontiguousarray(ids[:, t]) for t in range(ids.shape[1]))]
    return dict(zip(INPUT_NAMES, arrays, strict=True))


def dataset(name: str, split: str = "test", batch_size: int = 64) -> Dataset:
    """A sample's generated data (a sample name or one of `DATASETS`).

    - ``clicks`` (``dlrm``): inputs by name (`inputs_of`) and int64 click labels.
    - ``interactions`` (``two-tower``): ``region``, ``age``, ``history`` and, as labels,
      the ids of each user's ``HELD_OUT`` next items (for ``recall@k``).
    - ``readings`` (``anomaly-autoencoder``): ``x`` float32 and int64 labels (1: an
      anomaly); splits ``train``, ``validation`` (where the threshold was chosen), ``test``.
    """
    from workbench.loaders import rec_data

    name = DATASET_OF.get(name, name)
    if name not in DATASETS:
        raise WorkbenchError(f"unknown dataset {name!r}; recommendation datasets: {list(DATASETS)}")
    if split not in _SPLITS[name]:
        raise WorkbenchError(
            f"unknown split {split!r} of {name}; choose one of {list(_SPLITS[name])}"
        )
    if name == "clicks":
        log = rec_data.click_log(split)
        return Dataset(inputs_of(log.dense, log.ids), log.labels, batch_size, f"clicks/{split}")
    if name == "interactions":
        users = rec_data.interactions(split)
        inputs = {"region": users.region, "age": users.age, "history": users.history}
        return Dataset(inputs, users.held_out, batch_size, f"interactions/{split}")
    readings = rec_data.sensor_readings(split)
    return Dataset({"x": readings.x}, readings.labels, batch_size, f"readings/{split}")
