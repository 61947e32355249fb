"""ONNX graph helpers shared by the transforms: layer <-> node mapping and new variants.

Tools such as ONNX Runtime's quantizer add nodes (QuantizeLinear, DequantizeLinear,
Cast) without our ``workbench.layer`` metadata and sometimes rename the nodes they
replace. `label_nodes` gives every node a canonical layer again, so a variant's
per-layer profile lines up with its parent's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from workbench.errors import TransformError
from workbench.model import LAYER_KEY, Layer, Model, set_layer_name

if TYPE_CHECKING:
    import onnx


def node_layers(proto: onnx.ModelProto) -> dict[str, str]:
    """Node name -> canonical layer, for every named node of ``proto``."""
    from workbench.loaders.onnx import canonical_layer_name

    return {node.name: canonical_layer_name(node, i) for i, node in enumerate(proto.graph.node)}


def nodes_for_layers(model: Model, layers: Iterable[str]) -> list[str]:
    """ONNX node names of the canonical ``layers`` of ``model`` (its ONNX form).

    Raises:
        TransformError: a layer name the model does not have.
    """
    onnx_model = model.to_onnx()
    by_name = {layer.name: layer for layer in onnx_model.layers}
    nodes: list[str] = []
    for name in layers:
        if name not in by_name:
            known = [x.name for x in onnx_model.layers]
            raise TransformError(f"{model.name} has no layer {name!r}; layers are {known}")
        for node in by_name[name].nodes:
            # ORT's dynamic quantizer first rewrites Gemm as MatMul + Add named <node>_MatMul
            nodes.extend((node, f"{node}_MatMul", f"{node}_Add"))
    return nodes


def label_nodes(proto: onnx.ModelProto, original: dict[str, str]) -> None:
    """Give every node of ``proto`` a ``workbench.layer`` (in place, on a fresh copy).

    A node keeps its label if it has one; else takes the layer of the original node of
    the same name (or of the longest original name it extends); else the layer of the
    node consuming its output (a Q/DQ pair belongs to the layer it feeds); else that of
    the node producing its input.
    """
    labels: dict[int, str] = {}
    for index, node in enumerate(proto.graph.node):
        meta = {kv.key: kv.value for kv in node.metadata_props}
        label = meta.get(LAYER_KEY) or _by_name(node.name, original)
        if label:
            labels[index] = label
    consumers: dict[str, list[int]] = {}
    producers: dict[str, int] = {}
    for index, node in enumerate(proto.graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
        for name in node.output:
            producers[name] = index
    # consumers first, to a fixed point (a Q -> DQ chain belongs to the op it feeds, even
    # when the DQ is labelled later in the same pass), then producers for what is left
    for use_producers in (False, True):
        for _ in range(len(proto.graph.node)):
            changed = False
            for index, node in enumerate(proto.graph.node):
                if index in labels:
                    continue
                label = _neighbour_label(node, labels, consumers, producers, use_producers)
                if label:
                    labels[index] = label
                    changed = True
            if not changed:
                break
    for index, node in enumerate(proto.graph.node):
        set_layer_name(node, labels.get(index) or node.name or f"{node.op_type}_{index}")


def _by_name(name: str, original: dict[str, str]) -> str:
    if name in original:
        return original[name]
    # the quantizer derives new names from old ones ("node_linear" -> "node_linear_MatMul",
    # "node_linear_MatMul_quant_scales_mul"): the longest original prefix is the source
    best = ""
    for old in original:
        if old and name.startswith(old + "_") and len(old) > len(best):
            best = old
    return original[best] if best else ""


def _neighbour_label(
    node: onnx.NodeProto,
    labels: dict[int, str],
    consumers: dict[str, list[int]],
    producers: dict[str, int],
    use_producers: bool,
) -> str:
    for output in node.output:
        for index in consumers.get(output, []):
            if index in labels:
                return labels[index]
    if not use_producers:
        return ""
    for name in node.input:
        index = producers.get(name, -1)
        if index in labels:
            return labels[index]
    return ""


def onnx_variant(parent: Model, proto: onnx.ModelProto, recipe: dict[str, Any]) -> Model:
    """A new ONNX `Model` derived from ``parent`` with graph ``proto`` and ``recipe``.

    Nodes are labelled with ``parent``'s canonical layers first (see `label_nodes`).
    """
    from workbench.loaders.onnx import model_from_proto

    label_nodes(proto, node_layers(parent.to_onnx().proto))  # type: ignore[arg-type]
    built = model_from_proto(proto, name=parent.name, source=parent.source, recipe=recipe)
    return parent.derive(
        framework="onnx",
        module=None,
        proto=proto,
        inputs=built.inputs,
        outputs=built.outputs,
        layers=[_main_compute_op(layer, proto) for layer in built.layers],
        recipe=recipe,
    )


_HELPER_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast", "Mul"}


def _main_compute_op(layer: Layer, proto: onnx.ModelProto) -> Layer:
    """The layer with its op type named after its compute node, not an added Q/DQ or Cast."""
    if layer.op_type not in _HELPER_OPS:
        return layer
    ops = {n.name: n.op_type for n in proto.graph.node if n.name in layer.nodes}
    compute = [ops[n] for n in layer.nodes if ops.get(n) not in _HELPER_OPS | {None}]
    return dataclasses.replace(layer, op_type=compute[0]) if compute else layer


def parent_proto(model: Model) -> onnx.ModelProto:
    """A private copy of ``model``'s ONNX graph, safe to edit."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model.to_onnx().proto)
    return copy
