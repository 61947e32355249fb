"""Load PyTorch models: an ``nn.Module``, a TorchScript file or a ``torch.export`` program.

Untrusted files run no code (see `workbench.loaders.trust`): ``.pt2`` archives are read by
`workbench.loaders.pt2` instead of torch's loader, TorchScript and pickles holding Python
objects need ``trust=True``.
"""

from __future__ import annotations

import copy
import inspect
import io
import tarfile
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ModelLoadError, WorkbenchError
from workbench.loaders.export import with_dynamic_axes
from workbench.loaders.trust import MAX_MODEL_BYTES, ZIP_ERRORS, open_zip, refuse_code
from workbench.model import Layer, Model, TensorSpec, named_outputs

if TYPE_CHECKING:
    import torch


def from_module(
    module: torch.nn.Module,
    example_inputs: Any,
    *,
    name: str | None = None,
    input_names: Sequence[str] | None = None,
    onnx_path: str | Path | None = None,
    source: str = "nn.Module",
    fixed_batch: bool = False,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> Model:
    """Wrap a torch module as a `Model`.

    The module is copied and put in eval mode, so the caller's module (and its
    training flag) is never changed.

    Args:
        module: the model.
        example_inputs: a tensor or a tuple of tensors the module accepts; the first
            dimension of each is taken as the batch.
        name: display name (defaults to the class name).
        input_names: names for the inputs (defaults to ``forward``'s parameter names).
        onnx_path: a ready ONNX export of this module whose nodes carry canonical layer
            names; `Model.to_onnx` then reuses it instead of exporting.
        source: where the module came from, for display.
        fixed_batch: the module only runs the example inputs' batch size (a program
            exported without a dynamic batch dimension), so the inputs' first dimension
            is recorded as that number instead of ``"batch"``.
        dynamic_axes: axes beyond the batch that may vary, per input name:
            ``{"input_ids": {1: "seq"}}`` (see `workbench.loaders.export.with_dynamic_axes`).

    Raises:
        ModelLoadError: no example inputs, or they do not run through the module.
    """
    import torch

    if example_inputs is None:
        raise ModelLoadError(
            "a torch model needs example_inputs to know its input shapes: "
            "wb.load(module, example_inputs=(torch.rand(1, 3, 224, 224),))"
        )
    args = tuple(example_inputs) if isinstance(example_inputs, list | tuple) else (example_inputs,)
    if not all(isinstance(a, torch.Tensor) for a in args):
        raise ModelLoadError("example_inputs must be a tensor or a tuple of tensors")
    with warnings.catch_warnings():
        # copying a torch.export module trips torch's own pytree deprecation (torch 2.13)
        warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)
        model_copy = copy.deepcopy(module).eval()
    names = list(input_names or _forward_arg_names(model_copy, len(args)))
    try:
        with torch.inference_mode():
            outputs = model_copy(*args)
    except Exception as exc:
        shapes = [list(a.shape) for a in args]
        raise ModelLoadError(
            f"the module fails on example_inputs of shape {shapes}: {type(exc).__name__}: {exc}"
        ) from exc
    specs = [_spec(n, a, fixed_batch) for n, a in zip(names, args, strict=True)]
    return Model(
        framework="torch",
        name=name or type(module).__name__,
        inputs=with_dynamic_axes(specs, dynamic_axes) if dynamic_axes else specs,
        # a Hugging Face ModelOutput, a tuple or dict: its tensors, named (`logits`)
        outputs=[_spec(n, o) for n, o in named_outputs(outputs) if isinstance(o, torch.Tensor)],
        layers=module_layers(model_copy),
        module=model_copy,
        source=source,
        onnx_path=Path(onnx_path) if onnx_path else None,
        metadata={"example_shapes": {n: list(a.shape) for n, a in zip(names, args, strict=True)}}
        if dynamic_axes
        else {},
    )


def module_layers(module: torch.nn.Module, containers: bool = False) -> list[Layer]:
    """Canonical layers of a module: leaf modules (and any module owning parameters directly).

    Args:
        module: the root module.
        containers: also list container modules (their params are those of all children).
    """
    layers = []
    for path, sub in module.named_modules():
        children = list(sub.children())
        own = list(sub.parameters(recurse=False)) + list(sub.buffers(recurse=False))
        if children and not own and not containers:
            continue
        recurse = containers and bool(children)
        # running statistics are part of what inference needs, so they count as weights
        counted = list(sub.parameters(recurse=recurse)) + [
            b for b in sub.buffers(recurse=recurse) if b.is_floating_point()
        ]
        layers.append(
            Layer(
                name=path or type(module).__name__,
                op_type=type(sub).__name__,
                params=sum(p.numel() for p in counted),
                params_bytes=sum(p.numel() * p.element_size() for p in counted),
            )
        )
    return layers


