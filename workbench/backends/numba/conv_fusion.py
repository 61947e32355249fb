"""CPU-only fusion: the activations of mobile networks into the convolution before them.

`graph.build_graph` fuses Relu, which every device's kernels apply. The CPU kernels'
epilogues (`cpu.ACTIVATIONS`) also apply HardSwish and HardSigmoid (mobilenet_v3),
Sigmoid, and SiLU, which exporters write as ``Mul(y, Sigmoid(y))`` (efficientnet): run
as their own nodes they read and write the whole activation once more, and in
mobilenet_v3_small at batch 1 the 19 HardSwish layers cost as much as a quarter of
the convolutions around them. Fused, they run on each output row while it is in cache.
"""

from __future__ import annotations

from collections.abc import Callable

from workbench.backends.numba.graph import Graph, Node

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
