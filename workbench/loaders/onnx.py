"""Load and validate ONNX models; map their nodes to canonical layers."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ModelLoadError, UnsafeModelError, UnsupportedModelError
from workbench.model import LAYER_KEY, Layer, Model, TensorSpec, onnx_dtype_name, onnx_itemsize

if TYPE_CHECKING:
    import onnx

_NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
#: canonical layer of the shape arithmetic torch's exporter adds for a dynamic batch
SHAPE_LAYER = "(shape)"
#: pseudo-layer of the layout conversions a runtime inserts (ORT's reorders, our transposes)
LAYOUT_LAYER = "(layout)"


def load_onnx(source: str | Path | bytes, name: str | None = None) -> Model:
    """Load, check and shape-infer an ONNX model from a path or serialised bytes.

    External data is allowed only inside the model's own folder, so that a file cannot
    make workbench read arbitrary files.

    Args:
        source: a path to a ``.onnx`` file or the serialised model.
        name: display name (defaults to the file stem or the graph name).

    Returns:
        An ONNX `Model`.

    Raises:
        ModelLoadError: the file is missing, truncated, corrupt or fails the checker.
        UnsafeModelError: external data points outside the model's folder.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = None if isinstance(source, bytes) else Path(source)
    if path is not None and not path.is_file():
        raise ModelLoadError(f"ONNX file not found: {path}")
    try:
        if path is None:
            proto = onnx.load_model_from_string(source)  # type: ignore[arg-type]
        else:
            proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        where = path or "the given bytes"
        raise ModelLoadError(
            f"{where} is not a valid ONNX model (corrupt or truncated?): {exc}. "
            "Re-export the model or check that the file was copied completely."
        ) from exc
    if path is not None:
        _load_external_data(proto, path.parent)
    if not proto.graph.node:
        raise ModelLoadError(
            f"{path or 'the given bytes'} holds no graph nodes: not an ONNX model, or empty"
        )
    proto = _check_and_infer(proto, path)
    return model_from_proto(
        proto,
        name=name or (path.stem if path else proto.graph.name or "model"),
        source=str(path) if path else "<bytes>",
    )


def model_from_proto(
    proto: onnx.ModelProto, name: str, source: str = "", recipe: dict[str, Any] | None = None
) -> Model:
    """Wrap an already validated ONNX graph as a `Model` (layers, inputs, outputs)."""
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [_tensor_spec(v) for v in graph.input if v.name not in initializers]
    outputs = [_tensor_spec(v) for v in graph.output]
    return Model(
        framework="onnx",
        name=name,
        inputs=inputs,
        outputs=outputs,
        layers=onnx_layers(proto),
        proto=proto,
        source=source,
        recipe=recipe,
    )


def canonical_layer_name(node: onnx.NodeProto, index: int) -> str:
    """The canonical layer an ONNX node belongs to.

    In order: the ``workbench.layer`` metadata our exporter writes; the torch module
    scope recorded by torch's exporter; the module path inside a TorchScript-exporter
    name such as ``/features/features.0/Conv``; the node name; ``<op_type>_<index>``.
    """
    meta = {kv.key: kv.value for kv in node.metadata_props}
    if meta.get(LAYER_KEY):
        return meta[LAYER_KEY]
    if _NAME_SCOPES_KEY in meta:
        scoped = scope_to_layer(meta[_NAME_SCOPES_KEY])
        if scoped:
            return scoped
    parts = [p for p in node.name.split("/") if p]
    if node.name.startswith("/") and parts:
        return parts[-2] if len(parts) >= 2 else parts[0]
    return node.name or f"{node.op_type}_{index}"


