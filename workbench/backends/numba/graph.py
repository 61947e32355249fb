"""The ONNX graph as the Numba executor sees it: nodes, constants, folding and fusion.

`build_graph` turns an ``onnx.ModelProto`` into a `Graph`: constants gathered,
sub-graphs that depend only on constants evaluated once, BatchNormalization folded
into the convolution before it, and a trailing Relu fused into Conv/Gemm/MatMul (with
a constant bias Add folded into MatMul) and into the Add of residual blocks. Passes a
device's kernels decide on (`conv_fusion`, `embedding_bag_graph`, `layout`) run on the
`Graph` afterwards, in `session`. Execution lives in `executor`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import UnsupportedModelError

#: Ops whose output is a view of their first input: they get no buffer of their own.
ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})

#: Ops that can absorb a following activation into their epilogue (Add: residual blocks).
FUSABLE_PRODUCERS = frozenset({"Conv", "Gemm", "MatMul", "Add"})
FUSABLE_ACTIVATIONS = frozenset({"Relu"})


@dataclass
class Node:
    """One step of the executed graph (after folding and fusion).

    Attributes:
        name: the ONNX node name (or ``<op_type>_<index>`` when unnamed).
        op_type: the ONNX op type.
        inputs: input value names; ``""`` marks an omitted optional input.
        outputs: output value names.
        attrs: the node's attributes as Python values.
        layer: the canonical layer the node belongs to.
        fused: names of the nodes folded or fused into this one.
        activation: an activation applied in the epilogue (``"Relu"``), or ``""``.
        cache: per-session data a kernel prepares once (transposed weights, workspaces).
        opset: the default-domain opset of the model (some ops changed meaning).
        const_inputs: positions of inputs that are constants (set when planning), so
            kernels may prepare them once (transpose a weight) but never an activation.
        channels_last: the node reads and writes NHWC data (see `layout`).
    """

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    layer: str
    fused: list[str] = field(default_factory=list)
    activation: str = ""
    cache: dict[Any, Any] = field(default_factory=dict)
    opset: int = 0
    const_inputs: frozenset[int] = frozenset()
    channels_last: bool = False


@dataclass
class Graph:
    """A model ready to plan: nodes in execution order and its constants.

    Attributes:
        nodes: the nodes to execute, in topological order.
        consts: initializers and folded values by name.
        inputs: graph input names (initializers excluded).
        outputs: graph output names.
        layer_nodes: canonical layer -> names of every original node in it (fused too).
    """

    nodes: list[Node]
    consts: dict[str, np.ndarray]
    inputs: list[str]
    outputs: list[str]
    layer_nodes: dict[str, list[str]]


FoldFn = Callable[[Node, list[Any]], list[np.ndarray]]


def op_types(proto: Any) -> list[str]:
    """The op types used by an ONNX model's main graph, in first-use order."""
    seen: dict[str, None] = {}
    for node in proto.graph.node:
        seen.setdefault(node.op_type, None)
    return list(seen)


def unsupported_ops(proto: Any, supported: Mapping[str, Any]) -> list[str]:
    """Op types of ``proto`` that are not in ``supported`` (non-default domains included)."""
    bad = []
    for node in proto.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if key not in supported and key != "Constant" and key not in bad:
            bad.append(key)
    return bad