def load_torch_file(
    path: Path,
    example_inputs: Any = None,
    name: str | None = None,
    *,
    trust: bool = False,
    max_bytes: int | None = MAX_MODEL_BYTES,
) -> Model:
    """Load a ``.pt2`` exported program or a TorchScript archive.

    Untrusted files run no code: a ``.pt2`` archive is read item by item by
    `workbench.loaders.pt2`, never by torch's own loader; TorchScript and pickled modules
    are refused. Every zip archive is bounded before torch inflates it.

    Args:
        path: the file.
        example_inputs: inputs for TorchScript (a ``.pt2`` archive carries its own).
        name: display name (default: the file's stem).
        trust: the user trusts the file's author: load TorchScript and pickled modules,
            and let torch read the ``.pt2`` archive unchecked.
        max_bytes: most bytes a zip archive may expand to (None: no limit).

    Raises:
        ModelLoadError: missing file, weights-only file (a state_dict), or no example inputs.
        UnsafeModelError: an untrusted file whose loading would run code.
    """
    import torch

    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    data = path.read_bytes()  # read once: what is checked is what torch loads
    if not trust and tarfile.is_tarfile(io.BytesIO(data)):
        # torch's oldest format (torch.load unpacks files from it, then unpickles), whatever
        # a zip directory at its end says
        raise refuse_code(path, "is a legacy tar torch.save, which holds Python objects")
    names = _zip_names(data)
    if names is not None:  # torch allocates each entry at its declared size: bound them first
        open_zip(data, str(path), max_bytes, untrusted=not trust).close()
    if names is None:
        if not data.startswith(b"\x80"):  # not a pickle either (protocol 2+ starts so)
            raise ModelLoadError(
                f"{path} is neither an ONNX file, a torch.export program nor a TorchScript archive"
            )
        return _load_pickle(path, data, example_inputs, name, trust)
    if path.suffix == ".pt2" or _is_exported_program(names):
        from workbench.loaders.pt2 import load_program

        try:
            if trust:
                program = torch.export.load(io.BytesIO(data))
            else:
                program = load_program(data, str(path), max_bytes)
        except WorkbenchError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"{path} is not a loadable torch.export program ({type(exc).__name__}: "
                f"{_first_line(exc)})"
            ) from exc
        args = example_inputs if example_inputs is not None else program.example_inputs[0]
        return from_module(
            program.module(),
            args,
            name=name or path.stem,
            source=str(path),
            fixed_batch=not _dynamic_batch(program),
        )
    if _is_torchscript(names):
        if not trust:
            raise refuse_code(path, "is TorchScript, which is code")
        if example_inputs is None:
            raise ModelLoadError(
                f"{path} is TorchScript, which does not record input shapes: pass "
                "example_inputs=(tensor, ...) to wb.load"
            )
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        return from_module(module, example_inputs, name=name or path.stem, source=str(path))
    return _load_pickle(path, data, example_inputs, name, trust)


def _load_pickle(
    path: Path, data: bytes, example_inputs: Any, name: str | None, trust: bool
) -> Model:
    """A ``torch.save`` file: weights are not a model; a pickled module needs trust."""
    import pickle

    import torch

    try:
        content = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if not trust:
            raise refuse_code(path, "is a pickle holding Python objects, not just weights") from exc
        content = torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(
            f"{path} is neither an ONNX file, a torch.export program nor a TorchScript archive"
        ) from exc
    if isinstance(content, torch.nn.Module):
        return from_module(content, example_inputs, name=name or path.stem, source=str(path))
    kind = "a state_dict" if isinstance(content, dict) else f"a {type(content).__name__}"
    raise ModelLoadError(
        f"{path} holds weights only ({kind}), not a model. Build the module, load the weights "
        "with module.load_state_dict(torch.load(path, weights_only=True)) and pass it to "
        "wb.load(module, example_inputs=...)."
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _zip_names(data: bytes) -> list[str] | None:
    """Entry names of a zip archive; None when ``data`` is not one (or too corrupt to read)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except ZIP_ERRORS:
        return None


def _is_torchscript(names: list[str]) -> bool:
    return any(n.split("/", 1)[-1].startswith("code/") for n in names)


def _is_exported_program(names: list[str]) -> bool:
    return any("serialized_exported_program" in n or n.endswith("models/model.json") for n in names)


def _dynamic_batch(program: Any) -> bool:
    """Whether every user input of an exported program has a symbolic first dimension."""
    import torch

    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    shapes = [
        placeholders[name].meta["val"].shape
        for name in program.graph_signature.user_inputs
        if isinstance(placeholders[name].meta.get("val"), torch.Tensor)
    ]
    return all(len(shape) > 0 and not isinstance(shape[0], int) for shape in shapes)


def _forward_arg_names(module: torch.nn.Module, count: int) -> list[str]:
    try:
        params = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return params[:count]
    return [f"input_{i}" for i in range(count)]


def _spec(name: str, tensor: torch.Tensor, fixed_batch: bool = False) -> TensorSpec:
    dtype = str(tensor.dtype).removeprefix("torch.")
    shape: tuple[int | str, ...] = tuple(tensor.shape)
    if tensor.dim() and not fixed_batch:
        shape = ("batch", *tensor.shape[1:])
    return TensorSpec(name, tuple(int(d) if isinstance(d, int) else d for d in shape), dtype)
