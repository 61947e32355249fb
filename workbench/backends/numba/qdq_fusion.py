"""Find the QDQ products of an INT8 graph and make each one integer ``Int8Gemm`` node.

ONNX Runtime's static quantizer (``int8-static``, QDQ format) writes every quantized
MatMul and Gemm as ``DequantizeLinear(x_q) -> Gemm(x, DequantizeLinear(w_q), bias) ->
QuantizeLinear``: the activation comes in quantized, the weight is a constant int8
tensor (one scale per output channel, or one), the bias a constant. Run as written, the
activation is dequantized into a float tensor, the weight was folded to float at compile
time, and the product is a float GEMM. `fuse_int8_products` replaces the chain by one
node whose kernel (`quant_ops.bind_int8_gemm`) multiplies the quantized activation by
the int8 weight in int32 (`int8`) and applies, per output channel, ``acc * x_scale *
w_scale[n] + bias[n]``, the fused activation and, where the product's lone reader is a
QuantizeLinear, that quantization: what ONNX says the QDQ graph computes, up to the
float summation order of the product (see docs/numba.md, INT8). The node keeps the
product's name and layer; the DequantizeLinear goes where nothing else reads its float
output (a ``Shape`` reads the quantized tensor instead: same shape).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.backends.numba import int8
from workbench.backends.numba.graph import Graph, Node, value_links

__all__ = ["FUSED_CONV", "FUSED_OP", "fuse_int8_products"]

#: The op types of a fused product and convolution (not ONNX ops: only this executor
#: knows them).
FUSED_OP = "Int8Gemm"
FUSED_CONV = "Int8Conv"
#: Ops that run on quantized values unchanged between a Dequantize/Quantize pair.
PASSTHROUGH = frozenset({"MaxPool", "Reshape", "Flatten"})
#: Activation types the integer kernels read (uint8: ORT's default; int8).
ACTIVATION_TYPES = frozenset({"uint8", "int8"})


@dataclasses.dataclass(frozen=True)
class _Weight:
    """A constant weight's DequantizeLinear: its integer matrix, scale, zero and axis;
    a 2-D convolution's ``[M, C, kh, kw]`` weight is seen as ``[M, kh * kw * C]`` (axis
    0), its ``kernel`` kept."""

    values: np.ndarray
    scale: np.ndarray
    zero: np.ndarray
    axis: int
    kernel: tuple[int, ...] = ()


def _weights(proto: Any, consts: dict[str, np.ndarray]) -> dict[str, _Weight]:
    """Folded DequantizeLinear outputs of 2-D and 4-D integer constants, by output name."""
    from workbench.loaders.onnx import node_attributes

    found = {}
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or not all(n in consts for n in node.input if n):
            continue
        values = consts[node.input[0]]
        if values.ndim not in (2, 4) or values.dtype.name not in ("int8", "uint8"):
            continue
        attrs = node_attributes(node)
        if attrs.get("block_size", 0):
            continue
        zero = (
            consts[node.input[2]]
            if len(node.input) > 2 and node.input[2]
            else np.zeros((), np.int8)
        )
        axis = int(attrs.get("axis", 1)) % values.ndim
        scale = consts[node.input[1]]
        if values.ndim == 4:  # a convolution's: one scale per output channel, or one
            if axis != 0 and scale.size > 1:
                continue
            kernel = tuple(values.shape[2:])
            # taps in (i, j, c) order: each one C values of an NHWC pixel (`int8._im2col`)
            matrix = values.transpose(0, 2, 3, 1).reshape(values.shape[0], -1)
            found[node.output[0]] = _Weight(matrix, scale, zero, 0, kernel)
            continue
        found[node.output[0]] = _Weight(values, scale, zero, axis)
    return found


def _scalar(consts: dict[str, np.ndarray], name: str) -> bool:
    return name in consts and consts[name].size == 1


def _per_tensor(node: Node, consts: dict[str, np.ndarray]) -> bool:
    """A Quantize/DequantizeLinear with one constant scale and a constant integer zero
    point of the types the kernels read (the zero point fixes the type)."""
    if len(node.inputs) < 3 or not node.inputs[2] or node.attrs.get("block_size", 0):
        return False
    scale, zero = node.inputs[1], node.inputs[2]
    return (
        _scalar(consts, scale)
        and consts[scale].dtype == np.float32
        and _scalar(consts, zero)
        and consts[zero].dtype.name in ACTIVATION_TYPES
    )


def _product(node: Node, consts: dict[str, np.ndarray], weights: dict[str, _Weight]) -> Any:
    """``(weight, output-channel axis of its [rows, cols], bias name)`` of a Gemm or
    MatMul that the integer kernel computes, else None."""
    if len(node.inputs) < 2 or node.inputs[1] not in weights:
        return None
    weight = weights[node.inputs[1]]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    if (node.op_type == "Conv") != bool(weight.kernel):
        return None
    if node.op_type == "Conv":
        if int(node.attrs.get("group", 1)) != 1:
            return None  # grouped and depthwise convolutions stay float
        out_axis = 0
    elif node.op_type == "Gemm":
        if node.attrs.get("transA", 0) or node.attrs.get("alpha", 1.0) != 1.0:
            return None
        if bias and node.attrs.get("beta", 1.0) != 1.0:
            return None
        out_axis = 0 if node.attrs.get("transB", 0) else 1
    elif node.op_type == "MatMul":
        out_axis = 1
    else:
        return None
    channels = weight.values.shape[out_axis]
    if weight.scale.size not in (1, channels) or weight.zero.size not in (1, channels):
        return None
    if weight.scale.size > 1 and weight.axis != out_axis:
        return None  # one scale per input channel: no per-output-channel epilogue
    if bias and (bias not in consts or consts[bias].size != channels):
        return None
    return weight, out_axis, bias


def _same_quantization(dq: Node, q: Node, consts: dict[str, np.ndarray]) -> bool:
    """Whether a QuantizeLinear undoes a DequantizeLinear: both per tensor, with equal
    scales and zero points (of one type)."""
    if not (_per_tensor(dq, consts) and _per_tensor(q, consts)):
        return False
    pairs = [(consts[dq.inputs[i]], consts[q.inputs[i]]) for i in (1, 2)]
    return all(a.dtype == b.dtype and a.reshape(()) == b.reshape(()) for a, b in pairs)


def _quantized_passthrough(graph: Graph, no_fuse: Callable[[Node], bool]) -> Graph:
    """Run each MaxPool, Reshape or Flatten that sits between a DequantizeLinear and a
    QuantizeLinear of the same scale and zero point on the quantized values.

    Exact: the maximum of dequantized values is the dequantized maximum (a positive
    scale keeps order), a view moves no value, and quantizing a dequantized value gives
    it back. The sample CNN's pooling and its flatten before the classifier ran in float
    between such pairs."""
    nodes, consts, outputs = graph.nodes, graph.consts, set(graph.outputs)
    users, producer = value_links(nodes)
    dropped: set[int] = set()
    for node in nodes:
        if node.op_type not in PASSTHROUGH or no_fuse(node) or len(node.outputs) != 1:
            continue
        dq = producer.get(node.inputs[0])
        readers = users.get(node.outputs[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(readers) != 1:
            continue
        (q,) = readers
        if q.op_type != "QuantizeLinear" or no_fuse(dq) or no_fuse(q):
            continue
        if node.outputs[0] in outputs or not _same_quantization(dq, q, consts):
            continue
        node.inputs = [dq.inputs[0], *node.inputs[1:]]
        node.outputs = list(q.outputs)
        node.fused.append(q.name)
        dropped.add(id(q))
        if users.get(dq.outputs[0]) == [node] and dq.outputs[0] not in outputs:
            node.fused.insert(0, dq.name)
            dropped.add(id(dq))
    kept = [n for n in nodes if id(n) not in dropped]
    return dataclasses.replace(graph, nodes=kept)


def _dynamic_products(graph: Graph, no_fuse: Callable[[Node], bool]) -> Graph:
    """``MatMulInteger(x_q, w) -> Cast(float) -> Mul(scale) [-> Add(bias)]`` (what ORT's
    dynamic quantizer writes after each DynamicQuantizeLinear) as one ``Int8Gemm`` node
    with a computed scale: the same float32 arithmetic (``float(acc) * scale + bias``)
    in one pass instead of four over the output."""
    nodes, consts, outputs = graph.nodes, graph.consts, set(graph.outputs)
    users, producer = value_links(nodes)

    def per_channel(name: str, channels: int) -> bool:
        """A scale of one value or one per channel: a constant, a DynamicQuantizeLinear's
        scale, or their product (what ORT writes)."""
        if name in consts:
            return consts[name].size in (1, channels)
        source = producer.get(name)
        if source is not None and source.op_type == "DynamicQuantizeLinear":
            return source.outputs[1] == name
        if source is None or source.op_type != "Mul":
            return False
        return all(per_channel(n, channels) for n in source.inputs)

    def only_reader(node: Node, op: str) -> Node | None:
        found = users.get(node.outputs[0], [])
        ok = len(found) == 1 and found[0].op_type == op and node.outputs[0] not in outputs
        return found[0] if ok and not no_fuse(found[0]) else None

    dropped: set[int] = set()
    fused: dict[int, Node] = {}
    for mm in nodes:
        if mm.op_type != "MatMulInteger" or no_fuse(mm) or mm.inputs[1] not in consts:
            continue
        weight = consts[mm.inputs[1]]
        zero_w = mm.inputs[3] if len(mm.inputs) > 3 and mm.inputs[3] else ""
        a_zero = mm.inputs[2] if len(mm.inputs) > 2 and mm.inputs[2] else ""
        if weight.ndim != 2 or weight.dtype.name not in ("int8", "uint8") or not a_zero:
            continue
        if zero_w and zero_w not in consts:
            continue
        cast = only_reader(mm, "Cast")
        mul = only_reader(cast, "Mul") if cast is not None else None
        if cast is None or mul is None or int(cast.attrs.get("to", 0)) != 1 or mul.activation:
            continue  # 1: float32
        scale = mul.inputs[1] if mul.inputs[0] == cast.outputs[0] else mul.inputs[0]
        channels = weight.shape[1]
        if not per_channel(scale, channels):
            continue
        add = only_reader(mul, "Add")
        bias = ""
        if add is not None:
            bias = add.inputs[1] if add.inputs[0] == mul.outputs[0] else add.inputs[0]
            if bias not in consts or consts[bias].size != channels:
                add, bias = None, ""
        zeros = consts[zero_w].reshape(-1) if zero_w else np.zeros(1, np.int8)
        packed = int8.pack(weight, zeros, axis=1)
        names = {k: f"{mm.name}::int8_{k}" for k in ("weight", "sums", "bias")}
        consts[names["weight"]] = packed.values
        consts[names["sums"]] = packed.column_sums
        consts[names["bias"]] = (
            np.ascontiguousarray(consts[bias].reshape(-1), np.float32)
            if bias
            else np.zeros(channels, np.float32)
        )
        last = add if add is not None else mul
        chain = [cast, mul, *([add] if add is not None else [])]
        fused[id(mm)] = Node(
            name=mm.name,
            op_type=FUSED_OP,
            inputs=[mm.inputs[0], a_zero, names["weight"], names["sums"], scale, names["bias"]],
            outputs=list(last.outputs),
            attrs={"y_scale": 1.0, "y_zero": 0.0, "dtype": "float32", "channels": channels,
                   "depth": packed.depth, "vnni": packed.vnni},
            layer=mm.layer,
            fused=[*mm.fused, *(name for n in chain for name in (n.name, *n.fused))],
            activation=last.activation,
            opset=mm.opset,
        )  # fmt: skip
        dropped.update(id(n) for n in chain)
    kept = [fused.get(id(n), n) for n in nodes if id(n) not in dropped]
    return dataclasses.replace(graph, nodes=kept)


def fuse_int8_products(graph: Graph, proto: Any, no_fuse: Callable[[Node], bool]) -> Graph:
    """Replace each QDQ Gemm/MatMul (see the module docstring) by one ``Int8Gemm`` node.

    The node's inputs are ``[x_q, x_zero, packed weight, its column sums, scale, bias]``
    (the last four new constants named after it, see `int8.pack`) and its attributes
    ``y_scale``, ``y_zero``, ``dtype`` (``float32`` when no QuantizeLinear is fused) and
    the packed weight's ``channels``, ``depth`` and ``vnni``. Nodes with a custom kernel
    (``no_fuse``) are left alone; the graph's own nodes are changed in place.
    """
    graph = _dynamic_products(_quantized_passthrough(graph, no_fuse), no_fuse)
    nodes, consts, outputs = graph.nodes, graph.consts, set(graph.outputs)
    weights = _weights(proto, consts)
    users, producer = value_links(nodes)
    dropped: set[int] = set()
    fused: dict[int, Node] = {}
    for node in nodes:
        found = None if no_fuse(node) else _product(node, consts, weights)
        dq = producer.get(node.inputs[0])
        if found is None or dq is None or dq.op_type != "DequantizeLinear" or no_fuse(dq):
            continue
        if not _per_tensor(dq, consts):
            continue
        weight, out_axis, bias = found
        readers = users.get(node.outputs[0], [])
        quantize = readers[0] if len(readers) == 1 else None
        if quantize is not None and (
            quantize.op_type != "QuantizeLinear"
            or no_fuse(quantize)
            or not _per_tensor(quantize, consts)
            or node.outputs[0] in outputs
        ):
            quantize = None
        fused[id(node)] = _fused_node(node, dq, quantize, weight, out_axis, bias, consts)
        others = [n for n in users.get(dq.outputs[0], []) if n is not node]
        if dq.outputs[0] not in outputs and all(n.op_type == "Shape" for n in others):
            for reader in others:  # the quantized tensor has the same shape
                reader.inputs = [dq.inputs[0] if n == dq.outputs[0] else n for n in reader.inputs]
            dropped.add(id(dq))
            fused[id(node)].fused.insert(0, dq.name)
        if quantize is not None:
            dropped.add(id(quantize))
    kept = [fused.get(id(n), n) for n in nodes if id(n) not in dropped]
    return dataclasses.replace(graph, nodes=kept)


def _fused_node(
    node: Node,
    dq: Node,
    quantize: Node | None,
    weight: _Weight,
    out_axis: int,
    bias: str,
    consts: dict[str, np.ndarray],
) -> Node:
    """The ``Int8Gemm`` node and its constants (packed weight, per-channel scale, bias)."""
    channels = weight.values.shape[out_axis]
    x_scale = consts[dq.inputs[1]].reshape(()).astype(np.float32)
    w_scale = np.broadcast_to(weight.scale.astype(np.float32).reshape(-1), (channels,))
    names = {key: f"{node.name}::int8_{key}" for key in ("weight", "sums", "scale", "bias")}
    packed = int8.pack(weight.values, weight.zero.reshape(-1), out_axis)
    consts[names["weight"]] = packed.values
    consts[names["sums"]] = packed.column_sums
    consts[names["scale"]] = np.ascontiguousarray(x_scale * w_scale, np.float32)
    consts[names["bias"]] = (
        np.ascontiguousarray(consts[bias].reshape(-1), np.float32)
        if bias
        else np.zeros(channels, np.float32)
    )
    shape = {"channels": packed.channels, "depth": packed.depth, "vnni": packed.vnni}
    attrs: dict[str, Any] = {"y_scale": 1.0, "y_zero": 0.0, "dtype": "float32", **shape}
    outputs = list(node.outputs)
    fused = list(node.fused)
    if quantize is not None:
        zero = consts[quantize.inputs[2]]
        attrs = {
            "y_scale": float(consts[quantize.inputs[1]].reshape(())),
            "y_zero": float(zero.reshape(())),
            "dtype": zero.dtype.name,
            **shape,
        }
        outputs = list(quantize.outputs)
        fused.append(quantize.name)
    if weight.kernel:  # the convolution's geometry, for its im2col
        keys = ("kernel_shape", "strides", "pads", "dilations", "auto_pad")
        attrs.update({k: node.attrs[k] for k in keys if k in node.attrs})
        attrs["kernel_shape"] = list(weight.kernel)
    return Node(
        name=node.name,
        op_type=FUSED_CONV if weight.kernel else FUSED_OP,
        inputs=[dq.inputs[0], dq.inputs[2], *names.values()],
        outputs=outputs,
        attrs=attrs,
        layer=node.layer,
        fused=fused,
        activation=node.activation,
        opset=node.opset,
    )
