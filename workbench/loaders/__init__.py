"""`load`: one entry point for every kind of model workbench understands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workbench.errors import ModelLoadError
from workbench.loaders.export import export_torch
from workbench.loaders.trust import MAX_MODEL_BYTES, check_size
from workbench.model import Model, register_exporter

# Model.to_onnx exports through this hook: model.py sits below loaders and cannot import them
register_exporter(export_torch)

_ONNX_SUFFIXES = {".onnx"}
_TORCH_SUFFIXES = {".pt2", ".pt", ".pth", ".ts", ".jit", ".zip"}


def load(
    source: Any,
    *,
    example_inputs: Any = None,
    name: str | None = None,
    input_names: Sequence[str] | None = None,
    onnx_path: str | Path | None = None,
    trust: bool = False,
    max_bytes: int | None = MAX_MODEL_BYTES,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> Model:
    """Load a model from an ``nn.Module``, a file, ONNX bytes or a sample name.

    A string naming a sample (`workbench.samples.names`) is that sample, even where a file
    of that name is in the working directory: load such a file by a path that looks like
    one (``"./digits-cnn"``) or a ``pathlib.Path``.

    Args:
        source: a ``torch.nn.Module`` (with ``example_inputs``), an
            ``ExportedProgram``, a path to ``.onnx`` / ``.pt2`` / TorchScript, ONNX bytes,
            an ``onnx.ModelProto``, a fitted scikit-learn / XGBoost / LightGBM model, an
            XGBoost ``.json`` / ``.ubj``, LightGBM text or ``.skops`` file (docs/trees.md), or a
            sample name such as ``"digits-cnn"``.
        example_inputs: a tensor or tuple of tensors (torch modules and TorchScript);
            for a tree model, feature rows its ONNX conversion is checked on.
        name: display name.
        input_names: input names for a torch module (default: ``forward``'s arguments).
        onnx_path: a ready ONNX export of the torch module, reused by `Model.to_onnx`.
        trust: the file's author is trusted: TorchScript, pickles and skops files
            naming types outside workbench's list may load (they run code); see
            docs/security.md.
        max_bytes: largest file loaded, in bytes (None: no limit).
        dynamic_axes: for a torch module, axes beyond the batch that may vary, per input:
            ``{"input_ids": {1: "seq"}, "attention_mask": {1: "seq"}}``; one load then
            runs (and exports to ONNX for) every sequence length.

    Returns:
        A `Model`. The source object is never changed (torch modules are copied).

    Raises:
        ModelLoadError: the source is missing, corrupt or of an unknown kind.
        UnsafeModelError: the file would need unsafe unpickling.

    Example:
        >>> m = wb.load("model.onnx")
        >>> m = wb.load(my_module, example_inputs=(torch.rand(1, 3, 32, 32),))
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, bytes | bytearray):
        from workbench.loaders.onnx import load_onnx

        return load_onnx(bytes(source), name=name)
    kind = type(source).__module__ + "." + type(source).__name__
    if kind.startswith("onnx") and hasattr(source, "SerializeToString"):
        from workbench.loaders.onnx import load_onnx

        return load_onnx(source.SerializeToString(), name=name or source.graph.name)
    if kind.startswith("torch"):
        import torch

        from workbench.loaders.torch import from_module

        if isinstance(source, torch.export.ExportedProgram):
            args = example_inputs if example_inputs is not None else source.example_inputs[0]
            return from_module(
                source.module(), args, name=name, input_names=input_names, source="ExportedProgram"
            )
    if hasattr(source, "forward") and hasattr(source, "named_modules"):
        from workbench.loaders.torch import from_module

        return from_module(
            source,
            example_inputs,
            name=name,
            input_names=input_names,
            onnx_path=onnx_path,
            dynamic_axes=dynamic_axes,
        )
    from workbench.loaders.trees import is_tree_object

    if is_tree_object(source):  # example_inputs: rows the ONNX conversion is checked on
        from workbench.loaders.trees import from_estimator

        return from_estimator(source, data=example_inputs, name=name)
    if isinstance(source, str | Path):
        from workbench.loaders import samples

        # a sample's name is the sample even beside a file of that name: a file is loaded
        # by a path that looks like one ("./digits-cnn") or a pathlib.Path
        if isinstance(source, str) and source in samples.names():
            return samples.load(source)
        return _load_path(Path(source), example_inputs, name, trust, max_bytes)
    raise ModelLoadError(
        f"cannot load a {type(source).__name__}: pass an nn.Module with example_inputs, "
        "a path to an .onnx / .pt2 / TorchScript file, ONNX bytes, or a sample name"
    )


def _load_path(
    path: Path, example_inputs: Any, name: str | None, trust: bool, max_bytes: int | None
) -> Model:
    if not path.exists():
        from workbench.loaders import samples

        if str(path) in samples.names():  # a pathlib.Path names a file, never a sample
            raise ModelLoadError(f"no such file: {path} (for the sample, pass its name as a str)")
        raise ModelLoadError(
            f"no such file: {path} (and not a sample name; samples: {', '.join(samples.names())})"
        )
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; pass the model file inside it")
    check_size(path, max_bytes)
    if path.suffix.lower() in _ONNX_SUFFIXES:
        from workbench.loaders.onnx import load_onnx

        return load_onnx(path, name=name)
    if path.suffix.lower() in _TORCH_SUFFIXES:
        from workbench.loaders.torch import load_torch_file

        return load_torch_file(
            path, example_inputs=example_inputs, name=name, trust=trust, max_bytes=max_bytes
        )
    from workbench.loaders.trees import TREE_SUFFIXES, load_tree_file

    if path.suffix.lower() in TREE_SUFFIXES:
        return load_tree_file(
            path, data=example_inputs, name=name, trust=trust, max_bytes=max_bytes
        )
    raise ModelLoadError(
        f"unknown model file type {path.suffix!r} for {path}: expected .onnx, .pt2, .pt "
        "(TorchScript), a tree model (.json, .ubj, .txt, .skops) or a sample name"
    )
