"""What a tree ensemble is made of and how much work it does: the trees' cost model.

Trees do comparisons, not multiply-adds, so a tree layer's FLOPs stay unknown (NaN) in
the per-layer table; their work is **node visits per prediction**, measured by walking
the given rows down every tree (a row visits each tree's nodes from the root down to
its leaf, so deep paths cost more than the tree's size says). `node_visits` fills the
per-layer ``node_visits`` column; `tree_stats` gives the model-level facts (trees, nodes,
leaves, depth histogram, model bytes, visits per prediction).

Example:
    >>> stats = tree_stats(wb.samples.load("trees-gbm"), data.inputs)
    >>> stats.trees, stats.nodes, stats.visits_per_row
    (300, 14638, 1803.2)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.loaders.tree_graph import LEAF, TREE_OPS, TreeArrays
from workbench.loaders.trees import ensemble_of

if TYPE_CHECKING:
    import onnx

    from workbench.model import Model

__all__ = ["TreeStats", "node_visits", "reach_counts", "tree_stats", "visits_of"]


@dataclass(frozen=True)
class TreeStats:
    """Facts about a tree model's ensembles (all its tree nodes together).

    Attributes:
        trees: number of trees.
        nodes: tree nodes (splits and leaves).
        leaves: leaves.
        max_depth: depth of the deepest leaf (root at depth 0).
        leaf_depths: number of leaves at each depth, index = depth.
        model_bytes: size of the serialised ONNX model.
        ensemble_bytes: bytes of the tree nodes' attributes in the ONNX model.
        visits_per_row: mean node visits per input row (leaf included), measured on
            the rows given; None when no rows were given.
    """

    trees: int
    nodes: int
    leaves: int
    max_depth: int
    leaf_depths: tuple[int, ...]
    model_bytes: int
    ensemble_bytes: int
    visits_per_row: float | None = None
    by_layer: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON and the store)."""
        return {
            "trees": self.trees,
            "nodes": self.nodes,
            "leaves": self.leaves,
            "max_depth": self.max_depth,
            "leaf_depths": list(self.leaf_depths),
            "model_bytes": self.model_bytes,
            "ensemble_bytes": self.ensemble_bytes,
            "visits_per_row": self.visits_per_row,
        }


def visits_of(trees: TreeArrays, x: np.ndarray) -> np.ndarray:
    """Nodes each row of ``x`` visits across all trees (leaves included), float64 ``(rows,)``.

    Follows the kernels' rules: NaN takes the true branch where missing values track
    true, and otherwise fails every test except ``BRANCH_NEQ``.
    """
    visits = np.zeros(len(x))
    for rows, _ in _walks(trees, x):
        visits[rows] += 1
    return visits


def reach_counts(trees: TreeArrays, x: np.ndarray) -> np.ndarray:
    """How many rows of ``x`` pass through each node (row of ``trees``), float64."""
    counts = np.zeros(trees.n_nodes)
    for _, nodes in _walks(trees, x):
        np.add.at(counts, nodes, 1)
    return counts


def _walks(trees: TreeArrays, x: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every step of every row down every tree: ``(row indexes, node rows)`` per level."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    threshold = trees.threshold.astype(np.float64)
    for root in trees.roots:
        rows = np.arange(len(x))
        node = np.full(len(x), root, dtype=np.int64)
        while len(rows):
            yield rows, node
            split = trees.mode[node] != LEAF
            rows, at = rows[split], node[split]
            v = x[rows, trees.feature[at]]
            go = _test(trees.mode[at], v, threshold[at], trees.missing_true[at])
            node = np.where(go, at + 1, trees.false_child[at])


def _test(mode: np.ndarray, v: np.ndarray, t: np.ndarray, missing: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        results = [v <= t, v < t, v >= t, v > t, v == t, v != t]
    go = np.select([mode == m for m in range(6)], results)
    return np.where(np.isnan(v), missing | (mode == 5), go)


def node_visits(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean node visits per input row of each canonical layer holding trees.

    Only ensembles that read a graph input directly are measured (a pipeline's scaler
    would otherwise have to run first); others are left out.

    Args:
        proto: the model's ONNX graph (not changed).
        inputs: the rows, by input name.

    Returns:
        layer -> mean visits per row (empty for a model without trees).
    """
    from workbench.loaders.onnx import canonical_layer_name

    visits: dict[str, float] = {}
    for index, node in enumerate(proto.graph.node):
        if node.op_type not in TREE_OPS or node.input[0] not in inputs:
            continue
        x = np.asarray(inputs[node.input[0]]).reshape(len(inputs[node.input[0]]), -1)
        layer = canonical_layer_name(node, index)
        visits[layer] = visits.get(layer, 0.0) + float(visits_of(ensemble_of(node), x).mean())
    return visits


def tree_stats(model: Model, rows: np.ndarray | None = None) -> TreeStats | None:
    """The `TreeStats` of ``model`` (None when it holds no tree ensemble).

    Args:
        model: an ONNX model with ``ai.onnx.ml`` tree ensembles.
        rows: input rows ``(N, features)`` to measure node visits on (None: not measured).
    """
    proto = model.to_onnx().proto
    nodes = [n for n in proto.graph.node if n.op_type in TREE_OPS] if proto is not None else []
    if not nodes:
        return None
    ensembles = [ensemble_of(n) for n in nodes]
    depths = np.concatenate([t.depth[t.mode == LEAF] for t in ensembles])
    by_layer: dict[str, float] = {}
    visits = None
    if rows is not None:
        assert proto is not None  # it holds tree ensembles
        by_layer = node_visits(proto, {model.inputs[0].name: np.asarray(rows)})
        visits = float(sum(by_layer.values())) if by_layer else None
    return TreeStats(
        trees=sum(t.n_trees for t in ensembles),
        nodes=sum(t.n_nodes for t in ensembles),
        leaves=sum(t.n_leaves for t in ensembles),
        max_depth=max(t.max_depth for t in ensembles),
        leaf_depths=tuple(int(c) for c in np.bincount(depths)),
        model_bytes=len(model.onnx_bytes),
        ensemble_bytes=sum(n.ByteSize() for n in nodes),
        visits_per_row=visits,
        by_layer=by_layer,
    )
