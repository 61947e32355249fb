"""Transforms of tree ensembles that trade accuracy for speed or size.

Each builds a new ONNX `Model` whose tree nodes are rewritten (the given model is never
changed), with its config as the recipe:

- ``tree-thresholds`` (`TreeThresholds`): split thresholds rounded as a compact tree
  engine stores them: ``fp16`` (nearest half-precision value), or ``int16`` / ``int8``
  (nearest of 2^bits levels spread evenly over each feature's own threshold range, the
  per-feature grid that quantized engines compare bin indexes on); leaf weights
  optionally to ``fp16``. The graph stays float32, so the model's accuracy is what the
  compact engine would give; its bytes are reported in the recipe.
- ``tree-prune`` (`TreePrune`): keep the first ``trees`` trees (or a ``fraction``). A
  boosted ensemble is a sum, so its first trees are a shorter boosting run; an averaging
  forest has each leaf pre-divided by the tree count, so the kept leaves are rescaled.
  ``order="useful"`` keeps instead the trees chosen greedily on data to stay closest to
  the whole ensemble (a forest's trees are interchangeable, so its first ones are an
  arbitrary subset); the chosen indexes are recorded in the recipe.
- ``tree-depth`` (`TreeDepth`): every tree cut at ``max_depth``; a cut split becomes a
  leaf holding the mean of the leaves below it, weighted by how many rows of ``data``
  reach each (uniformly without data).

Example:
    >>> small = wb.transform(m, "tree-prune", fraction=0.5)
    >>> useful = wb.transform(m, "tree-prune", fraction=0.2, order="useful", data=valid)
    >>> q = wb.transform(m, "tree-thresholds", bits="int16")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from workbench.errors import TransformError
from workbench.loaders.tree_graph import (
    LEAF,
    TREE_OPS,
    TreeArrays,
    legacy_node,
    select_trees,
    subtree_ends,
)
from workbench.model import Model
from workbench.optimize.base import Transform, config_to_dict, register
from workbench.optimize.data_source import resolve_data

__all__ = ["TreeDepth", "TreePrune", "TreeThresholds"]

#: bytes a threshold takes in each format (float32 is the ONNX graph's own)
THRESHOLD_BYTES = {"fp16": 2, "int16": 2, "int8": 1}
#: estimators whose leaves hold their share of an average (the converter divides by trees)
_AVERAGING = ("RandomForest", "ExtraTrees", "Bagging")
#: rows of the data that usefulness is measured on (enough to rank trees, bounded work)
_SELECTION_ROWS = 4096


@register("tree-thresholds")
@dataclasses.dataclass(frozen=True)
class TreeThresholds(Transform):
    """Round split thresholds (and optionally leaf weights) to a compact format.

    Attributes:
        bits: ``"fp16"``, ``"int16"`` or ``"int8"``.
        leaves: ``"fp32"`` (unchanged) or ``"fp16"``.
    """

    bits: Literal["fp16", "int16", "int8"] = "int16"
    leaves: Literal["fp32", "fp16"] = "fp32"

    def label(self) -> str:
        return f"tree-thresholds({self.bits}{', fp16 leaves' if self.leaves == 'fp16' else ''})"

    def apply(self, model: Model, data: Any = None) -> Model:
        if self.bits not in THRESHOLD_BYTES or self.leaves not in ("fp32", "fp16"):
            raise TransformError(
                f"tree-thresholds takes bits fp16, int16 or int8 and leaves fp32 or fp16, "
                f"got bits={self.bits!r}, leaves={self.leaves!r}"
            )

        def rounded(trees: TreeArrays) -> TreeArrays:
            weights = trees.leaf_weight
            if self.leaves == "fp16":
                weights = weights.astype(np.float16).astype(np.float64)
            return dataclasses.replace(
                trees, threshold=_round_thresholds(trees, self.bits), leaf_weight=weights
            )

        splits = sum(int((t.mode != LEAF).sum()) for t in _ensembles(model))
        return _rewrite(model, self, rounded, threshold_bytes=splits * THRESHOLD_BYTES[self.bits])


@register("tree-prune")
@dataclasses.dataclass(frozen=True)
class TreePrune(Transform):
    """Keep the first trees of each ensemble, or the most useful ones on given data.

    ``order="useful"`` chooses the trees by greedy forward selection on ``data`` (a
    sample model's training split when omitted): starting from none, each step adds the
    tree that brings the pruned ensemble's raw scores (rescaled for averaging forests)
    closest, in squared error over the rows, to the full ensemble's. Fidelity to the full
    model rather than fit to labels: it needs no labels, treats boosted sums, averaging
    forests, classifiers and regressors alike, and cannot overfit the labels of a small
    selection set; a single tree's own usefulness (say its mean |contribution|) would
    ignore that forest trees repeat each other. The chosen indexes go in ``kept``, so
    the recipe rebuilds the variant without the data.

    Attributes:
        trees: how many trees to keep (0: use ``fraction``).
        fraction: the share of trees kept when ``trees`` is 0, in (0, 1].
        order: ``"first"`` (the first trees in the graph) or ``"useful"``.
        kept: the tree indexes to keep (set by ``order="useful"``); overrides the rest.
    """

    trees: int = 0
    fraction: float = 0.5
    order: Literal["first", "useful"] = "first"
    kept: tuple[int, ...] = ()

    def label(self) -> str:
        size = f"{self.trees} trees" if self.trees else f"{self.fraction:.0%}"
        return f"tree-prune({size}{', useful' if self.order == 'useful' else ''})"

    def apply(self, model: Model, data: Any = None) -> Model:
        if self.trees < 0 or not 0 < self.fraction <= 1 or self.order not in ("first", "useful"):
            raise TransformError(
                f"tree-prune keeps trees > 0 or a fraction in (0, 1], in order 'first' or "
                f"'useful'; got trees={self.trees}, fraction={self.fraction}, order={self.order!r}"
            )
        averaging = _is_averaging(model)
        config = self
        if self.order == "useful" and not self.kept:
            _check_fed_by_input(model)
            rows = _rows(resolve_data(model, data, "train", "tree-prune(order='useful')"), model)
            if rows is None or not len(rows):
                raise TransformError("tree-prune(order='useful') got no rows in its data")
            for trees in _ensembles(model)[:1]:  # `_rewrite` refuses graphs with several
                keep = self.trees_kept(trees.n_trees)
                chosen = useful_trees(trees, rows, keep, averaging or trees.aggregate == 1)
                config = dataclasses.replace(self, kept=tuple(int(i) for i in chosen))

        def pruned(trees: TreeArrays) -> TreeArrays:
            keep = config.trees_kept(trees.n_trees)
            if config.kept:
                indexes = _checked_indexes(config.kept, trees.n_trees)
            else:
                indexes = np.arange(keep)
            kept = select_trees(trees, indexes)
            if averaging and trees.aggregate == 0:  # SUM of pre-divided leaves
                kept = dataclasses.replace(
                    kept, leaf_weight=kept.leaf_weight * trees.n_trees / keep
                )
            return kept

        return _rewrite(model, config, pruned, rescaled=averaging)

    def trees_kept(self, n_trees: int) -> int:
        """How many trees of an ensemble of ``n_trees`` this config keeps."""
        keep = len(self.kept) or self.trees or max(1, round(self.fraction * n_trees))
        if keep > n_trees:
            raise TransformError(
                f"tree-prune: cannot keep {keep} trees of an ensemble of {n_trees}"
            )
        return keep


def useful_trees(trees: TreeArrays, rows: np.ndarray, keep: int, averaging: bool) -> np.ndarray:
    """Indexes (ascending) of ``keep`` trees chosen greedily to match the full ensemble.

    Each step adds the tree whose addition brings the pruned ensemble's raw scores on
    ``rows`` closest (squared error) to the full ensemble's; an averaging ensemble's
    pruned sum is scaled by ``trees / kept`` first, as `TreePrune` rescales it.
    """
    from workbench.profiling.trees import leaves_of

    rows = np.asarray(rows, dtype=np.float64)[:_SELECTION_ROWS]
    values = np.zeros((trees.n_nodes, trees.n_targets))
    np.add.at(
        values, (np.repeat(np.arange(trees.n_nodes), trees.leaf_count), trees.leaf_target),
        trees.leaf_weight,
    )  # fmt: skip
    contributions = values[leaves_of(trees, rows)]  # (rows, trees, targets)
    full = contributions.sum(axis=1)
    squares = np.einsum("ntk,ntk->t", contributions, contributions)
    total = np.zeros_like(full)
    free = np.ones(trees.n_trees, dtype=bool)
    for step in range(keep):
        scale = trees.n_trees / (step + 1) if averaging else 1.0
        gap = scale * total - full  # error of (total + c) * scale is |gap + scale c|^2
        error = 2 * scale * np.einsum("nk,ntk->t", gap, contributions) + scale**2 * squares
        error[~free] = np.inf
        best = int(np.argmin(error))
        free[best] = False
        total += contributions[:, best]
    return np.flatnonzero(~free)


def _checked_indexes(kept: tuple[int, ...], n_trees: int) -> np.ndarray:
    indexes = np.asarray(sorted(set(kept)), dtype=np.int64)
    if len(indexes) != len(kept) or indexes[0] < 0 or indexes[-1] >= n_trees:
        raise TransformError(
            f"tree-prune: kept names trees by distinct indexes in [0, {n_trees}), got {kept!r:.80}"
        )
    return indexes


def _check_fed_by_input(model: Model) -> None:
    """Usefulness walks the data down the trees: their node must read the model's input."""
    proto = model.to_onnx().proto
    if proto is None:
        return
    graph_inputs = {i.name for i in proto.graph.input}
    for node in proto.graph.node:
        if node.op_type in TREE_OPS and node.input[0] not in graph_inputs:
            raise TransformError(
                f"tree-prune(order='useful') walks the data down the trees, but {model.name!r} "
                f"feeds them from {node.input[0]!r} (a preprocessing step): use order='first'"
            )


@register("tree-depth")
@dataclasses.dataclass(frozen=True)
class TreeDepth(Transform):
    """Cut every tree at a depth.

    Attributes:
        max_depth: the deepest level kept (the root is depth 0), at least 1.
    """

    max_depth: int = 4

    def label(self) -> str:
        return f"tree-depth({self.max_depth})"

    def apply(self, model: Model, data: Any = None) -> Model:
        if self.max_depth < 1:
            raise TransformError(f"tree-depth needs max_depth >= 1, got {self.max_depth}")
        rows = _rows(data, model)

        def cut(trees: TreeArrays) -> TreeArrays:
            return _cut(trees, self.max_depth, rows)

        return _rewrite(model, self, cut, weighted=rows is not None)


# ---- shared -------------------------------------------------------------------------
def _ensembles(model: Model) -> list[TreeArrays]:
    from workbench.loaders.trees import ensemble_of

    proto = model.to_onnx().proto
    nodes = [n for n in proto.graph.node if n.op_type in TREE_OPS] if proto is not None else []
    return [ensemble_of(n) for n in nodes]


def _rewrite(
    model: Model, config: Transform, change: Callable[[TreeArrays], TreeArrays], **facts: Any
) -> Model:
    """A new model whose tree nodes are ``change``d; the recipe is ``config`` plus ``facts``."""
    import onnx

    from workbench.loaders.onnx import model_from_proto
    from workbench.loaders.trees import ensemble_of

    proto = onnx.ModelProto.FromString(model.to_onnx().onnx_bytes)  # a copy to edit
    nodes = [n for n in proto.graph.node if n.op_type in TREE_OPS]
    if len(nodes) != 1:
        raise TransformError(
            f"{config.name} rewrites one tree-ensemble node; {model.name!r} has {len(nodes)} "
            "(an IsolationForest converts to one node a tree: not supported yet)"
        )
    (node,) = nodes
    if node.op_type == "TreeEnsemble":
        raise TransformError(f"{config.name} rewrites ai.onnx.ml opset 1-3 tree ensembles only")
    node.CopyFrom(legacy_node(change(ensemble_of(node)), node))
    recipe = config_to_dict(config, **facts)
    new = model_from_proto(proto, model.name, model.source, recipe)
    derived = model.derive(
        framework="onnx", proto=new.proto, layers=new.layers, inputs=new.inputs,
        outputs=new.outputs, recipe=recipe, module=None,
    )  # fmt: skip
    derived.metadata.pop("native", None)  # the library object no longer matches the trees
    return derived


def _is_averaging(model: Model) -> bool:
    """Whether each leaf holds its share of an average over the trees (a random forest)."""
    facts = model.metadata.get("trees", {})
    if facts.get("library") in ("xgboost", "lightgbm"):
        return False
    if any(word in str(facts.get("estimator", "")) for word in _AVERAGING):
        return True
    (trees,) = _ensembles(model)[:1] or (None,)
    # without the library's word: boosted ensembles carry base values or a post-transform
    return trees is not None and not np.any(trees.base_values) and trees.post_transform == 0


def _round_thresholds(trees: TreeArrays, bits: str) -> np.ndarray:
    threshold = trees.threshold.astype(np.float64)
    split = trees.mode != LEAF
    if bits == "fp16":
        rounded = threshold.astype(np.float16).astype(np.float64)
    else:
        levels = (1 << (16 if bits == "int16" else 8)) - 1
        features = trees.feature[split]
        n = int(features.max(initial=-1)) + 1
        low = np.full(n, np.inf)
        high = np.full(n, -np.inf)
        np.minimum.at(low, features, threshold[split])
        np.maximum.at(high, features, threshold[split])
        step = np.where(high > low, (high - low) / levels, 1.0)
        f = np.where(split, trees.feature, 0)
        base = np.where(split, low[f], 0.0)
        rounded = base + np.round((threshold - base) / step[f]) * step[f]
    return np.where(split, rounded, threshold).astype(trees.threshold.dtype)


def _cut(trees: TreeArrays, max_depth: int, rows: np.ndarray | None) -> TreeArrays:
    """Splits at ``max_depth`` become leaves averaging the leaves below them."""
    from workbench.profiling.trees import reach_counts

    reach = reach_counts(trees, rows) if rows is not None else np.ones(trees.n_nodes)
    keep = trees.depth <= max_depth
    cut = keep & (trees.depth == max_depth) & (trees.mode != LEAF)
    subtree_end = subtree_ends(trees)
    targets: list[int] = []
    weights: list[float] = []
    starts = np.zeros(trees.n_nodes, dtype=np.int32)
    counts = np.zeros(trees.n_nodes, dtype=np.int32)
    for i in np.flatnonzero(keep):
        starts[i] = len(targets)
        if cut[i]:
            below = np.arange(i, subtree_end[i])
            mean = _mean_leaf(trees, below[trees.mode[below] == LEAF], reach)
            targets.extend(mean)
            weights.extend(mean.values())
        elif trees.mode[i] == LEAF:
            own = slice(trees.leaf_start[i], trees.leaf_start[i] + trees.leaf_count[i])
            targets.extend(trees.leaf_target[own].tolist())
            weights.extend(trees.leaf_weight[own].tolist())
        counts[i] = len(targets) - starts[i]
    rows_kept = np.flatnonzero(keep)
    new_row = np.full(trees.n_nodes, -1, dtype=np.int64)
    new_row[rows_kept] = np.arange(len(rows_kept))
    mode = np.where(cut, LEAF, trees.mode)[rows_kept].astype(np.int8)
    false_child = np.where(mode != LEAF, new_row[np.maximum(trees.false_child[rows_kept], 0)], -1)
    return dataclasses.replace(
        trees,
        roots=new_row[trees.roots].astype(np.int32),
        feature=np.where(mode != LEAF, trees.feature[rows_kept], -1).astype(np.int32),
        threshold=trees.threshold[rows_kept],
        mode=mode,
        false_child=false_child.astype(np.int32),
        missing_true=trees.missing_true[rows_kept],
        leaf_start=starts[rows_kept],
        leaf_count=counts[rows_kept],
        leaf_target=np.asarray(targets, dtype=np.int32),
        leaf_weight=np.asarray(weights, dtype=np.float64),
        depth=trees.depth[rows_kept],
    )


def _mean_leaf(trees: TreeArrays, leaves: np.ndarray, reach: np.ndarray) -> dict[int, float]:
    """Target -> weight of one leaf standing for ``leaves``: their mean, weighted by reach."""
    total = reach[leaves].sum()
    shares = reach[leaves] / total if total else np.full(len(leaves), 1 / len(leaves))
    mean: dict[int, float] = {}
    for leaf, share in zip(leaves, shares, strict=True):
        for k in range(trees.leaf_start[leaf], trees.leaf_start[leaf] + trees.leaf_count[leaf]):
            target = int(trees.leaf_target[k])
            mean[target] = mean.get(target, 0.0) + share * float(trees.leaf_weight[k])
    return mean


def _rows(data: Any, model: Model) -> np.ndarray | None:
    """Feature rows from a `Dataset`, an iterable of ``(inputs, labels)`` or an array."""
    if data is None:
        return None
    if isinstance(data, np.ndarray):
        return data
    inputs = getattr(data, "inputs", None)
    if isinstance(inputs, np.ndarray):
        return inputs
    batches = [
        np.asarray(x if not isinstance(x, dict) else x[model.inputs[0].name]) for x, _ in data
    ]
    return np.concatenate(batches) if batches else None