def node_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values: strings (and lists of strings) decoded."""
    from onnx import helper

    attrs = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        attrs[attribute.name] = value
    return attrs


def constant_value(attrs: Mapping[str, Any], node_name: str) -> Any:
    """The array a ``Constant`` node holds (``attrs`` from `node_attributes`), whichever
    of its attributes holds it.

    Raises:
        UnsupportedModelError: it holds a kind of value no runtime of ours reads.
    """
    import numpy as np
    from onnx import numpy_helper

    if "value" in attrs:
        return np.asarray(numpy_helper.to_array(attrs["value"]))
    for key, dtype in (("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    for key in ("value_float", "value_floats"):
        if key in attrs:
            return np.asarray(attrs[key], dtype=np.float32)
    raise UnsupportedModelError(
        f"Constant node {node_name!r} holds {sorted(attrs)}; value, value_int(s) and "
        "value_float(s) are read"
    )


def scope_to_layer(name_scopes: str) -> str:
    """Module path from torch's ``name_scopes`` metadata (``"['', 'fc', 'linear']"`` -> ``fc``).

    Shape arithmetic that torch adds for dynamic dimensions sits under a hook scope, not a
    module; it becomes the layer `SHAPE_LAYER`.
    """
    try:
        raw = [s for s in ast.literal_eval(name_scopes) if s]
    except (ValueError, SyntaxError):
        return ""
    scopes = [s for s in raw if not s.startswith("_empty_nn_module")]
    if len(scopes) < len(raw) and len(scopes) <= 1:
        return SHAPE_LAYER
    if len(scopes) >= 2:
        return str(scopes[-2])
    return str(scopes[-1]) if scopes else ""


def onnx_layers(proto: onnx.ModelProto) -> list[Layer]:
    """Canonical layers of a graph in execution order, with the nodes and weights each owns."""
    from workbench.loaders.tree_graph import TREE_OPS, tree_size

    sizes = {
        init.name: (_numel(init.dims), onnx_itemsize(init.data_type) * _numel(init.dims))
        for init in proto.graph.initializer
    }
    order: list[str] = []
    nodes: dict[str, list[onnx.NodeProto]] = {}
    for index, node in enumerate(proto.graph.node):
        layer = canonical_layer_name(node, index)
        if layer not in nodes:
            order.append(layer)
            nodes[layer] = []
        nodes[layer].append(node)
    claimed: set[str] = set()
    layers = []
    for layer in order:
        members = nodes[layer]
        weights = [i for n in members for i in n.input if i in sizes and i not in claimed]
        claimed.update(weights)
        # tree ensembles hold their trees in attributes: their nodes are the parameters
        trees = [tree_size(n) for n in members if n.op_type in TREE_OPS]
        layers.append(
            Layer(
                name=layer,
                op_type=_main_op(members, sizes),
                params=sum(sizes[w][0] for w in set(weights)) + sum(t[0] for t in trees),
                params_bytes=sum(sizes[w][1] for w in set(weights)) + sum(t[1] for t in trees),
                nodes=tuple(n.name or f"{n.op_type}_{i}" for i, n in enumerate(members)),
            )
        )
    return layers


def _main_op(members: Sequence[onnx.NodeProto], weights: dict[str, Any]) -> str:
    """The op characterising a layer: the first with weights, else the first non-shape op.

    Quantize/Dequantize nodes are skipped (a QDQ convolution is a ``Conv`` whose weights
    feed a DequantizeLinear) unless the layer has nothing else.
    """
    work = [n for n in members if n.op_type not in _QDQ_OPS] or list(members)
    dequantized = {  # weights as the layer's compute op sees them
        o for n in members if n.op_type in _QDQ_OPS and n.input[0] in weights for o in n.output
    }
    for node in work:
        if any(i in weights or i in dequantized for i in node.input):
            return node.op_type
    for node in work:
        if node.op_type not in _SHAPE_OPS:
            return node.op_type
    return work[0].op_type


_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_SHAPE_OPS = {"Shape", "Gather", "Squeeze", "Unsqueeze", "Concat", "Constant", "Cast", "Slice"}


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    dims: list[int | str] = []
    for i, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or ("batch" if i == 0 else f"d{i}"))
    return TensorSpec(value.name, tuple(dims), onnx_dtype_name(tensor_type.elem_type))


def _check_and_infer(proto: onnx.ModelProto, path: Path | None) -> onnx.ModelProto:
    import onnx

    try:
        if proto.ByteSize() > 2_000_000_000 and path is not None:
            onnx.checker.check_model(str(path))
        else:
            onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(
            f"{path or 'the given bytes'} fails the ONNX checker: {first}. "
            "The file may be corrupt or produced by a broken exporter."
        ) from exc
    try:
        return onnx.shape_inference.infer_shapes(proto)
    except Exception:  # shape inference is a bonus: a model it cannot follow still runs
        return proto


def external_files(proto: onnx.ModelProto, folder: Path) -> list[tuple[str, str, Path]]:
    """(tensor, location as written, resolved file) of every initializer whose data lies
    outside the graph, its location taken relative to ``folder`` (the model's)."""
    root = folder.resolve()
    found = []
    for tensor in proto.graph.initializer:
        if tensor.data_location == 1:
            location = next((kv.value for kv in tensor.external_data if kv.key == "location"), "")
            found.append((tensor.name, location, (root / location).resolve()))
    return found


def _load_external_data(proto: onnx.ModelProto, folder: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_model

    root = folder.resolve()
    external = external_files(proto, folder)
    for name, location, target in external:
        if not target.is_relative_to(root):
            raise UnsafeModelError(
                f"external data of tensor {name!r} points outside the model's folder "
                f"({location!r}); refusing to read it. Keep external data next to the .onnx file."
            )
        if not target.is_file():
            raise ModelLoadError(
                f"external data file {location!r} of tensor {name!r} is missing "
                f"next to the model in {root}"
            )
    if external:
        load_external_data_for_model(proto, str(root))


def _numel(dims: Sequence[int]) -> int:
    total = 1
    for d in dims:
        total *= int(d)
    return total
