"""Export torch models to ONNX, keeping each node's torch module path."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import TYPE_CHECKING

from workbench.errors import ModelLoadError
from workbench.model import Model, set_layer_name

if TYPE_CHECKING:
    import onnx


def export_torch(model: Model) -> Model:
    """The ONNX version of a torch `Model`, with canonical layer names on every node.

    Reuses ``model.onnx_path`` when set (e.g. the committed export of a sample).
    Otherwise tries the torch.export-based exporter, then the TorchScript exporter.
    The batch dimension stays dynamic.

    Raises:
        ModelLoadError: both exporters failed; the message carries both reasons.
    """
    from workbench.loaders.onnx import load_onnx, model_from_proto

    if model.onnx_path is not None and model.onnx_path.is_file():
        exported = load_onnx(model.onnx_path, name=model.name)
        exported.recipe = model.recipe
        return exported
    errors = []
    for exporter in (_export_dynamo, _export_torchscript):
        try:
            proto = exporter(model)
        except Exception as exc:  # each exporter fails in its own ways; keep both reasons
            errors.append(
                f"{exporter.__name__.removeprefix('_export_')}: {type(exc).__name__}: {exc}"
            )
            continue
        annotate_layers(proto)
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


def _example_args(model: Model) -> tuple:
    import torch

    # batch 2: torch.export specialises a dimension of size 1, which would fix the batch
    return tuple(torch.from_numpy(a) for a in model.example_inputs(batch_size=2).values())


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
    dynamic = tuple({0: torch.export.Dim("batch", min=1)} for _ in args)
    with _quiet():
        program = torch.onnx.export(
            model.module,
            args,
            dynamo=True,
            optimize=False,
            dynamic_shapes=dynamic,
            input_names=[s.name for s in model.inputs],
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    # Fold constants only: the exporter's full optimizer also fuses batch norm into the
    # preceding conv, which would erase that conv's layer from every per-layer table.
    graph = onnx_ir.from_proto(program.model_proto)
    with _quiet():
        optimizer.fold_constants(graph)
        optimizer.remove_unused_nodes(graph)
    return onnx_ir.to_proto(graph)


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
            dynamic_axes={n: {0: "batch"} for n in names},
            opset_version=17,
        )
    return onnx.load_model_from_string(buffer.getvalue())
