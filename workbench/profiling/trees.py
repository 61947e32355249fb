"""What a tree ensemble is made of and how much work it does: the trees' cost model.

Trees do comparisons, not multiply-adds, so a tree layer's FLOPs stay unknown (NaN) in
the per-layer table; their work is **node visits per prediction**, measured by walking
the given rows down every tree (a row visits each tree's nodes from the root down to
its leaf, so deep paths cost more than the tree's size says). `node_visits` fills the
per-layer ``node_visits`` column; `tree_stats` gives the model-level facts (trees, nodes,
leaves, depth histogram, model bytes, visits per prediction).

Every runtime runs an ensemble as one kernel, so its groups of trees (`tree_groups`: ~12
groups of consecutive trees, whole boosting rounds) are rows of the per-layer table
marked as run inside the ensemble's kernel (``fused_into``), with their node visits
measured and two times side by side:

- ``attributed_ms``, always: the ensemble's measured median split by the groups' share
  of node visits, an attribution and not a measurement;
- ``alone_ms`` / ``alone_p90_ms`` / ``samples``, **measured** where the runtime can run
  part of an ensemble: each group is cut out as a model of its own (`group_models`: the group's
  trees alone, summed raw scores, no post-transform or base values) and timed on the
  profiled rows with the measuring core (`workbench.profiling.measure`). ONNX Runtime
  and the Numba kernel run them; ``native`` and ``treelite`` run the library's own
  object, which cannot be cut, so their rows stay attributed and say so. A note gives
  the groups' measured sum against the whole layer's median (a ratio, not forced to 1:
  each group pays its own call overhead, and a group's trees run without the others').
  Their ``latency_ms`` stays empty, so that sums over a table's ``latency_ms`` (the
  layer bars, the breakdown by op type, the cost model's estimates) keep counting the
  ensemble's time once.

Group timing is on whenever layers are profiled and bounded: one compile per group and
about `GROUP_BUDGET_S` seconds of timed repeats for all the groups of a layer together.

Example:
    >>> stats = tree_stats(wb.samples.load("trees-gbm"), data.inputs)
    >>> stats.trees, stats.nodes, stats.visits_per_row
    (300, 14638, 1803.2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.loaders.tree_graph import LEAF, TREE_OPS, TreeArrays, legacy_node, select_trees
from workbench.loaders.trees import ensemble_of

if TYPE_CHECKING:
    import onnx

    from workbench.backends.base import Session
    from workbench.model import Model
    from workbench.profiling.timer import Measurement

__all__ = [
    "GROUPS",
    "TreeGroup",
    "TreeStats",
    "group_models",
    "node_visits",
    "reach_counts",
    "tree_groups",
    "tree_stats",
    "visits_of",
    "with_tree_groups",
]

#: groups of trees an ensemble is split into by default (about; whole boosting rounds)
GROUPS = 12
MAX_GROUPS = 16
#: ``op_type`` of a group-of-trees row in the per-layer table
GROUP_OP = "TreeGroup"
#: seconds of timed repeats shared by all the groups of one tree layer (each its part)
GROUP_BUDGET_S = 0.25
#: untimed calls before a group's timed ones
GROUP_WARMUP = 1


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
    for _, rows, _ in _walks(trees, x):
        visits[rows] += 1
    return visits


def visits_by_tree(trees: TreeArrays, x: np.ndarray) -> np.ndarray:
    """Mean nodes a row of ``x`` visits in each tree (leaf included), float64 ``(trees,)``."""
    per_tree = np.zeros(trees.n_trees)
    for tree, rows, _ in _walks(trees, x):
        per_tree[tree] += len(rows)
    return per_tree / max(len(x), 1)


def leaves_of(trees: TreeArrays, x: np.ndarray) -> np.ndarray:
    """The leaf (row of ``trees``) each row of ``x`` ends in, per tree: int64 ``(rows, trees)``."""
    leaves = np.zeros((len(x), trees.n_trees), dtype=np.int64)
    for tree, rows, nodes in _walks(trees, x):
        leaves[rows, tree] = nodes  # the last level a row reaches is its leaf
    return leaves


def reach_counts(trees: TreeArrays, x: np.ndarray) -> np.ndarray:
    """How many rows of ``x`` pass through each node (row of ``trees``), float64."""
    counts = np.zeros(trees.n_nodes)
    for _, _, nodes in _walks(trees, x):
        np.add.at(counts, nodes, 1)
    return counts


def _walks(trees: TreeArrays, x: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Every step of every row down every tree: ``(tree, row indexes, node rows)`` per level."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    threshold = trees.threshold.astype(np.float64)
    for tree, root in enumerate(trees.roots):
        rows = np.arange(len(x))
        node = np.full(len(x), root, dtype=np.int64)
        while len(rows):
            yield tree, rows, node
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


def ensemble_rows(
    proto: onnx.ModelProto, inputs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The rows every tree node reads: ``inputs`` and the tensors other nodes compute.

    A pipeline's scaler or an IsolationForest's feature selection sits between the
    graph input and the trees; its nodes (and only them) are run on ``inputs`` with
    ONNX's reference evaluator, so node visits are walked on the rows the trees see.

    Args:
        proto: the model's ONNX graph (not changed).
        inputs: the rows, by graph input name.

    Returns:
        ``inputs`` plus each computed tree input by tensor name, and, for tree inputs
        that could not be computed, tensor name -> why (an op the evaluator lacks).
    """
    nodes = proto.graph.node
    wanted = sorted({n.input[0] for n in nodes if n.op_type in TREE_OPS} - set(inputs))
    if not wanted:
        return dict(inputs), {}
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    needed: set[int] = set()
    stack = list(wanted)
    while stack:
        index = producer.get(stack.pop())
        if index is not None and index not in needed:
            needed.add(index)
            stack.extend(nodes[index].input)
    try:
        values = _evaluate(proto, sorted(needed), wanted, inputs)
    except Exception as exc:  # the trees' structure stays; only their visits go
        why = str(exc).splitlines()[0] if str(exc) else repr(exc)
        return dict(inputs), dict.fromkeys(wanted, why)
    return {**inputs, **values}, {}


