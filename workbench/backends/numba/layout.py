"""Channels-last (NHWC) execution for the CPU: the graph pass that sets it up.

An NCHW convolution lowered to GEMM needs an im2col matrix whose rows are shifted
copies of whole image planes, a few values long on small feature maps, and its GEMM
result comes back channel-major, so it must be copied again into NCHW. In NHWC each
im2col entry is a pixel's C contiguous channel values, and the GEMM's
``[N*OH*OW, M]`` result already *is* the NHWC output: bias and activation run in place
and nothing is copied back. Measured on the sample CNN (batch 32, 2 cores) the im2col
of a 3x3 convolution went from 0.57 ms to 0.08 ms.

`channels_last` rewrites a `Graph` so every 2-D convolution (grouped and depthwise
ones included, see `depthwise`) runs NHWC, and so do the ops between convolutions that
do not care which axis holds the channels (pooling, LRN, elementwise ops, per-tensor
Quantize/DequantizeLinear, Concat), the spatial means of squeeze-and-excitation
blocks (GlobalAveragePool, ReduceMean over H and W) and ShuffleNet's channel shuffles
(`SHUFFLE_PERM`). The layout is chosen once for the whole graph: an NHWC value is
named ``<value>::nhwc``; `Transpose` nodes in the ``(layout)`` layer convert at the
boundaries, once per value whatever the number of consumers (a ``Reshape`` view where
the value is 1x1 in space), and graph outputs are always NCHW.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workbench.backends.numba.graph import Graph, Node, value_links
from workbench.backends.numba.qdq_fusion import FUSED_CONV
from workbench.loaders.onnx import LAYOUT_LAYER

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]
#: An NCHW axis's position in NHWC.
NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
NHWC_SUFFIX = "::nhwc"
#: A convolution with at most this many input channels reads an NCHW input as it is
#: (`depthwise.conv_nchw_to_nhwc`): an image's first convolution. Transposing a batch of
#: 32 RGB images took 5% of mobilenet_v3_small's time, and its 27-value im2col rows
#: made the GEMM after it the slowest layer.
NCHW_INPUT_MAX_CHANNELS = 4

#: Ops that compute each element from the same element of their inputs.
#: (Clip's other inputs are scalar bounds, which no layout changes.)
POINTWISE = frozenset(
    {
        *("Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Gelu", "Identity", "Cast", "Clip"),
        *("Neg", "Abs", "Reciprocal", "Log", "Floor", "Ceil"),
        *("LeakyRelu", "HardSigmoid", "HardSwish", "IsNaN", "IsInf"),
    }
)
#: Ops on an NCHW value that start an NHWC chain when a convolution converting the
#: value reads their output (`_Rewriter._feeds_converting_conv`): they keep the channels,
#: and 2-D pooling runs faster NHWC. On digits-cnn cut before its MaxPool (batch 64, the
#: loaded 2-core VM) the NCHW MaxPool took 0.3-0.6 ms against 0.07-0.12 ms NHWC.
STARTS_CHAIN = frozenset({"MaxPool", "AveragePool", *POINTWISE})
#: Pointwise where their scale and zero point are one number (`_Rewriter._per_tensor`).
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: Pointwise ops with two or more inputs, which broadcast (the same in either layout,
#: since every 4-D operand is permuted alike).
BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Sum"})


def channels_last(graph: Graph, no_fuse: Callable[[Node], bool]) -> Graph:
    """Return ``graph`` rewritten to run its 2-D convolutions channels-last.

    Nodes are changed in place (the graph is the executor's own); ``no_fuse`` nodes
    (those with a custom kernel) keep NCHW, since a user's kernel expects it.
    """
    rewriter = _Rewriter(graph)
    rewriter.shuffles = _channel_shuffles(graph)
    rewriter.read = {name for node in graph.nodes for name in node.inputs} | set(graph.outputs)
    for node in graph.nodes:
        if no_fuse(node) or not rewriter.try_channels_last(node):
            rewriter.keep_nchw(node)
    for name in graph.outputs:
        if name in rewriter.nhwc and name not in rewriter.nchw:
            rewriter.convert(name, to_nhwc=False)
    layer_nodes = dict(graph.layer_nodes)
    if rewriter.inserted:
        layer_nodes[LAYOUT_LAYER] = [n.name for n in rewriter.inserted]
    return Graph(rewriter.nodes, graph.consts, graph.inputs, graph.outputs, layer_nodes)


#: A channel shuffle (ShuffleNet): Reshape [N, g, C/g, H, W], this Transpose, Reshape
#: [N, C, H, W]. In NHWC the same three ops are Reshape [N, H, W, g, C/g], Transpose
#: (0, 1, 2, 4, 3), Reshape [N, H, W, C], so the shuffle stays channels-last instead of
#: costing a conversion to NCHW and back around each one (the zoo ShuffleNet's 16
#: shuffles: 1.2 ms of its layout conversions at batch 1, loaded, against ORT's 0.45 ms
#: for its own reorders).
SHUFFLE_PERM = [0, 2, 1, 3, 4]
#: The shuffle's Transpose in NHWC (`cpu_ops.transpose` gathers each pixel's channels).
SHUFFLE_NHWC_PERM = [0, 1, 2, 4, 3]


def _channel_shuffles(graph: Graph) -> dict[str, list[int]]:
    """The nodes of each channel shuffle whose shapes are constants, by name, with the
    permutation that takes each one's NCHW shape (or perm) to its NHWC one. A 0 in a
    shape (copy the input's dimension) is taken only for the batch, which stays first."""
    users = value_links(graph.nodes)[0]
    outputs = set(graph.outputs)

    def only_reader(name: str, op: str) -> Node | None:
        readers = users.get(name, [])
        if name in outputs or len(readers) != 1 or readers[0].op_type != op:
            return None
        return readers[0]

    def shape(node: Node, rank: int) -> np.ndarray | None:
        value = graph.consts.get(node.inputs[1]) if len(node.inputs) > 1 else None
        if value is None or value.shape != (rank,) or any(value[1:] == 0):
            return None
        return value

    found: dict[str, list[int]] = {}
    for split in graph.nodes:
        if split.op_type != "Reshape" or shape(split, 5) is None:
            continue
        swap = only_reader(split.outputs[0], "Transpose")
        if swap is None or [int(p) for p in swap.attrs.get("perm", [])] != SHUFFLE_PERM:
            continue
        merge = only_reader(swap.outputs[0], "Reshape")
        if merge is None or shape(merge, 4) is None:
            continue
        found[split.name] = [0, 3, 4, 1, 2]
        found[swap.name] = SHUFFLE_NHWC_PERM
        found[merge.name] = TO_NHWC
    return found


class _Rewriter:
    """Walks the nodes in order, tracking in which layouts each value exists."""

    def __init__(self, graph: Graph) -> None:
        self.consts = graph.consts
        self.nodes: list[Node] = []
        self.inserted: list[Node] = []
        # value names available NHWC (as name + NHWC_SUFFIX) and NCHW (as name)
        self.nhwc: set[str] = set()
        self.nchw: set[str] = set(graph.inputs) | set(graph.consts)
        # values whose spatial size is 1x1 ([N, C, 1, 1], a squeeze-and-excitation's
        # channel weights): the same bytes in both layouts, so a Reshape converts them
        self.unit: set[str] = set()
        # nodes of channel shuffles (`_channel_shuffles`)
        self.shuffles: dict[str, list[int]] = {}
        # values some node or the graph's outputs read
        self.read: set[str] = set()
        # each value's readers, by the names the graph had before the rewrite
        self.users: dict[str, list[Node]] = value_links(graph.nodes)[0]
        self.outputs = set(graph.outputs)

    def keep_nchw(self, node: Node) -> None:
        for name in node.inputs:
            if name in self.nhwc and name not in self.nchw:
                self.convert(name, to_nhwc=False)
        self.nodes.append(node)
        self.nchw.update(node.outputs)

    def try_channels_last(self, node: Node) -> bool:
        """Rewrite ``node`` to NHWC if it can and it pays; False leaves it untouched."""
        op = node.op_type
        if op == "Conv":
            return self._conv(node)
        if op == FUSED_CONV:  # its im2col reads NHWC taps and its rows are NHWC pixels
            if node.inputs[0] not in self.nhwc:
                self.convert(node.inputs[0], to_nhwc=True)
            return self._rewrite(node, [node.inputs[0]], nhwc_output=True)
        first = node.inputs[0] if node.inputs else ""
        if op == "Dropout" and first in self.nhwc and not self.read.intersection(node.outputs[1:]):
            # an opset-9 export's mask output that nothing reads (SqueezeNet's): without
            # it the Dropout is pointwise, not two conversions of its input
            node.outputs = node.outputs[:1]
        if len(node.outputs) != 1:
            return False
        if first not in self.nhwc:
            # only continue an NHWC chain, never start one for these ops, unless a
            # convolution that converts the value anyway reads what they make
            if op not in STARTS_CHAIN or not self._feeds_converting_conv(node):
                return False
            self.convert(first, to_nhwc=True)
        if op in ("MaxPool", "AveragePool"):
            if len(node.attrs.get("kernel_shape", ())) != 2:
                return False
            return self._rewrite(node, [first], nhwc_output=True)
        if op == "LRN":  # its channel window runs along the contiguous axis in NHWC
            return self._rewrite(node, [first], nhwc_output=True)
        if op == "GlobalAveragePool" or (op == "ReduceMean" and self._spatial_mean(node)):
            # [N, 1, 1, C] in NHWC is [N, C, 1, 1] in NCHW, byte for byte
            self.unit.add(node.outputs[0])
            return self._rewrite(node, [first], nhwc_output=False)
        if op in POINTWISE or (op == "Dropout" and len(node.inputs) == 1):
            self._keep_unit(node, [first])
            return self._rewrite(node, [first], nhwc_output=True)
        if op in QDQ and self._per_tensor(node):  # an INT8 CNN's pairs between convolutions
            return self._rewrite(node, [first], nhwc_output=True)
        if op in BROADCASTING:
            return self._broadcasting(node)
        if node.name in self.shuffles:
            return self._shuffle(node, self.shuffles[node.name])
        if op == "Concat":
            if not all(name in self.nhwc for name in node.inputs):
                return False
            node.attrs = {**node.attrs, "axis": NHWC_AXIS[int(node.attrs["axis"]) % 4]}
            return self._rewrite(node, list(node.inputs), nhwc_output=True)
        return False

    def _feeds_converting_conv(self, node: Node) -> bool:
        """Whether ``node`` and the ops after it (each its predecessor's only reader)
        are `STARTS_CHAIN` ops leading to a convolution that converts its input to NHWC
        (not an image's first one, see `NCHW_INPUT_MAX_CHANNELS`). A model cut
        mid-network (`workbench.planning.cuts`) starts with such a chain on an NCHW
        feature map: converted where the chain starts, its ops run the NHWC kernels the
        whole model ran, at the price of converting a pooling's input, not its output."""
        while node.op_type != "Conv":
            pooling = node.op_type in ("MaxPool", "AveragePool")
            if (
                node.op_type not in STARTS_CHAIN
                or len(node.outputs) != 1
                or (pooling and len(node.attrs.get("kernel_shape", ())) != 2)
            ):
                return False
            readers = self.users.get(node.outputs[0], [])
            if len(readers) != 1 or node.outputs[0] in self.outputs:
                return False
            node = readers[0]
        weight = self.consts.get(node.inputs[1]) if len(node.inputs) > 1 else None
        if weight is None or weight.ndim != 4:
            return False
        return int(node.attrs.get("group", 1)) != 1 or weight.shape[1] > NCHW_INPUT_MAX_CHANNELS

    def _spatial_mean(self, node: Node) -> bool:
        """Whether a ReduceMean averages a 4-D value over its two spatial axes, keeping
        them (what exporters make of an adaptive average pool to 1x1)."""
        if len(node.inputs) > 1 and node.inputs[1]:
            if node.inputs[1] not in self.consts:
                return False
            axes = [int(a) for a in self.consts[node.inputs[1]].reshape(-1)]
        else:
            axes = [int(a) for a in node.attrs.get("axes", [])]
        return bool(node.attrs.get("keepdims", 1)) and sorted(a % 4 for a in axes) == [2, 3]

    def _keep_unit(self, node: Node, activations: list[str]) -> None:
        """A pointwise op of 1x1 values makes a 1x1 value."""
        if activations and all(name in self.unit for name in activations):
            self.unit.add(node.outputs[0])

    def _per_tensor(self, node: Node) -> bool:
        """Whether a Quantize/DequantizeLinear has one constant scale and zero point (a
        per-channel one follows its ``axis``, which is NCHW's)."""
        params = [name for name in node.inputs[1:] if name]
        return all(name in self.consts and self.consts[name].size == 1 for name in params)

    def _conv(self, node: Node) -> bool:
        weight = self.consts.get(node.inputs[1])
        x = node.inputs[0]
        if weight is None or weight.ndim != 4 or x in self.consts:
            return False
        group = int(node.attrs.get("group", 1))
        if x not in self.nhwc and group == 1 and weight.shape[1] <= NCHW_INPUT_MAX_CHANNELS:
            # an image's first convolution reads it NCHW: no transpose of the image
            return self._rewrite(node, [], nhwc_output=True)
        if x not in self.nhwc:
            self.convert(x, to_nhwc=True)
        pointwise = weight.shape[2:] == (1, 1) and set(node.attrs.get("strides", [1])) == {1}
        if pointwise and not any(node.attrs.get("pads", [])):
            self._keep_unit(node, [x])
        return self._rewrite(node, [x], nhwc_output=True)

    def _shuffle(self, node: Node, perm: list[int]) -> bool:
        """A node of a channel shuffle whose input is NHWC, in its NHWC form."""
        if node.op_type == "Transpose":
            node.attrs = {**node.attrs, "perm": perm}
            return self._rewrite(node, [node.inputs[0]], nhwc_output=True)
        target = f"{node.inputs[1]}{NHWC_SUFFIX}"
        self.consts[target] = self.consts[node.inputs[1]][perm]
        node.inputs = [node.inputs[0], target]
        return self._rewrite(node, [node.inputs[0]], nhwc_output=True)

    def _broadcasting(self, node: Node) -> bool:
        activations = [name for name in node.inputs if name not in self.consts]
        if not activations or not all(name in self.nhwc for name in activations):
            return False
        if any(self.consts[name].ndim > 4 for name in node.inputs if name in self.consts):
            return False
        for name in node.inputs:
            if name in self.consts and name + NHWC_SUFFIX not in self.consts:
                value = self.consts[name]
                value4 = value.reshape((1,) * (4 - value.ndim) + value.shape)
                self.consts[name + NHWC_SUFFIX] = np.ascontiguousarray(value4.transpose(TO_NHWC))
        self._keep_unit(node, activations)
        return self._rewrite(node, list(node.inputs), nhwc_output=True)

    def _rewrite(self, node: Node, nhwc_inputs: list[str], nhwc_output: bool) -> bool:
        node.inputs = [
            name + NHWC_SUFFIX if name in nhwc_inputs and name else name for name in node.inputs
        ]
        node.channels_last = True
        if nhwc_output:
            self.nhwc.add(node.outputs[0])
            node.outputs = [node.outputs[0] + NHWC_SUFFIX]
        else:
            self.nchw.add(node.outputs[0])
        self.nodes.append(node)
        return True

    def convert(self, name: str, to_nhwc: bool) -> None:
        """Insert the Transpose that makes ``name`` available in the other layout."""
        source, target = (name, name + NHWC_SUFFIX) if to_nhwc else (name + NHWC_SUFFIX, name)
        node = Node(
            name=f"{name}::to_{'nhwc' if to_nhwc else 'nchw'}",
            op_type="Transpose",
            inputs=[source],
            outputs=[target],
            attrs={"perm": TO_NHWC if to_nhwc else TO_NCHW},
            layer=LAYOUT_LAYER,
        )
        if name in self.unit:  # 1x1 spatial: a view with the other shape, nothing copied
            shape = f"{node.name}::shape"
            self.consts[shape] = np.array([0, 1, 1, -1] if to_nhwc else [0, -1, 1, 1], np.int64)
            node.op_type, node.inputs, node.attrs = "Reshape", [source, shape], {}
        self.nodes.append(node)
        self.inserted.append(node)
        (self.nhwc if to_nhwc else self.nchw).add(name)
