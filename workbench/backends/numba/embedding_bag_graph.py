"""Find the exported embedding bags in a `Graph` and make each one ``EmbeddingBag`` node.

`workbench.loaders.embedding_export` writes an ``nn.EmbeddingBag`` with fixed-size bags
as ``Gather(table, ids)`` then ``ReduceSum`` / ``ReduceMean`` over the bag axis (with
``Mul(rows, Unsqueeze(weights, -1))`` between them for per-sample weights). Run as
written, the Gather materialises a ``(bags, size, width)`` intermediate and the reduction
reads it back; `fuse_embedding_bags` replaces the chain by one node that the fused
gather-reduce kernel (`workbench.backends.numba.embedding_bag.bind_embedding_bag`) runs,
reading each looked-up row once. The node keeps the Gather's name and layer
(``tables.3``), so per-layer timings stay under the table's canonical name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from workbench.backends.numba.graph import Graph, Node, value_links

__all__ = ["FUSED_OP", "fuse_embedding_bags"]

#: The op type of a fused bag (not an ONNX op: only this executor knows it).
FUSED_OP = "EmbeddingBag"

_MODES = {"ReduceSum": "sum", "ReduceMean": "mean"}


def _axes(node: Node, consts: Mapping[str, np.ndarray]) -> list[int] | None:
    """A node's constant ``axes`` (attribute or input), or None when not constant."""
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(node.inputs) > 1 and node.inputs[1] in consts:
        return [int(a) for a in np.asarray(consts[node.inputs[1]]).reshape(-1)]
    return None


def _table(gather: Node, consts: Mapping[str, np.ndarray]) -> bool:
    """A Gather of rows of a constant float 2-D table by computed ids."""
    table = consts.get(gather.inputs[0])
    return (
        table is not None
        and table.ndim == 2
        and table.dtype.kind == "f"
        and int(gather.attrs.get("axis", 0)) == 0
        and gather.inputs[1] not in consts
    )


def fuse_embedding_bags(graph: Graph, no_fuse: Callable[[Node], bool]) -> Graph:
    """Replace each Gather (+ weights Mul) + ReduceSum/ReduceMean over axis 1 by one bag node.

    The bag node's inputs are ``[table, ids, weights]`` (``""`` without weights) and its
    attributes ``mode`` (``"sum"``/``"mean"``) and ``keepdims``. Nodes with a custom kernel
    (``no_fuse``) and intermediates read by anything else are left alone.
    """
    nodes, consts, outputs = graph.nodes, graph.consts, set(graph.outputs)
    users, producer = value_links(nodes)

    def only_user(value: str) -> Node | None:
        found = users.get(value, [])
        return found[0] if len(found) == 1 and value not in outputs else None

    dropped: set[int] = set()
    fused: dict[int, Node] = {}
    for gather in nodes:
        if gather.op_type != "Gather" or no_fuse(gather) or not _table(gather, consts):
            continue
        chain = [gather]
        weights = ""
        mul = only_user(gather.outputs[0])
        if mul is not None and mul.op_type == "Mul" and not no_fuse(mul):
            other = mul.inputs[1] if mul.inputs[0] == gather.outputs[0] else mul.inputs[0]
            unsqueeze = producer.get(other)
            if unsqueeze is None or unsqueeze.op_type != "Unsqueeze":
                continue
            if _axes(unsqueeze, consts) not in ([-1], [2]):
                continue
            weights = unsqueeze.inputs[0]
            chain.append(mul)
            if only_user(other) is mul:  # read by nothing else: it goes with the Mul
                chain.append(unsqueeze)
        reduce = only_user(chain[1].outputs[0] if weights else gather.outputs[0])
        if reduce is None or reduce.op_type not in _MODES or no_fuse(reduce):
            continue
        if _axes(reduce, consts) not in ([1], [-2]):
            continue
        bag = Node(
            name=gather.name,
            op_type=FUSED_OP,
            inputs=[gather.inputs[0], gather.inputs[1], weights],
            outputs=list(reduce.outputs),
            attrs={
                "mode": _MODES[reduce.op_type],
                "keepdims": int(reduce.attrs.get("keepdims", 1)),
            },
            layer=gather.layer,
            fused=[n.name for n in [*chain[1:], reduce]],
            opset=gather.opset,
        )
        # at the reduction's place: every input of the chain is computed by then
        fused[id(reduce)] = bag
        dropped.update(id(n) for n in chain)
    kept = [fused.get(id(n), n) for n in nodes if id(n) not in dropped]
    return dataclasses.replace(graph, nodes=kept)
