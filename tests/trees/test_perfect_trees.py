"""The branch-free walk over perfect trees against ONNX Runtime and the plain walk.

Hand-made ensembles put every split mode, missing-value direction and unbalanced depth
in one place, with rows exactly at the thresholds (where ``<`` and ``<=`` differ) and
NaNs; tolerances as the plain kernel's tests (float64 sums, float32 outputs).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.loaders import tree_graph
from workbench.loaders.trees import ensemble_of, run_onnx

#: (tree, node, feature, threshold, mode, true, false, missing tracks true); leaves: mode LEAF
NODES = [
    (0, 0, 0, 0.5, "BRANCH_LEQ", 1, 2, 0),
    (0, 1, 0, 0.0, "LEAF", 0, 0, 0),
    (0, 2, 1, 0.25, "BRANCH_GT", 3, 4, 1),
    (0, 3, 2, -1.0, "BRANCH_GTE", 5, 6, 0),
    (0, 4, 0, 0.0, "LEAF", 0, 0, 0),
    (0, 5, 0, 0.0, "LEAF", 0, 0, 0),
    (0, 6, 0, 0.0, "LEAF", 0, 0, 0),
    (1, 0, 1, 0.0, "BRANCH_LT", 1, 2, 1),
    (1, 1, 0, 0.0, "LEAF", 0, 0, 0),
    (1, 2, 2, 3.0, "BRANCH_LEQ", 3, 4, 0),
    (1, 3, 0, 0.0, "LEAF", 0, 0, 0),
    (1, 4, 0, 0.0, "LEAF", 0, 0, 0),
]
#: (tree, node, target, weight)
LEAVES = [(0, 1, 0, 1.0), (0, 4, 1, 4.0), (0, 5, 0, 2.0), (0, 5, 1, -2.0), (0, 6, 0, 3.0),
          (1, 1, 0, 10.0), (1, 3, 1, 20.0), (1, 4, 0, 30.0), (1, 4, 0, 0.5)]  # fmt: skip


def _ensemble(aggregate: str = "SUM", modes: dict[int, str] | None = None) -> wb.Model:
    nodes = [
        (t, n, f, v, (modes or {}).get(i, m), a, b, mt)
        for i, (t, n, f, v, m, a, b, mt) in enumerate(NODES)
    ]
    column = list(zip(*nodes, strict=True))
    leaf = list(zip(*LEAVES, strict=True))
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["input"],
        ["variable"],
        domain="ai.onnx.ml",
        n_targets=2,
        aggregate_function=aggregate,
        nodes_treeids=column[0],
        nodes_nodeids=column[1],
        nodes_featureids=column[2],
        nodes_values=column[3],
        nodes_modes=column[4],
        nodes_truenodeids=column[5],
        nodes_falsenodeids=column[6],
        nodes_missing_value_tracks_true=column[7],
        target_treeids=leaf[0],
        target_nodeids=leaf[1],
        target_ids=leaf[2],
        target_weights=leaf[3],
    )
    graph = helper.make_graph(
        [node],
        "hand-made",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 2])],
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    onnx.checker.check_model(proto)
    return wb.load(proto)


def _rows(count: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.choice(np.array([-1.0, 0.0, 0.25, 0.5, 3.0], np.float32), size=(count, 3))
    x += (rng.random((count, 3)) < 0.3) * rng.normal(size=(count, 3)).astype(np.float32)
    x[rng.random((count, 3)) < 0.15] = np.nan
    return x.astype(np.float32)


@pytest.mark.parametrize("rows", [5, 300], ids=["serial", "parallel"])
def test_perfect_walk_equals_onnxruntime_on_every_split_mode(rows: int) -> None:
    model = _ensemble()
    perfect = tree_graph.perfect_trees(ensemble_of(model.proto.graph.node[0]), np.float32)
    assert perfect is not None and perfect.depth == 3  # tree 0's deepest leaf
    x = _rows(rows)
    (got,) = wb.backend("numba").compile(model, "cpu").run({"input": x})
    (want,) = run_onnx(model, x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_perfect_padding_copies_a_shallow_leaf_into_every_slot_below_it() -> None:
    perfect = tree_graph.perfect_trees(ensemble_of(_ensemble().proto.graph.node[0]), np.float32)
    assert perfect is not None
    # tree 1 has depth 2, padded to 3: its leaf under `x1 < 0` owns the first 4 slots
    np.testing.assert_array_equal(perfect.leaves[1, :4, 0], [10.0] * 4)
    # `x0 <= 0.5` became `x0 < nextafter(0.5)`; `x1 > 0.25` swapped its children, so its
    # missing values (tracking true) now go right
    assert perfect.threshold[0, 0] == np.nextafter(np.float32(0.5), np.float32(np.inf))
    assert not perfect.missing_left[0, 2]


@pytest.mark.parametrize(
    ("aggregate", "modes"),
    [("MIN", None), ("SUM", {0: "BRANCH_EQ"})],
    ids=["min-aggregate", "equality-split"],
)
def test_ensembles_the_perfect_walk_cannot_take_run_on_the_plain_walk(
    aggregate: str, modes: dict[int, str] | None
) -> None:
    model = _ensemble(aggregate, modes)
    assert tree_graph.perfect_trees(ensemble_of(model.proto.graph.node[0]), np.float32) is None
    x = _rows(100)
    (got,) = wb.backend("numba").compile(model, "cpu").run({"input": x})
    np.testing.assert_allclose(got, run_onnx(model, x)[0], rtol=1e-6, atol=1e-6)


def test_too_deep_ensembles_are_not_padded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree_graph, "PERFECT_MAX_DEPTH", 2)
    trees = ensemble_of(_ensemble().proto.graph.node[0])
    assert tree_graph.perfect_trees(trees, np.float32) is None