def build_graph(
    proto: Any, fold: FoldFn, supported: Mapping[str, Any], no_fuse: Callable[[Node], bool]
) -> Graph:
    """Build the executable `Graph` of an ONNX model.

    Args:
        proto: the ``onnx.ModelProto``; it is not modified.
        fold: evaluates one node on host constants (the CPU kernels), for folding.
        supported: the op types the target device can run.
        no_fuse: nodes that must stay separate (they have a custom kernel).

    Returns:
        The graph with constants folded and activations fused.

    Raises:
        UnsupportedModelError: naming every op type the device cannot run.
    """
    from onnx import numpy_helper

    bad = unsupported_ops(proto, supported)
    if bad:
        raise UnsupportedModelError(f"unsupported op(s): {', '.join(bad)}")
    consts = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    nodes = [_to_node(n, i, opset) for i, n in enumerate(proto.graph.node)]
    layer_nodes: dict[str, list[str]] = {}
    for node in nodes:
        layer_nodes.setdefault(node.layer, []).append(node.name)
    inputs = [v.name for v in proto.graph.input if v.name not in consts]
    outputs = [v.name for v in proto.graph.output]
    typed = [*proto.graph.input, *proto.graph.value_info, *proto.graph.output]
    dtypes = {v.name: v.type.tensor_type.elem_type for v in typed if v.type.tensor_type.elem_type}
    nodes = _fold_constants(nodes, consts, fold, dtypes)
    nodes = _fold_batchnorm(nodes, consts, set(outputs), no_fuse)
    nodes = _fuse_bias(nodes, consts, set(outputs), no_fuse)
    nodes = _fuse_activations(nodes, set(outputs), no_fuse)
    return Graph(nodes, consts, inputs, outputs, layer_nodes)


def _to_node(proto_node: Any, index: int, opset: int) -> Node:
    from workbench.loaders.onnx import canonical_layer_name, node_attributes

    attrs = node_attributes(proto_node)
    name = proto_node.name or f"{proto_node.op_type}_{index}"
    return Node(
        name=name,
        op_type=proto_node.op_type,
        inputs=list(proto_node.input),
        outputs=list(proto_node.output),
        attrs=attrs,
        layer=canonical_layer_name(proto_node, index),
        opset=opset,
    )


def value_links(nodes: list[Node]) -> tuple[dict[str, list[Node]], dict[str, Node]]:
    """Each value's readers (in node order) and its producer, for the fusion passes."""
    users: dict[str, list[Node]] = {}
    producer: dict[str, Node] = {}
    for node in nodes:
        for name in node.inputs:
            users.setdefault(name, []).append(node)
        for name in node.outputs:
            producer[name] = node
    return users, producer


def _consumers(nodes: list[Node]) -> dict[str, list[Node]]:
    return value_links(nodes)[0]


def _fold_constants(
    nodes: list[Node], consts: dict[str, np.ndarray], fold: FoldFn, dtypes: Mapping[str, int]
) -> list[Node]:
    """Evaluate every node whose inputs are all constants, once, at compile time.

    ``CastLike(constant, graph_input)`` folds too: it needs only the input's dtype
    (``dtypes``, ONNX element types from shape inference), which the torch exporter
    uses for default biases.
    """
    from onnx import helper

    from workbench.loaders.onnx import constant_value

    kept = []
    for node in nodes:
        if node.op_type == "Constant":
            consts[node.outputs[0]] = constant_value(node.attrs, node.name)
            continue
        if node.op_type == "CastLike" and node.inputs[0] in consts and node.inputs[1] in dtypes:
            dtype = helper.tensor_dtype_to_np_dtype(dtypes[node.inputs[1]])
            consts[node.outputs[0]] = consts[node.inputs[0]].astype(dtype)
            continue
        if all(name == "" or name in consts for name in node.inputs):
            values = fold(node, [consts[n] if n else None for n in node.inputs])
            consts.update(zip(node.outputs, values, strict=True))
            continue
        kept.append(node)
    return kept


def _single_consumer(value: str, users: dict[str, list[Node]], outputs: set[str]) -> Node | None:
    nodes = users.get(value, [])
    if len(nodes) != 1 or value in outputs:
        return None
    return nodes[0]


