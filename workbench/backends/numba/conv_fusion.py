"""CPU-only fusion: the activations of mobile networks into the convolution before them.

`graph.build_graph` fuses Relu, which every device's kernels apply. The CPU kernels'
epilogues (`cpu.ACTIVATIONS`) also apply HardSwish and HardSigmoid (mobilenet_v3),
Sigmoid, and SiLU, which exporters write as ``Mul(y, Sigmoid(y))`` (efficientnet): run
as their own nodes they read and write the whole activation once more, and in
mobilenet_v3_small at batch 1 the 19 HardSwish layers cost as much as a quarter of
the convolutions around them. Fused, they run on each output row while it is in cache.

`fuse_channel_shuffles` folds ShuffleNet's channel shuffles, once channels-last, into the
grouped 1x1 convolution before each: its products are written to their shuffled places.
"""

from __future__ import annotations

from collections.abc import Callable

from workbench.backends.numba import layout
from workbench.backends.numba.graph import Graph, Node, value_links

#: HardSigmoid fuses with these parameters only: torch's (the CPU epilogue's constants).
TORCH_HARD_SIGMOID = (1.0 / 6.0, 0.5)


def fuse_conv_activations(graph: Graph, no_fuse: Callable[[Node], bool]) -> Graph:
    """Return ``graph`` with each Conv's lone activation (or SiLU pair) in its epilogue.

    Nodes are changed in place (the graph is the session's own); nodes with a custom
    kernel (``no_fuse``) and graph outputs stay as they are.
    """
    users: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            users.setdefault(name, []).append(node)
    outputs = set(graph.outputs)
    dropped: set[int] = set()
    for conv in graph.nodes:
        if conv.op_type != "Conv" or conv.activation or no_fuse(conv):
            continue
        y = conv.outputs[0]
        readers = users.get(y, [])
        if y in outputs or any(no_fuse(n) for n in readers):
            continue
        fused = _activation(readers) or _silu(y, readers, users, outputs)
        if fused is None:
            continue
        name, nodes = fused
        conv.activation = name
        conv.outputs = list(nodes[-1].outputs)
        conv.fused += [n.name for n in nodes]
        dropped.update(id(n) for n in nodes)
    kept = [n for n in graph.nodes if id(n) not in dropped]
    return Graph(kept, graph.consts, graph.inputs, graph.outputs, graph.layer_nodes)


def _activation(readers: list[Node]) -> tuple[str, list[Node]] | None:
    """A lone HardSwish, Sigmoid or (torch's) HardSigmoid reading the convolution."""
    if len(readers) != 1:
        return None
    (act,) = readers
    if act.op_type in ("HardSwish", "Sigmoid"):
        return act.op_type, [act]
    if act.op_type == "HardSigmoid":
        params = (act.attrs.get("alpha", 0.2), act.attrs.get("beta", 0.5))
        if all(abs(p - q) < 1e-6 for p, q in zip(params, TORCH_HARD_SIGMOID, strict=True)):
            return "HardSigmoid", [act]
    return None


def _silu(
    y: str, readers: list[Node], users: dict[str, list[Node]], outputs: set[str]
) -> tuple[str, list[Node]] | None:
    """``Mul(y, Sigmoid(y))`` (either order), where the Sigmoid feeds only the Mul."""
    if len(readers) != 2:
        return None
    sigmoid = next((n for n in readers if n.op_type == "Sigmoid"), None)
    mul = next((n for n in readers if n.op_type == "Mul"), None)
    if sigmoid is None or mul is None:
        return None
    gate = sigmoid.outputs[0]
    if gate in outputs or users.get(gate) != [mul] or sorted(mul.inputs) != sorted([y, gate]):
        return None
    return "Silu", [sigmoid, mul]


def fuse_channel_shuffles(graph: Graph, no_fuse: Callable[[Node], bool]) -> Graph:
    """Return the channels-last ``graph`` (`layout`) with each channel shuffle (Reshape
    [N, H, W, g, C/g], Transpose `layout.SHUFFLE_NHWC_PERM`, Reshape [N, H, W, C]) that
    alone reads a grouped 1x1 Conv of ``g`` groups folded into it: the Conv gets a
    ``shuffle`` attribute (``g``) and writes channel ``j`` of group ``i`` to ``j * g + i``
    (`cpu_ops._grouped_pointwise`). The zoo ShuffleNet's 16 shuffles were a pass each.

    Nodes are changed in place (the graph is the session's own); the Conv's weight and
    bias must be constants (the kernel reorders them once).
    """
    users = value_links(graph.nodes)[0]
    outputs = set(graph.outputs)
    dropped: set[int] = set()
    for conv in graph.nodes:
        if not _shuffle_source(conv, graph) or no_fuse(conv):
            continue
        chain = _shuffle_chain(conv, users, outputs, graph)
        if chain is None or any(no_fuse(n) for n in chain):
            continue
        conv.attrs = {**conv.attrs, "shuffle": int(conv.attrs["group"])}
        conv.outputs = list(chain[-1].outputs)
        conv.fused += [n.name for n in chain]
        dropped.update(id(n) for n in chain)
    kept = [n for n in graph.nodes if id(n) not in dropped]
    return Graph(kept, graph.consts, graph.inputs, graph.outputs, graph.layer_nodes)


def _shuffle_source(conv: Node, graph: Graph) -> bool:
    """A channels-last grouped 1x1 Conv (stride 1, no pads) with constant weight and bias."""
    group = int(conv.attrs.get("group", 1))
    w = graph.consts.get(conv.inputs[1]) if len(conv.inputs) > 1 else None
    bias_const = len(conv.inputs) < 3 or not conv.inputs[2] or conv.inputs[2] in graph.consts
    return (
        conv.op_type == "Conv" and conv.channels_last and w is not None and bias_const
        and w.ndim == 4 and w.shape[2:] == (1, 1) and 1 < group < w.shape[0]
        and not any(conv.attrs.get("pads", [])) and set(conv.attrs.get("strides", [1])) == {1}
        and conv.inputs[0].endswith(layout.NHWC_SUFFIX)
    )  # fmt: skip


def _shuffle_chain(
    conv: Node, users: dict[str, list[Node]], outputs: set[str], graph: Graph
) -> list[Node] | None:
    """The shuffle's three nodes after ``conv``, each the lone reader of the one before,
    shuffling in as many groups as the Conv has; else None."""
    chain, value = [], conv.outputs[0]
    for op in ("Reshape", "Transpose", "Reshape"):
        readers = users.get(value, [])
        if value in outputs or len(readers) != 1 or readers[0].op_type != op:
            return None
        chain.append(readers[0])
        value = readers[0].outputs[0]
    split, swap, _ = chain
    shape = graph.consts.get(split.inputs[1]) if len(split.inputs) > 1 else None
    if [int(p) for p in swap.attrs.get("perm", [])] != layout.SHUFFLE_NHWC_PERM:
        return None
    if shape is None or shape.shape != (5,) or int(shape[3]) != int(conv.attrs["group"]):
        return None
    return chain
