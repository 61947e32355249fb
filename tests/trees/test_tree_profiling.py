"""Tree facts and node visits: the trees' cost model, checked against scikit-learn's own."""

from __future__ import annotations

import numpy as np

import workbench as wb
from workbench.profiling.trees import tree_stats


def test_tree_stats_count_what_scikit_learn_built(cancer, forest) -> None:
    x, _ = cancer
    m = wb.load(forest)
    stats = tree_stats(m, x)
    assert stats is not None
    counts = [t.tree_.node_count for t in forest.estimators_]
    leaves = [t.tree_.n_leaves for t in forest.estimators_]
    assert (stats.trees, stats.nodes, stats.leaves) == (20, sum(counts), sum(leaves))
    assert stats.max_depth == max(t.tree_.max_depth for t in forest.estimators_)
    assert sum(stats.leaf_depths) == stats.leaves
    # decision_path marks every node a row passes through, leaf included
    visited = forest.decision_path(x)[0].sum(axis=1).A1
    assert stats.visits_per_row == np.mean(visited)


def test_tree_layers_have_their_nodes_as_parameters(forest) -> None:
    m = wb.load(forest)
    (layer,) = m.layers
    assert layer.params == sum(t.tree_.node_count for t in forest.estimators_)
    assert layer.params_bytes > 8 * layer.params  # at least a threshold and ids a node


def test_profile_table_has_node_visits_for_the_profiled_rows(forest) -> None:
    m = wb.load(forest)
    x = m.example_inputs(batch_size=16)["input"]
    p = wb.profile(m, backend="onnxruntime", inputs={"input": x}, layer_repeats=2, budget_s=0.1)
    row = p.layers.set_index("layer").loc["ensemble"]
    assert row["node_visits"] == np.mean(forest.decision_path(x)[0].sum(axis=1).A1)
    assert row["params_bytes"] > 0 and np.isnan(row["flops"])
    assert any("node_visits" in note for note in p.notes)


def test_models_without_trees_have_no_tree_stats() -> None:
    assert tree_stats(wb.samples.load("digits-mlp")) is None