def _fuse_pairs(
    nodes: list[Node],
    consts: dict[str, np.ndarray],
    outputs: set[str],
    no_fuse: Callable[[Node], bool],
    ops: tuple[str, str],
    merge: Callable[[Node, Node], bool],
) -> list[Node]:
    """Merge each ``ops[1]`` node into the ``ops[0]`` node (with constant weights) it alone
    consumes, when ``merge(first, second)`` agrees and rewires ``first``'s inputs."""
    users = _consumers(nodes)
    dropped: set[int] = set()
    for first in nodes:
        if first.op_type != ops[0] or no_fuse(first) or first.inputs[1] not in consts:
            continue
        second = _single_consumer(first.outputs[0], users, outputs)
        if second is None or second.op_type != ops[1] or no_fuse(second):
            continue
        if merge(first, second):
            first.outputs = list(second.outputs)
            first.fused.append(second.name)
            dropped.add(id(second))
    return [n for n in nodes if id(n) not in dropped]


def _fold_batchnorm(
    nodes: list[Node],
    consts: dict[str, np.ndarray],
    outputs: set[str],
    no_fuse: Callable[[Node], bool],
) -> list[Node]:
    """Fold an inference BatchNormalization into the Conv that feeds it (new weights)."""

    def merge(conv: Node, bn: Node) -> bool:
        if len(bn.outputs) > 1 or not all(n in consts for n in bn.inputs[1:5]):
            return False
        scale, beta, mean, var = (consts[n].astype(np.float64) for n in bn.inputs[1:5])
        factor = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        weight = consts[conv.inputs[1]]
        bias = consts[conv.inputs[2]] if len(conv.inputs) > 2 and conv.inputs[2] else 0.0
        shape = (-1,) + (1,) * (weight.ndim - 1)
        new_w, new_b = f"{conv.name}::bn_weight", f"{conv.name}::bn_bias"
        # the factor rounded to the weight's dtype, the product made there: one more
        # rounding (within 2 ulp of the float64 product), no float64 copy of every
        # weight (resnet50: 0.2 of the 1.3 s a cached compile took)
        factor_w = factor.astype(weight.dtype).reshape(shape)
        consts[new_w] = np.multiply(weight, factor_w, dtype=weight.dtype)
        consts[new_b] = ((bias - mean) * factor + beta).astype(weight.dtype)
        conv.inputs = [conv.inputs[0], new_w, new_b]
        return True

    return _fuse_pairs(nodes, consts, outputs, no_fuse, ("Conv", "BatchNormalization"), merge)


def _fuse_bias(
    nodes: list[Node],
    consts: dict[str, np.ndarray],
    outputs: set[str],
    no_fuse: Callable[[Node], bool],
) -> list[Node]:
    """Fold ``Add(MatMul(x, W), b)`` with a constant 1-D ``b`` into the MatMul's epilogue."""

    def merge(mm: Node, add: Node) -> bool:
        other = add.inputs[1] if add.inputs[0] == mm.outputs[0] else add.inputs[0]
        n = consts[mm.inputs[1]].shape[-1]
        if other not in consts or consts[other].size != n or consts[other].ndim > 1:
            return False
        mm.inputs = [*mm.inputs, other]
        return True

    return _fuse_pairs(nodes, consts, outputs, no_fuse, ("MatMul", "Add"), merge)


def _fuse_activations(
    nodes: list[Node], outputs: set[str], no_fuse: Callable[[Node], bool]
) -> list[Node]:
    """Apply a Relu that is the only consumer of a Conv/Gemm/MatMul/Add (or a Sum of
    two: ShuffleNet's residual blocks, an Add by another name) in its epilogue."""
    users = _consumers(nodes)
    dropped: set[int] = set()
    for producer in nodes:
        pair_sum = producer.op_type == "Sum" and len(producer.inputs) == 2
        if not (producer.op_type in FUSABLE_PRODUCERS or pair_sum) or no_fuse(producer):
            continue
        act = _single_consumer(producer.outputs[0], users, outputs)
        if act is None or act.op_type not in FUSABLE_ACTIVATIONS or no_fuse(act):
            continue
        producer.activation = act.op_type
        producer.outputs = list(act.outputs)
        producer.fused.append(act.name)
        dropped.add(id(act))
    return [n for n in nodes if id(n) not in dropped]
