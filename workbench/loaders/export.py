"""Export torch models to ONNX, keeping each node's torch module path."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workbench.errors import ModelLoadError
from workbench.model import Model, TensorSpec, named_outputs, set_layer_name

if TYPE_CHECKING:
    import onnx


def export_torch(model: Model) -> Model:
    """The ONNX version of a torch `Model`, with canonical layer names on every node.

    Reuses ``model.onnx_path`` when set (e.g. the committed export of a sample).
    Otherwise tries the torch.export-based exporter, then the TorchScript exporter
    (``nn.EmbeddingBag`` goes out as Gather + a reduction: `gather_bags`).
    The batch dimension stays dynamic, and so does every axis declared with
    ``dynamic_axes`` at load (a symbolic dimension of the input's spec).

    Raises:
        ModelLoadError: both exporters failed; the message carries both reasons.
    """
    from workbench.loaders.onnx import load_onnx, model_from_proto

    if model.onnx_path is not None and model.onnx_path.is_file():
        exported = load_onnx(model.onnx_path, name=model.name)
        exported.recipe = model.recipe
        return exported
    from workbench.loaders.embedding_export import gather_bags

    errors = []
    for exporter in (_export_dynamo, _export_torchscript):
        try:
            # EmbeddingBag as Gather + reduction, not a Loop (docs/recommendation.md)
            with _tensor_outputs(model), gather_bags(model.module):
                proto = exporter(model)
        except Exception as exc:  # each exporter fails in its own ways; keep both reasons
            errors.append(
                f"{exporter.__name__.removeprefix('_export_')}: {type(exc).__name__}: {exc}"
            )
            continue
        annotate_layers(proto)
        _name_dims(proto, model)
        return model_from_proto(
            proto, name=model.name, source=f"ONNX export of {model.source}", recipe=model.recipe
        )
    raise ModelLoadError(
        f"could not export {model.name!r} to ONNX; " + " | ".join(e[:400] for e in errors)
    )


def annotate_layers(proto: onnx.ModelProto) -> None:
    """Write each node's canonical layer into its ``workbench.layer`` metadata."""
    from workbench.loaders.onnx import canonical_layer_name

    for index, node in enumerate(proto.graph.node):
        set_layer_name(node, canonical_layer_name(node, index))


def with_dynamic_axes(
    specs: Sequence[TensorSpec], dynamic_axes: Mapping[str, Mapping[int, str]]
) -> list[TensorSpec]:
    """``specs`` with the axes named in ``dynamic_axes`` made symbolic.

    Args:
        specs: the inputs, as recorded from the example inputs.
        dynamic_axes: per input name, axis -> dimension name (``{"input_ids": {1:
            "seq"}}``); inputs sharing a name share the dimension.

    Raises:
        ModelLoadError: an unknown input or an axis the input does not have.
    """
    by_name = {spec.name: spec for spec in specs}
    unknown = sorted(set(dynamic_axes) - set(by_name))
    if unknown:
        raise ModelLoadError(
            f"dynamic_axes names input(s) {unknown}; the inputs are {list(by_name)}"
        )
    out = []
    for spec in specs:
        shape = list(spec.shape)
        for axis, dim in dynamic_axes.get(spec.name, {}).items():
            if not isinstance(axis, int) or not -len(shape) <= axis < len(shape):
                raise ModelLoadError(
                    f"dynamic_axes gives input {spec.name!r} axis {axis!r}; it has "
                    f"{len(shape)} axes {list(spec.shape)}"
                )
            shape[axis] = str(dim)
        out.append(dataclasses.replace(spec, shape=tuple(shape)))
    return out


def _example_args(model: Model) -> tuple:
    import torch

    # batch 2: torch.export specialises a dimension of size 1, which would fix the batch;
    # other dynamic axes keep the example inputs' sizes, for the same reason
    shapes = model.metadata.get("example_shapes", {})
    specs = [
        dataclasses.replace(
            spec,
            shape=tuple(
                shapes[spec.name][i] if i and isinstance(d, str) and spec.name in shapes else d
                for i, d in enumerate(spec.shape)
            ),
        )
        for spec in model.inputs
    ]
    sized = dataclasses.replace(model, inputs=specs)
    return tuple(torch.from_numpy(a) for a in sized.example_inputs(batch_size=2).values())


@contextlib.contextmanager
def _tensor_outputs(model: Model) -> Iterator[None]:
    """While exporting, the module returns its output tensors as a flat tuple.

    A Hugging Face model returns a ``ModelOutput`` holding a KV cache object that
    neither exporter can trace (torch.export: "Found DynamicCache in output"); the
    tensors are what `Model.outputs` lists, in the same order (`named_outputs`). A hook
    on the root keeps every module path, so the canonical layer names stay the same;
    it is removed afterwards (the module is the model's private copy).
    """
    assert model.module is not None

    def flatten(module: Any, args: Any, output: Any) -> tuple[Any, ...]:
        return tuple(array for _, array in named_outputs(output))

    handle = model.module.register_forward_hook(flatten)
    try:
        yield
    finally:
        handle.remove()


def _output_names(model: Model) -> list[str] | None:
    """The outputs' names when the module gave them (``logits``), else the exporter's."""
    names = [spec.name for spec in model.outputs]
    return names if any(not n.startswith("output_") for n in names) else None


def _dims(model: Model) -> list[dict[int, str]]:
    """Per input, its symbolic axes and their names (the batch first)."""
    return [{i: d for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in model.inputs]


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints and optional-dependency warnings."""
    # onnxscript's constant folder logs a warning for each value it cannot fold (harmless)
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export_dynamo(model: Model) -> onnx.ModelProto:
    import onnx_ir
    import torch
    from onnxscript import optimizer

    assert model.module is not None
    args = _example_args(model)
    # one Dim per name: inputs sharing "seq" share it
    dims: dict[str, Any] = {}
    dynamic = tuple(
        {
            i: dims.setdefault(
                name,
                torch.export.Dim(_identifier(name), min=1) if i == 0 else torch.export.Dim.DYNAMIC,
            )
            for i, name in axes.items()
        }
        for axes in _dims(model)
    )
    with _quiet():
        program = torch.onnx.export(
            model.module,
            args,
            dynamo=True,
            optimize=False,
            dynamic_shapes=dynamic,
            input_names=[s.name for s in model.inputs],
            output_names=_output_names(model),
            verbose=False,
        )
    if program is None:
        raise ModelLoadError("torch.onnx.export returned no program")
    # Fold constants only: the exporter's full optimizer also fuses batch norm into the
    # preceding conv, which would erase that conv's layer from every per-layer table.
    graph = onnx_ir.from_proto(program.model_proto)
    with _quiet():
        optimizer.fold_constants(graph)
        optimizer.remove_unused_nodes(graph)
    return onnx_ir.to_proto(graph)


def _name_dims(proto: onnx.ModelProto, model: Model) -> None:
    """Give the graph's symbolic dimensions the names declared at load (``seq``), where
    the exporter chose its own (torch.export's ``s70`` for a ``Dim.DYNAMIC``)."""
    graph = proto.graph
    renamed: dict[str, str] = {}
    for value, spec in zip(graph.input, model.inputs, strict=False):
        for dim, want in zip(value.type.tensor_type.shape.dim, spec.shape, strict=False):
            if isinstance(want, str) and dim.dim_param and dim.dim_param != want:
                renamed.setdefault(dim.dim_param, want)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]


def _identifier(name: str) -> str:
    """A torch.export dimension name (a Python identifier) for a dimension name."""
    text = "".join(c if c.isalnum() else "_" for c in name)
    return text if text.isidentifier() else f"d_{text}"


def _export_torchscript(model: Model) -> onnx.ModelProto:
    import onnx
    import torch

    assert model.module is not None
    args = _example_args(model)
    names = [s.name for s in model.inputs]
    buffer = io.BytesIO()
    with _quiet():
        torch.onnx.export(
            model.module,
            args,
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter accepts file objects
            dynamo=False,
            input_names=names,
            output_names=_output_names(model),
            dynamic_axes=dict(zip(names, _dims(model), strict=True)),
            opset_version=17,
        )
    return onnx.load_model_from_string(buffer.getvalue())