def _evaluate(
    proto: onnx.ModelProto, keep: list[int], outputs: list[str], inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``outputs`` of the graph's nodes at indexes ``keep`` (graph order), run on
    ``inputs`` by `onnx.reference.ReferenceEvaluator`."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    body = [proto.graph.node[i] for i in keep]
    read = {name for node in body for name in node.input}
    graph = helper.make_graph(
        body,
        "ensemble_rows",
        [v for v in proto.graph.input if v.name in read],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        initializer=[t for t in proto.graph.initializer if t.name in read],
    )
    model = helper.make_model(graph, opset_imports=proto.opset_import, ir_version=proto.ir_version)
    feeds = {name: np.asarray(value) for name, value in inputs.items() if name in read}
    values = ReferenceEvaluator(model).run(outputs, feeds)
    return {name: np.asarray(v) for name, v in zip(outputs, values, strict=True)}


def node_visits(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean node visits per input row of each canonical layer holding trees.

    Ensembles fed by other nodes (a scaler, a feature selection) walk the rows those
    nodes compute (`ensemble_rows`); one whose rows cannot be computed is left out.

    Args:
        proto: the model's ONNX graph (not changed).
        inputs: the rows, by input name.

    Returns:
        layer -> mean visits per row (empty for a model without trees).
    """
    from workbench.loaders.onnx import canonical_layer_name

    rows, _ = ensemble_rows(proto, inputs)
    visits: dict[str, float] = {}
    for index, node in enumerate(proto.graph.node):
        if node.op_type not in TREE_OPS or node.input[0] not in rows:
            continue
        x = _matrix(rows[node.input[0]])
        layer = canonical_layer_name(node, index)
        visits[layer] = visits.get(layer, 0.0) + float(visits_of(ensemble_of(node), x).mean())
    return visits


def _matrix(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows)
    return x.reshape(len(x), -1)


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


@dataclass(frozen=True)
class TreeGroup:
    """Consecutive trees of one tree layer, a row of the per-layer table.

    Attributes:
        layer: the row's name, the tree layer and the trees' range: ``"ensemble[0:25]"``
            holds trees 0 to 24 (in graph order).
        parent: the tree layer (``"ensemble"``) whose measured time the group shares.
        first: index of the group's first tree.
        trees: number of trees.
        nodes: tree nodes (splits and leaves).
        node_visits: mean nodes a row visits in these trees, measured on the rows given.
    """

    layer: str
    parent: str
    first: int
    trees: int
    nodes: int
    node_visits: float


def tree_groups(
    proto: onnx.ModelProto, inputs: dict[str, np.ndarray], group_size: int | None = None
) -> list[TreeGroup]:
    """The groups of consecutive trees of each tree layer, with node visits measured.

    Trees are numbered in graph order across a layer's nodes. A boosted multi-class
    ensemble writes one tree per class a round, so a group holds whole rounds.

    Args:
        proto: the model's ONNX graph (not changed).
        inputs: the rows, by input name; as for `node_visits`, ensembles fed by other
            nodes walk the rows those compute.
        group_size: trees a group (None: whole rounds, so that there are about `GROUPS`).

    Returns:
        The groups, layer by layer in graph order (empty for a model without trees).

    Example:
        >>> [g.layer for g in tree_groups(m.to_onnx().proto, m.example_inputs(64))][:2]
        ['ensemble[0:25]', 'ensemble[25:50]']
    """
    from workbench.loaders.onnx import canonical_layer_name

    visits: dict[str, list[np.ndarray]] = {}
    nodes: dict[str, list[np.ndarray]] = {}
    rounds: dict[str, int] = {}
    rows, _ = ensemble_rows(proto, inputs)
    for index, node in enumerate(proto.graph.node):
        if node.op_type not in TREE_OPS or node.input[0] not in rows:
            continue
        x = _matrix(rows[node.input[0]])
        trees = ensemble_of(node)
        layer = canonical_layer_name(node, index)
        visits.setdefault(layer, []).append(visits_by_tree(trees, x))
        nodes.setdefault(layer, []).append(np.diff([*trees.roots, trees.n_nodes]))
        rounds[layer] = max(rounds.get(layer, 1), _trees_a_round(trees))
    groups = []
    for layer, per_tree in visits.items():
        tree_visits, tree_nodes = np.concatenate(per_tree), np.concatenate(nodes[layer])
        size = group_size or _group_size(len(tree_visits), rounds[layer])
        for first in range(0, len(tree_visits), size):
            stop = min(first + size, len(tree_visits))
            groups.append(
                TreeGroup(
                    layer=f"{layer}[{first}:{stop}]",
                    parent=layer,
                    first=first,
                    trees=stop - first,
                    nodes=int(tree_nodes[first:stop].sum()),
                    node_visits=float(tree_visits[first:stop].sum()),
                )
            )
    return groups


def _group_size(trees: int, per_round: int) -> int:
    """Trees a group: whole rounds, about `GROUPS` groups and never more than `MAX_GROUPS`."""
    rounds = max(trees // per_round, 1)
    size = max(1, round(rounds / GROUPS))
    if -(-rounds // size) > MAX_GROUPS:
        size += 1
    return size * per_round


def _trees_a_round(trees: TreeArrays) -> int:
    """Trees a boosting round adds: one per class when tree t writes only class t mod
    classes (a forest's leaves write every class, a binary booster's trees one class: their
    rounds are one tree)."""
    if trees.n_targets <= 1 or trees.n_trees % trees.n_targets:
        return 1
    leaves = np.flatnonzero(trees.leaf_count > 0)
    if len(leaves) == 0 or (trees.leaf_count[leaves] > 1).any():
        return 1
    tree_of = np.searchsorted(trees.roots, leaves, side="right") - 1
    target = trees.leaf_target[trees.leaf_start[leaves]]
    cycle = np.arange(trees.n_trees) % trees.n_targets  # tree t adds to class t mod classes
    return trees.n_targets if bool((target == cycle[tree_of]).all()) else 1


def group_models(
    graph: onnx.ModelProto,
    groups: Sequence[TreeGroup],
    rows: dict[str, np.ndarray] | None = None,
) -> dict[str, onnx.ModelProto]:
    """One ONNX model per group: the group's trees alone, cut out of their tree layer.

    Each model reads the layer's input (a graph input, or the tensor a scaler or feature
    selection computes, then fed as a model input of its own) and returns the group's
    summed raw scores ``(rows, targets)`` (``scores``): the node's attributes restricted
    to the group's trees, aggregated by ``SUM`` with no post-transform and no base
    values, so the groups of a summed ensemble add up to the whole layer's raw scores
    minus its base values. A layer made of several tree nodes (an IsolationForest
    converts to one node a tree, each reading its own feature selection) gives each
    group's nodes reading their own inputs, their raw scores summed (``Sum``); layers
    whose nodes have different target counts are left out.

    Args:
        graph: the model's ONNX graph (not changed).
        groups: from `tree_groups` on the same graph.
        rows: the layers' rows by tensor name (`ensemble_rows`), for the element type of
            an input that is no graph input (None: float).

    Returns:
        group layer -> its model.
    """
    from onnx import TensorProto, helper

    from workbench.loaders.onnx import canonical_layer_name

    nodes: dict[str, list[onnx.NodeProto]] = {}
    for index, node in enumerate(graph.graph.node):
        if node.op_type in TREE_OPS:
            nodes.setdefault(canonical_layer_name(node, index), []).append(node)
    inputs = {v.name: v for v in graph.graph.input}
    for name, value in (rows or {}).items():
        if name not in inputs:
            kind = helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
            inputs[name] = helper.make_tensor_value_info(name, kind, [None, None])
    models = {}
    parsed: dict[str, list[TreeArrays]] = {}  # each layer's trees read once, not once a group
    for group in groups:
        layer_nodes = nodes.get(group.parent, [])
        if group.parent not in parsed:
            parsed[group.parent] = [ensemble_of(node) for node in layer_nodes]
        ensembles = parsed[group.parent]
        if len({t.n_targets for t in ensembles}) != 1:
            continue  # their scores could not be summed into one output
        parts = _group_parts(layer_nodes, ensembles, group)
        targets = ensembles[0].n_targets
        body_nodes = []
        for k, (node, part) in enumerate(parts):
            like = helper.make_node(
                "TreeEnsembleRegressor", [node.input[0]], [f"scores_{k}"], domain="ai.onnx.ml",
                n_targets=targets, aggregate_function="SUM", post_transform="NONE",
            )  # fmt: skip
            raw = legacy_node(part, like)
            raw.name = f"{group.layer}#{k}" if len(parts) > 1 else group.layer
            body_nodes.append(raw)
        if len(parts) > 1:  # a layer of several tree nodes: their raw scores summed
            body_nodes.append(
                helper.make_node("Sum", [n.output[0] for n in body_nodes], ["scores"])
            )
        else:
            body_nodes[0].output[0] = "scores"
        sources = []
        for name in dict.fromkeys(node.input[0] for node, _ in parts):
            source = inputs.get(name)
            if source is None:
                source = helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, None])
            sources.append(source)
        scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, targets])
        body = helper.make_graph(body_nodes, group.layer, sources, [scores])
        models[group.layer] = helper.make_model(
            body, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
        )
    return models


def _group_parts(
    nodes: list[onnx.NodeProto], ensembles: list[TreeArrays], group: TreeGroup
) -> list[tuple[onnx.NodeProto, TreeArrays]]:
    """The group's trees node by node: trees are numbered in graph order across the
    layer's nodes, so a group may take the end of one node and the start of the next."""
    parts, offset = [], 0
    for node, trees in zip(nodes, ensembles, strict=True):
        first = max(group.first - offset, 0)
        stop = min(group.first + group.trees - offset, trees.n_trees)
        if first < stop:
            parts.append((node, select_trees(trees, np.arange(first, stop))))
        offset += trees.n_trees
    return parts


def _measure_groups(
    session: Session,
    graph: onnx.ModelProto,
    groups: Sequence[TreeGroup],
    inputs: dict[str, np.ndarray],
) -> tuple[dict[str, Measurement], str]:
    """Each group's trees timed alone on ``session``'s runtime, or why they cannot be.

    The group models are compiled on the session's device with the options it was
    compiled with where it shows them (`_options_of`), and timed on the profiled rows,
    `GROUP_BUDGET_S` shared by the groups.
    """
    from workbench.backends.base import get_backend
    from workbench.loaders.onnx import model_from_proto
    from workbench.profiling.measure import TimingOptions, compiled, measure

    models = group_models(graph, groups, inputs)
    if len(models) < len(groups):
        return {}, "its tree nodes have different numbers of targets"
    backend = get_backend(session.backend)
    timing = TimingOptions(budget_s=GROUP_BUDGET_S / max(len(groups), 1), warmup=GROUP_WARMUP)
    measured = {}
    for group in groups:
        model = model_from_proto(models[group.layer], f"{session.model.name}{group.layer}")
        support = backend.supports(model)
        if not support:
            return (
                {},
                f"{session.backend} cannot run a group's trees alone: {'; '.join(support.reasons)}",
            )
        feeds = {v.name: inputs[v.name] for v in model.inputs}
        with compiled(model, session.backend, session.device, _options_of(session)) as c:
            runner = c.session.runner(feeds)
            measured[group.layer] = measure(
                runner, timing, device=session.device, label=group.layer, threads=c.threads
            )
    return measured, ""


def with_tree_groups(
    table: pd.DataFrame,
    graph: onnx.ModelProto | None,
    inputs: dict[str, np.ndarray],
    session: Session | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """A per-layer table with the trees' work and their groups, and notes saying how.

    Tree layers get ``node_visits`` (measured) and ``trees``; after each, one row per
    `tree_groups` group: ``op_type`` `GROUP_OP`, ``fused_into`` the tree layer,
    ``node_visits``, ``trees`` and ``tree_nodes`` counted, ``attributed_ms`` (the tree
    layer's measured median times the group's share of its node visits, an attribution)
    and, where ``session``'s runtime can run a group's trees alone, ``alone_ms``,
    ``alone_p90_ms`` and ``samples`` measured on them (`group_models`); else those stay
    empty (0 samples) and the note says why. ``latency_ms`` stays empty on group rows: the
    layer's row holds their time, and sums over ``latency_ms`` count it once. Group rows
    hold no parameter bytes (their layer's row does).

    Args:
        table: the per-layer table indexed by layer (not changed).
        graph: the model's ONNX graph (None: no trees to find).
        inputs: the profiled rows, by input name.
        session: the profiled session, to time the groups on its runtime (None: the
            groups are only attributed).

    Returns:
        The new table (indexed by layer) and the notes for the profile.
    """
    if graph is None:
        return table, []
    inputs, failed = ensemble_rows(graph, inputs)
    notes = _unmeasured_note(graph, failed)
    visits = node_visits(graph, inputs)
    if not visits:
        return table, notes
    table = table.copy()
    table["node_visits"] = table.index.map(visits).astype(float)
    notes.append("tree layers: work is node_visits per input row, not FLOPs")
    groups: dict[str, list[TreeGroup]] = {}
    for group in tree_groups(graph, inputs):
        if group.parent in table.index:
            groups.setdefault(group.parent, []).append(group)
    if not groups:
        return table, notes
    table["trees"] = table.index.map({k: sum(g.trees for g in v) for k, v in groups.items()})
    records = []
    for layer, row in table.iterrows():
        records.append({"layer": layer, **row.to_dict()})
        if str(layer) not in groups:
            continue
        measured, why = _timed(session, graph, groups[str(layer)], inputs)
        for group in groups[str(layer)]:
            share = group.node_visits / visits[group.parent] if visits[group.parent] else np.nan
            records.append(_group_record(group, float(row["latency_ms"]) * share, share,
                                         measured.get(group.layer), why))  # fmt: skip
        notes.append(_groups_note(str(layer), groups[str(layer)], row, measured, why))
    return pd.DataFrame.from_records(records).set_index("layer"), notes


def _options_of(session: Session) -> dict[str, Any]:
    """The options ``session`` was compiled with that differ from its backend's defaults
    (ONNX Runtime's `OrtOptions`); none for a session that does not show them."""
    options = getattr(session, "options", None)
    if not dataclasses.is_dataclass(options) or isinstance(options, type):
        return {}
    default = type(options)()
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if getattr(options, f.name) != getattr(default, f.name)
    }


def _timed(
    session: Session | None,
    graph: onnx.ModelProto,
    groups: list[TreeGroup],
    inputs: dict[str, np.ndarray],
) -> tuple[dict[str, Measurement], str]:
    if session is None:
        return {}, "group_timing=False"
    try:
        return _measure_groups(session, graph, groups, inputs)
    except Exception as exc:  # the attribution stands without the measurement
        return {}, f"timing the groups failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"


def _group_record(
    group: TreeGroup, attributed_ms: float, share: float, measured: Measurement | None, why: str
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "layer": group.layer,
        "op_type": GROUP_OP,
        "samples": 0,
        "fused_into": group.parent,
        "node_visits": group.node_visits,
        "trees": group.trees,
        "tree_nodes": group.nodes,
        "attributed_ms": attributed_ms,
        "alone_ms": np.nan,
        "alone_p90_ms": np.nan,
    }
    if measured is None:
        record["note"] = (
            f"attributed, not measured ({why}): {share:.1%} of {group.parent}'s node visits "
            "times its measured time"
        )
        return record
    record.update(
        alone_ms=measured.median,
        alone_p90_ms=measured.p90,
        samples=measured.n,
        note=f"measured: these {group.trees} trees alone on the profiled rows, raw scores",
    )
    return record


def _groups_note(
    layer: str, groups: list[TreeGroup], row: pd.Series, measured: dict[str, Measurement], why: str
) -> str:
    sizes = sorted({g.trees for g in groups}, reverse=True)
    of_trees = f"{'/'.join(map(str, sizes[:2]))} tree{'' if sizes == [1] else 's'}"
    head = f"groups of trees ({layer}: {len(groups)} groups of {of_trees})"
    if not measured:
        return (
            f"{head} are attributed, not measured ({why}): their attributed_ms is the "
            "layer's measured median split by the group's share of node visits (measured on "
            "the profiled rows); their alone_ms stays empty"
        )
    total = sum(m.median for m in measured.values())
    whole = float(row["latency_ms"])
    return (
        f"{head} are measured, each group's trees alone (alone_ms: raw scores, no "
        f"post-transform; latency_ms stays the layer's): their medians sum to {total:.4g} "
        f"ms against {whole:.4g} ms for the whole layer (ratio {total / whole:.2f}, not "
        "forced to 1: each group is a call of its own, with raw scores and its own "
        "threading; above 50 rows ONNX Runtime loops by rows over 80 trees or fewer and "
        "by trees over more, docs/trees.md); attributed_ms beside them splits the "
        "layer's median by node visits"
    )


def _unmeasured_note(graph: onnx.ModelProto, failed: dict[str, str]) -> list[str]:
    """Why tree layers have no node visits: the rows they read could not be computed
    (``failed``: tensor -> why, from `ensemble_rows`)."""
    from workbench.loaders.onnx import canonical_layer_name

    layers = {
        canonical_layer_name(node, index)
        for index, node in enumerate(graph.graph.node)
        if node.op_type in TREE_OPS and node.input[0] in failed
    }
    if not layers:
        return []
    why = next(iter(failed.values()))
    return [
        f"node visits and groups of trees not measured for {', '.join(sorted(layers))}: the "
        f"rows they read are computed by other nodes, which ONNX's reference evaluator "
        f"could not run here ({why})"
    ]
