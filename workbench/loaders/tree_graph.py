"""The trees inside an ONNX-ML ``TreeEnsemble*`` node, as flat node arrays.

`ensemble_from_attrs` (through `workbench.loaders.trees.ensemble_of`) reads one
``TreeEnsembleClassifier`` / ``TreeEnsembleRegressor`` (ai.onnx.ml opsets 1-3) or
``TreeEnsemble`` (opset 5) node into a `TreeArrays`: one row per node of every tree,
renumbered depth first so that a node's true child is the next row (the walk down a
tree then reads memory forwards), with leaf weights in compressed rows. The Numba
kernels, the profiling facts (nodes, depths) and the tree transforms all read this one
form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import UnsupportedModelError

if TYPE_CHECKING:
    import onnx

#: split modes, in the order of the opset-5 ``TreeEnsemble`` enumeration; `LEAF` marks a leaf
MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")
LEAF = -1
AGGREGATES = ("SUM", "AVERAGE", "MIN", "MAX")
POST_TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")
_NEW_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")  # the opset-5 op numbers them this way
TREE_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})


@dataclass(frozen=True)
class TreeArrays:
    """One ensemble node's trees, flat.

    Attributes:
        op_type: the ONNX op type.
        roots: int32 ``(trees,)``: row of each tree's root.
        feature: int32 ``(nodes,)``: feature a split reads; -1 for a leaf.
        threshold: ``(nodes,)`` split thresholds (float32, or float64 for ``*_as_tensor``).
        mode: int8 ``(nodes,)``: index into `MODES`, or `LEAF`.
        false_child: int32 ``(nodes,)``: row taken when the test fails (the true child
            is the next row); -1 for a leaf.
        missing_true: bool ``(nodes,)``: a NaN feature takes the true branch.
        leaf_start, leaf_count: int32 ``(nodes,)``: a leaf's weights in `leaf_target` /
            `leaf_weight`.
        leaf_target: int32 ``(weights,)``: class or target each weight adds to.
        leaf_weight: float64 ``(weights,)``.
        n_targets: number of classes or targets.
        aggregate: index into `AGGREGATES`.
        post_transform: index into `POST_TRANSFORMS`.
        base_values: float64 ``(0, 1 or n_targets,)``.
        class_labels: int64 class labels (classifiers only, else empty).
        depth: int32 ``(nodes,)``: depth of each node (root 0).
    """

    op_type: str
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    mode: np.ndarray
    false_child: np.ndarray
    missing_true: np.ndarray
    leaf_start: np.ndarray
    leaf_count: np.ndarray
    leaf_target: np.ndarray
    leaf_weight: np.ndarray
    n_targets: int
    aggregate: int
    post_transform: int
    base_values: np.ndarray
    class_labels: np.ndarray
    depth: np.ndarray

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    @property
    def n_nodes(self) -> int:
        return len(self.feature)

    @property
    def n_leaves(self) -> int:
        return int((self.mode == LEAF).sum())

    @property
    def max_depth(self) -> int:
        """Depth of the deepest leaf (a single-leaf tree has depth 0)."""
        return int(self.depth.max(initial=0))


#: deepest ensemble padded into perfect trees (each tree then takes 2**depth slots)
PERFECT_MAX_DEPTH = 10
#: most bottom slots x targets (float64) the padded leaves may take (64 MiB)
PERFECT_MAX_LEAF_VALUES = 1 << 23


@dataclass(frozen=True)
class PerfectTrees:
    """An ensemble padded to perfect trees of one depth, every split ``x < threshold``.

    Hummingbird's "perfect tree traversal" form: children of slot ``i`` at ``2i + 1``
    (taken when ``x < threshold``, or when ``x`` is NaN and ``missing_left``) and
    ``2i + 2``; a walk is ``depth`` computed steps with no branch. ``<=`` became ``<`` the
    next float up (exact for every ``x`` of the comparison type), ``>`` and ``>=`` swapped
    their children (and the missing-value direction with them), and a leaf above the
    bottom is copied into every bottom slot under it.

    Attributes:
        depth: levels walked per tree (the ensemble's deepest leaf).
        feature: uint32 ``(trees, 2**depth - 1)``: feature each split reads (0 in padding).
        threshold: ``(trees, 2**depth - 1)`` in the comparison type.
        missing_left: bool ``(trees, 2**depth - 1)``: a NaN goes to child ``2i + 1``.
        leaves: float64 ``(trees, 2**depth, columns)``: each bottom slot's summed weights.
        columns: int64 ``(columns,)``: the target each leaf column adds to (scored only).
    """

    depth: int
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    leaves: np.ndarray
    columns: np.ndarray


def perfect_trees(trees: TreeArrays, dtype: Any) -> PerfectTrees | None:
    """``trees`` padded into `PerfectTrees` compared in ``dtype`` (the inputs' type, widened
    to the thresholds' as ONNX Runtime promotes them), or None where the ensemble does not
    allow it: min / max aggregation, ``==`` / ``!=`` splits, deeper than
    `PERFECT_MAX_DEPTH`, padded leaves over `PERFECT_MAX_LEAF_VALUES`."""
    splits = trees.mode != LEAF
    depth = trees.max_depth
    columns = np.unique(trees.leaf_target).astype(np.int64)
    n_trees = trees.n_trees
    if (
        trees.aggregate > AGGREGATES.index("AVERAGE")
        or (trees.mode[splits] > MODES.index("BRANCH_GT")).any()
        or depth > PERFECT_MAX_DEPTH
        or n_trees * (1 << depth) * max(1, columns.size) > PERFECT_MAX_LEAF_VALUES
    ):
        return None
    kind = np.result_type(dtype, trees.threshold.dtype)
    threshold = trees.threshold.astype(kind)
    leq, gte, gt = (MODES.index(m) for m in ("BRANCH_LEQ", "BRANCH_GTE", "BRANCH_GT"))
    inclusive = (trees.mode == leq) | (trees.mode == gt)
    threshold = np.where(inclusive, np.nextafter(threshold, kind.type(np.inf)), threshold)
    swapped = (trees.mode == gte) | (trees.mode == gt)
    left = np.where(swapped, trees.false_child, np.arange(trees.n_nodes) + 1)
    right = np.where(swapped, np.arange(trees.n_nodes) + 1, trees.false_child)
    missing_left = trees.missing_true ^ swapped
    slots = (1 << depth) - 1
    feature = np.zeros((n_trees, slots), dtype=np.uint32)
    thresholds = np.zeros((n_trees, slots), dtype=kind)
    missing = np.zeros((n_trees, slots), dtype=np.bool_)
    # level by level: the node at every slot of every tree (a leaf above the bottom
    # stays in both children's slots, so it reaches every bottom slot under it)
    at = trees.roots.astype(np.int64)[:, None]
    for level in range(depth):
        first = (1 << level) - 1
        split = splits[at]
        feature[:, first : first + at.shape[1]] = np.where(split, trees.feature[at], 0)
        thresholds[:, first : first + at.shape[1]] = np.where(split, threshold[at], 0)
        missing[:, first : first + at.shape[1]] = split & missing_left[at]
        children = np.stack([np.where(split, left[at], at), np.where(split, right[at], at)], 2)
        at = children.reshape(n_trees, -1)
    column_of = np.zeros(max(trees.n_targets, 1), dtype=np.int64)
    column_of[columns] = np.arange(columns.size)
    values = np.zeros((trees.n_nodes, columns.size))
    owner = np.repeat(np.arange(trees.n_nodes), trees.leaf_count)
    np.add.at(values, (owner, column_of[trees.leaf_target]), trees.leaf_weight)
    return PerfectTrees(depth, feature, thresholds, missing, values[at], columns)


def ensemble_from_attrs(op_type: str, attrs: dict[str, Any]) -> TreeArrays:
    """The `TreeArrays` of an ensemble node given its attributes (from ``node_attributes``)."""
    if op_type == "TreeEnsemble":
        return _from_opset5(attrs)
    return _from_legacy(op_type, attrs)


def _tensor_or_list(attrs: dict[str, Any], name: str, dtype: Any) -> np.ndarray:
    from onnx import numpy_helper

    if f"{name}_as_tensor" in attrs:
        return np.asarray(numpy_helper.to_array(attrs[f"{name}_as_tensor"]))
    return np.asarray(attrs.get(name, []), dtype=dtype)


def _from_legacy(op_type: str, attrs: dict[str, Any]) -> TreeArrays:
    classifier = op_type == "TreeEnsembleClassifier"
    if classifier and "classlabels_strings" in attrs:
        raise UnsupportedModelError(
            "TreeEnsembleClassifier with string class labels: convert the labels to "
            "integers (e.g. with a LabelEncoder) before converting the model"
        )
    prefix = "class" if classifier else "target"
    tree_ids = np.asarray(attrs["nodes_treeids"], dtype=np.int64)
    node_ids = np.asarray(attrs["nodes_nodeids"], dtype=np.int64)
    modes = attrs["nodes_modes"]
    codes = np.array([LEAF if m == "LEAF" else _mode(m) for m in modes], dtype=np.int8)
    missing = np.asarray(attrs.get("nodes_missing_value_tracks_true", []), dtype=bool)
    key = {(int(t), int(n)): i for i, (t, n) in enumerate(zip(tree_ids, node_ids, strict=True))}
    true_ids = np.asarray(attrs["nodes_truenodeids"], dtype=np.int64)
    false_ids = np.asarray(attrs["nodes_falsenodeids"], dtype=np.int64)
    weights: dict[int, list[tuple[int, float]]] = {}
    w_trees = np.asarray(attrs.get(f"{prefix}_treeids", []), dtype=np.int64)
    w_nodes = np.asarray(attrs.get(f"{prefix}_nodeids", []), dtype=np.int64)
    w_ids = np.asarray(attrs.get(f"{prefix}_ids", []), dtype=np.int64)
    w_values = _tensor_or_list(attrs, f"{prefix}_weights", np.float32).astype(np.float64)
    for t, n, target, value in zip(w_trees, w_nodes, w_ids, w_values, strict=True):
        weights.setdefault(_lookup(key, int(t), int(n)), []).append((int(target), float(value)))
    roots = [key.get((int(t), 0), -1) for t in dict.fromkeys(tree_ids)]
    if -1 in roots:
        raise UnsupportedModelError("a tree of the ensemble has no node 0 (its root)")

    def children(i: int) -> tuple[int, int]:
        t = int(tree_ids[i])
        return _lookup(key, t, int(true_ids[i])), _lookup(key, t, int(false_ids[i]))

    labels = np.asarray(attrs.get("classlabels_int64s", []), dtype=np.int64)
    n_targets = len(labels) if classifier else int(attrs.get("n_targets", 1))
    aggregate = AGGREGATES.index(str(attrs.get("aggregate_function", "SUM")))
    return _flatten(
        op_type,
        roots,
        children,
        feature=np.asarray(attrs["nodes_featureids"], dtype=np.int32),
        threshold=_tensor_or_list(attrs, "nodes_values", np.float32),
        mode=codes,
        missing=missing if len(missing) else np.zeros(len(codes), dtype=bool),
        weights=weights,
        n_targets=n_targets,
        aggregate=aggregate,
        post_transform=POST_TRANSFORMS.index(str(attrs.get("post_transform", "NONE"))),
        base_values=_tensor_or_list(attrs, "base_values", np.float32).astype(np.float64),
        class_labels=labels,
    )


def _from_opset5(attrs: dict[str, Any]) -> TreeArrays:
    from onnx import numpy_helper

    splits = np.asarray(numpy_helper.to_array(attrs["nodes_splits"]))
    modes = np.asarray(numpy_helper.to_array(attrs["nodes_modes"])).astype(np.int8)
    if (modes > 5).any():
        raise UnsupportedModelError(
            "TreeEnsemble with set-membership (BRANCH_MEMBER) splits is not supported"
        )
    n_splits = len(splits)
    leaf_targets = np.asarray(attrs["leaf_targetids"], dtype=np.int64)
    leaf_weights = np.asarray(numpy_helper.to_array(attrs["leaf_weights"]), dtype=np.float64)
    # leaves get rows after the splits: leaf j is row n_splits + j
    true_ids = np.asarray(attrs["nodes_truenodeids"], dtype=np.int64)
    false_ids = np.asarray(attrs["nodes_falsenodeids"], dtype=np.int64)
    true_leaf = np.asarray(attrs.get("nodes_trueleafs", [0] * n_splits), dtype=bool)
    false_leaf = np.asarray(attrs.get("nodes_falseleafs", [0] * n_splits), dtype=bool)
    true_rows = np.where(true_leaf, true_ids + n_splits, true_ids)
    false_rows = np.where(false_leaf, false_ids + n_splits, false_ids)
    n_leaves = len(leaf_targets)
    weights = {
        n_splits + j: [(int(leaf_targets[j]), float(leaf_weights[j]))] for j in range(n_leaves)
    }
    missing = np.asarray(attrs.get("nodes_missing_value_tracks_true", [0] * n_splits), dtype=bool)
    roots = [int(r) for r in attrs["tree_roots"]]

    def children(i: int) -> tuple[int, int]:
        return int(true_rows[i]), int(false_rows[i])

    post = int(attrs.get("post_transform", 0))
    return _flatten(
        "TreeEnsemble",
        roots,
        children,
        feature=np.concatenate(
            [np.asarray(attrs["nodes_featureids"], np.int32), np.full(n_leaves, -1, np.int32)]
        ),
        threshold=np.concatenate([splits, np.zeros(n_leaves, splits.dtype)]),
        mode=np.concatenate([modes, np.full(n_leaves, LEAF, np.int8)]),
        missing=np.concatenate([missing, np.zeros(n_leaves, bool)]),
        weights=weights,
        n_targets=int(attrs["n_targets"]),
        aggregate=AGGREGATES.index(_NEW_AGGREGATES[int(attrs.get("aggregate_function", 1))]),
        post_transform=post,
        base_values=np.zeros(0),
        class_labels=np.zeros(0, np.int64),
    )


def _flatten(
    op_type: str,
    roots: list[int],
    children: Any,
    *,
    feature: np.ndarray,
    threshold: np.ndarray,
    mode: np.ndarray,
    missing: np.ndarray,
    weights: dict[int, list[tuple[int, float]]],
    n_targets: int,
    aggregate: int,
    post_transform: int,
    base_values: np.ndarray,
    class_labels: np.ndarray,
) -> TreeArrays:
    """Renumber every tree depth first (true child next) and pack the leaf weights."""
    order: list[int] = []
    depth: list[int] = []
    new_roots = []
    for root in roots:
        new_roots.append(len(order))
        stack = [(root, 0)]
        while stack:
            i, d = stack.pop()
            order.append(i)
            depth.append(d)
            if mode[i] != LEAF:
                true_child, false_child = children(i)
                stack.append((false_child, d + 1))
                stack.append((true_child, d + 1))
    old = np.asarray(order, dtype=np.int64)
    new_of = {int(o): n for n, o in enumerate(order)}
    false_child = np.full(len(old), -1, dtype=np.int32)
    targets: list[int] = []
    values: list[float] = []
    start = np.zeros(len(old), dtype=np.int32)
    count = np.zeros(len(old), dtype=np.int32)
    for n, o in enumerate(order):
        if mode[o] != LEAF:
            false_child[n] = new_of[children(o)[1]]
            continue
        start[n] = len(targets)
        for target, value in weights.get(o, []):
            targets.append(target)
            values.append(value)
        count[n] = len(targets) - start[n]
    return TreeArrays(
        op_type=op_type,
        roots=np.asarray(new_roots, dtype=np.int32),
        feature=np.where(mode[old] == LEAF, -1, feature[old]).astype(np.int32),
        threshold=np.ascontiguousarray(threshold[old]),
        mode=np.ascontiguousarray(mode[old]),
        false_child=false_child,
        missing_true=np.ascontiguousarray(missing[old]),
        leaf_start=start,
        leaf_count=count,
        leaf_target=np.asarray(targets, dtype=np.int32),
        leaf_weight=np.asarray(values, dtype=np.float64),
        n_targets=n_targets,
        aggregate=aggregate,
        post_transform=post_transform,
        base_values=base_values,
        class_labels=class_labels,
        depth=np.asarray(depth, dtype=np.int32),
    )


def _mode(name: str) -> int:
    if name not in MODES:
        raise UnsupportedModelError(f"tree split mode {name!r} is not supported; modes: {MODES}")
    return MODES.index(name)


def _lookup(key: dict[tuple[int, int], int], tree: int, node: int) -> int:
    try:
        return key[(tree, node)]
    except KeyError:
        raise UnsupportedModelError(
            f"tree {tree} refers to node {node}, which it does not list (a malformed graph)"
        ) from None


def opset5_node(trees: TreeArrays, name: str, inputs: list[str], outputs: list[str]) -> Any:
    """An ai.onnx.ml opset-5 ``TreeEnsemble`` node holding ``trees``.

    Args:
        trees: the trees of a regressor whose leaves each add to one target, and whose
            roots are splits (the opset-5 op has no single-leaf tree). The op has no
            base values: a single target's summed ensemble carries its base value in
            the leaves (each adds base / trees).
        name: the node's name.
        inputs, outputs: its value names.

    Raises:
        UnsupportedModelError: a leaf adds to several targets, or a tree is a lone leaf.
    """
    from onnx import helper, numpy_helper

    if (trees.leaf_count[trees.mode == LEAF] != 1).any() or (trees.mode[trees.roots] == LEAF).any():
        raise UnsupportedModelError(
            "the opset-5 TreeEnsemble op takes one weight per leaf and a split at each root"
        )
    base = np.zeros(1)
    if np.any(trees.base_values):
        if trees.n_targets != 1 or AGGREGATES[trees.aggregate] != "SUM":
            raise UnsupportedModelError(
                "the opset-5 TreeEnsemble op has no base values; only a summed single-target "
                "ensemble can carry them in its leaves"
            )
        base = trees.base_values[:1] / trees.n_trees
    split = trees.mode != LEAF
    index = np.where(split, np.cumsum(split) - 1, np.cumsum(~split) - 1)
    rows = np.flatnonzero(split)
    true_child, false_child = rows + 1, trees.false_child[rows]
    leaf_rows = np.flatnonzero(~split)
    dtype = trees.threshold.dtype
    return helper.make_node(
        "TreeEnsemble",
        inputs,
        outputs,
        name=name,
        domain="ai.onnx.ml",
        tree_roots=index[trees.roots].tolist(),
        nodes_featureids=trees.feature[rows].tolist(),
        nodes_splits=numpy_helper.from_array(trees.threshold[rows].astype(dtype)),
        nodes_modes=numpy_helper.from_array(trees.mode[rows].astype(np.uint8)),
        nodes_truenodeids=index[true_child].tolist(),
        nodes_falsenodeids=index[false_child].tolist(),
        nodes_trueleafs=(~split[true_child]).astype(int).tolist(),
        nodes_falseleafs=(~split[false_child]).astype(int).tolist(),
        nodes_missing_value_tracks_true=trees.missing_true[rows].astype(int).tolist(),
        leaf_targetids=trees.leaf_target[trees.leaf_start[leaf_rows]].tolist(),
        leaf_weights=numpy_helper.from_array(
            (trees.leaf_weight[trees.leaf_start[leaf_rows]] + base[0]).astype(dtype)
        ),
        n_targets=trees.n_targets,
        aggregate_function=_NEW_AGGREGATES.index(AGGREGATES[trees.aggregate]),
        post_transform=trees.post_transform,
    )


def tree_size(node: onnx.NodeProto | Any) -> tuple[int, int]:
    """A tree-ensemble node's size as a layer's parameters: ``(tree nodes, bytes)``.

    The trees live in the node's attributes, not in initializers, so without this an
    ensemble would show 0 parameters; the bytes are the attributes' serialised size.
    """
    counts = {a.name: len(a.ints) for a in node.attribute}
    if node.op_type == "TreeEnsemble":
        nodes = counts.get("nodes_featureids", 0) + counts.get("leaf_targetids", 0)
    else:
        nodes = counts.get("nodes_treeids", 0)
    return nodes, sum(a.ByteSize() for a in node.attribute)


def select_trees(trees: TreeArrays, keep: np.ndarray) -> TreeArrays:
    """Only the trees whose indexes are in ``keep`` (in their order), rows renumbered."""
    bounds = np.append(trees.roots, trees.n_nodes)
    rows = np.concatenate([np.arange(bounds[t], bounds[t + 1]) for t in keep])
    new_row = np.full(trees.n_nodes, -1, dtype=np.int64)
    new_row[rows] = np.arange(len(rows))
    false_child = trees.false_child[rows]
    starts = trees.leaf_start[rows]
    counts = trees.leaf_count[rows]
    weights = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts, strict=True)])
    return dataclasses.replace(
        trees,
        roots=new_row[trees.roots[keep]].astype(np.int32),
        feature=trees.feature[rows],
        threshold=trees.threshold[rows],
        mode=trees.mode[rows],
        false_child=np.where(false_child >= 0, new_row[false_child], -1).astype(np.int32),
        missing_true=trees.missing_true[rows],
        leaf_start=(np.cumsum(counts) - counts).astype(np.int32),
        leaf_count=counts,
        leaf_target=trees.leaf_target[weights.astype(np.int64)],
        leaf_weight=trees.leaf_weight[weights.astype(np.int64)],
        depth=trees.depth[rows],
    )


def legacy_node(trees: TreeArrays, like: onnx.NodeProto | Any) -> Any:
    """A ``TreeEnsembleClassifier`` / ``TreeEnsembleRegressor`` node holding ``trees``.

    The node keeps ``like``'s name, inputs, outputs, metadata and every attribute that
    is not about nodes or leaves (labels, base values, post-transform, aggregation).
    """
    import onnx
    from onnx import helper, numpy_helper

    prefix = "class" if like.op_type == "TreeEnsembleClassifier" else "target"
    tree_of = np.repeat(np.arange(trees.n_trees), np.diff(np.append(trees.roots, trees.n_nodes)))
    local = np.arange(trees.n_nodes) - trees.roots[tree_of]
    split = trees.mode != LEAF
    leaf_rows = np.repeat(np.arange(trees.n_nodes), trees.leaf_count)
    double = trees.threshold.dtype == np.float64
    values: dict[str, Any] = {
        "nodes_treeids": tree_of.tolist(),
        "nodes_nodeids": local.tolist(),
        "nodes_featureids": np.where(split, trees.feature, 0).tolist(),
        "nodes_modes": [MODES[m] if m != LEAF else "LEAF" for m in trees.mode],
        "nodes_truenodeids": np.where(split, local + 1, 0).tolist(),
        "nodes_falsenodeids": np.where(split, local[np.maximum(trees.false_child, 0)], 0).tolist(),
        "nodes_missing_value_tracks_true": trees.missing_true.astype(int).tolist(),
        f"{prefix}_treeids": tree_of[leaf_rows].tolist(),
        f"{prefix}_nodeids": local[leaf_rows].tolist(),
        f"{prefix}_ids": trees.leaf_target.tolist(),
    }
    thresholds = np.where(split, trees.threshold, 0)
    if double:
        values["nodes_values_as_tensor"] = numpy_helper.from_array(thresholds.astype(np.float64))
        values[f"{prefix}_weights_as_tensor"] = numpy_helper.from_array(trees.leaf_weight)
    else:
        values["nodes_values"] = thresholds.astype(np.float32).tolist()
        values[f"{prefix}_weights"] = trees.leaf_weight.astype(np.float32).tolist()
    replaced = {name.removesuffix("_as_tensor") for name in values} | set(values)
    replaced |= {f"{n}_as_tensor" for n in list(replaced)} | {"nodes_hitrates"}
    node = helper.make_node(like.op_type, list(like.input), list(like.output), name=like.name,
                            domain=like.domain, **values)  # fmt: skip
    node.attribute.extend(a for a in like.attribute if a.name not in replaced)
    node.metadata_props.extend(like.metadata_props)
    assert isinstance(node, onnx.NodeProto)
    return node


def subtree_ends(trees: TreeArrays) -> np.ndarray:
    """Row after the last row of each node's subtree (depth-first rows are contiguous)."""
    ends = np.empty(trees.n_nodes, dtype=np.int64)
    stack: list[int] = []
    bounds = np.append(trees.roots, trees.n_nodes)
    for t in range(trees.n_trees):
        for i in range(bounds[t], bounds[t + 1]):
            while stack and trees.depth[stack[-1]] >= trees.depth[i]:
                ends[stack.pop()] = i
            stack.append(i)
        while stack:
            ends[stack.pop()] = bounds[t + 1]
    return ends
