"""What a sweep sends to Dask workers: models as bytes, data as arrays, metrics by name.

A worker never unpickles the user's code unless the user says so (``trust=True``): an
ONNX model travels as its serialised graph, a sample model as its name and a
safetensors state dict, a transform as its recipe dict, a built-in metric as its name.
Anything else (an arbitrary ``nn.Module``, a metric function) needs ``trust=True`` and
then travels pickled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from workbench.data import Dataset
from workbench.errors import InputError
from workbench.model import Model

SAMPLE_PREFIX = "sample:"


@dataclass(frozen=True)
class ModelPackage:
    """A model on its way to a worker.

    Attributes:
        kind: ``"onnx"`` (``payload`` is the ONNX bytes), ``"sample"`` (``payload`` is
            the safetensors state dict of the sample ``name``) or ``"trusted"``
            (``payload`` is the `Model` itself, pickled by Dask).
        name: the model's display name (the sample's name for ``"sample"``).
        payload: see ``kind``.
        recipe: the model's recipe, restored on the worker.
        source: where the model came from (lets a worker find a sample's data splits).
        fingerprint: the model's fingerprint; the rebuilt model must match it.
    """

    kind: Literal["onnx", "sample", "trusted"]
    name: str
    payload: Any
    recipe: dict[str, Any] | None
    source: str
    fingerprint: str


@dataclass(frozen=True)
class SweepPayload:
    """Everything the points of one sweep share; scattered to the workers once.

    Attributes:
        token: identifies this payload in a worker's cache (the sweep id and model).
        model: the baseline model.
        data: the evaluation data.
        calibration: the transforms' data, or None (a sample's training split).
        metric: a built-in metric's name, or (trusted) the `Metric` itself.
        batch_size: the latency batch size.
        budget_s: seconds of timing per point.
        options: backend options.
        output: the model output the metric scores (None: `evaluate` chooses).
    """

    token: str
    model: ModelPackage
    data: Dataset
    calibration: Dataset | None
    metric: Any
    batch_size: int
    budget_s: float
    options: dict[str, Any]
    output: str | int | None = None


def pack_model(model: Model, trust: bool = False) -> ModelPackage:
    """A `ModelPackage` for ``model``.

    Args:
        model: an ONNX model, a sample model as loaded (any weights), or, with
            ``trust``, any model.
        trust: allow any other model to travel pickled (its code runs on the workers).

    Raises:
        InputError: a torch model that is neither a sample nor trusted.
    """
    if model.framework == "onnx":
        return _package(model, "onnx", model.onnx_bytes, model.name)
    if model.source.startswith(SAMPLE_PREFIX) and model.recipe is None:
        from safetensors.torch import save

        assert model.module is not None
        state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
        return _package(model, "sample", save(state), model.source.removeprefix(SAMPLE_PREFIX))
    if trust:
        return _package(model, "trusted", model, model.name)
    raise InputError(
        f"{model.name} is a torch model that is not a workbench sample: it can reach Dask "
        "workers only as pickled code. Pass trust=True if the workers may run it, or sweep "
        "its ONNX export (wb.load(m.to_onnx().onnx_bytes))"
    )


def _package(model: Model, kind: Any, payload: Any, name: str) -> ModelPackage:
    return ModelPackage(kind, name, payload, model.recipe, model.source, model.fingerprint())


def unpack_model(package: ModelPackage) -> Model:
    """The `Model` a `ModelPackage` describes, rebuilt on this worker.

    Raises:
        InputError: the rebuilt model's fingerprint differs from the sender's (for
            example, the worker has another version of a sample's architecture).
    """
    if package.kind == "trusted":
        model: Model = package.payload
        return model
    if package.kind == "onnx":
        from workbench.loaders.onnx import load_onnx

        loaded = load_onnx(package.payload, name=package.name)
        model = dataclasses.replace(loaded, recipe=package.recipe, source=package.source)
    else:
        model = _sample_with_weights(package.name, package.payload)
    if model.fingerprint() != package.fingerprint:
        raise InputError(
            f"{package.name} rebuilt on this worker differs from the client's "
            "(another workbench or onnx version?); install the client's versions on the workers"
        )
    return model


def _sample_with_weights(name: str, state_bytes: bytes) -> Model:
    from safetensors.torch import load

    from workbench.loaders import samples

    model = samples.load(name)  # a fresh copy: its module is ours to change
    state = load(state_bytes)
    assert model.module is not None
    if all(v.equal(state[k]) for k, v in model.module.state_dict().items()):
        return model  # the shipped weights: keep the committed ONNX export
    model.module.load_state_dict(state)
    # other weights than the committed ones: the sample's ONNX file no longer matches
    return dataclasses.replace(model, onnx_path=None, _onnx=None, _onnx_bytes=None)


@dataclass(frozen=True)
class ModelFile:
    """A model file on its way to a worker, for a child process there to load.

    Attributes:
        name: the file's name (its suffix tells the loader the format).
        payload: the file's bytes.
        digest: their SHA-256, naming the worker's copy (written once per machine).
    """

    name: str
    payload: bytes
    digest: str


def pack_reference(reference: str) -> ModelFile | str:
    """What a fair child's model reference becomes on its way to a worker.

    A sample name stays a name (every worker has the samples, as every local child
    does); a file path becomes the file's bytes, since the worker's machine may not have
    the file. The child there loads it as a local child would, with the same checks.
    """
    import hashlib
    from pathlib import Path

    path = Path(reference)
    if not path.is_file():
        return reference
    payload = path.read_bytes()
    return ModelFile(path.name, payload, hashlib.sha256(payload).hexdigest())


def unpack_reference(package: ModelFile | str) -> str:
    """A reference a child on this machine can load: the sample name, or a local file.

    The file is written once per machine under the temporary directory, named by its
    digest; a worker that finds it there (another worker's copy) uses that.
    """
    import os
    import tempfile
    from pathlib import Path

    if isinstance(package, str):
        return package
    folder = Path(tempfile.gettempdir()) / "workbench-models" / package.digest
    target = folder / package.name
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        # written aside and renamed: two workers on one machine may write it at once
        partial = folder / f".{package.name}.{os.getpid()}"
        partial.write_bytes(package.payload)
        partial.replace(target)
    return str(target)


def pack_spec(spec: Any, trust: bool = False) -> Any:
    """A variant spec as plain data: a recipe dict, a name, or a `ModelPackage`."""
    from workbench.optimize.base import Transform, config_to_dict

    if isinstance(spec, Model):
        return pack_model(spec, trust)
    if isinstance(spec, Transform):
        return config_to_dict(spec)
    return spec  # "baseline", a registry name or a recipe dict: already data


def unpack_spec(spec: Any) -> Any:
    """The variant spec `pack_spec` packed (a `Model` for a packed model)."""
    return unpack_model(spec) if isinstance(spec, ModelPackage) else spec


def pack_data(data: Any) -> Dataset:
    """Evaluation or calibration data as a `Dataset` of numpy arrays (read once)."""
    return data if isinstance(data, Dataset) else Dataset.from_batches(data)


def pack_metric(scorer: Any, trust: bool = False) -> Any:
    """A built-in metric's name, or with ``trust`` the metric itself.

    Raises:
        InputError: a metric of the user's own without ``trust``.
    """
    from workbench.errors import WorkbenchError
    from workbench.evaluation.metrics import get_metric

    try:
        builtin = get_metric(scorer.name)
    except WorkbenchError:
        builtin = None
    if builtin is not None and _same_function(builtin.fn, scorer.fn):
        return scorer.name
    if trust:
        return scorer
    raise InputError(
        f"metric {scorer.name!r} is your own function: it can reach Dask workers only as "
        "pickled code; pass trust=True, or use a built-in metric (accuracy, top<k>, mse, mae)"
    )


def _same_function(a: Any, b: Any) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
