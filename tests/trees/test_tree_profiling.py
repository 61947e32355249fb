"""Tree facts and node visits: the trees' cost model, checked against scikit-learn's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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


def test_tree_groups_are_consecutive_trees_with_their_own_node_visits(cancer, forest) -> None:
    from workbench.profiling.trees import node_visits, tree_groups

    x, _ = cancer
    m = wb.load(forest)
    proto, inputs = m.to_onnx().proto, {"input": x}
    groups = tree_groups(proto, inputs)
    assert [g.layer for g in groups] == [f"ensemble[{i}:{i + 2}]" for i in range(0, 20, 2)]
    for g in groups:  # each group's visits are its trees' decision paths, per row
        trees = forest.estimators_[g.first : g.first + g.trees]
        paths = sum(t.decision_path(x).sum(axis=1).A1 for t in trees)
        assert g.node_visits == pytest.approx(np.mean(paths), rel=1e-12)
        assert g.nodes == sum(t.tree_.node_count for t in trees)
    assert sum(g.node_visits for g in groups) == pytest.approx(
        node_visits(proto, inputs)["ensemble"]
    )
    assert [g.trees for g in tree_groups(proto, inputs, group_size=8)] == [8, 8, 4]


def test_boosted_groups_hold_whole_rounds() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    from workbench.profiling.trees import GROUPS, tree_groups

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)  # three classes: one tree each a round
    gbm = GradientBoostingClassifier(n_estimators=36, max_depth=2, random_state=0).fit(x, y)
    m = wb.load(gbm, example_inputs=x)
    groups = tree_groups(m.to_onnx().proto, {"input": x})
    assert len(groups) == GROUPS and {g.trees for g in groups} == {9}  # 3 rounds of 3
    rounds = [gbm.estimators_[r, k] for r in range(3) for k in range(3)]
    paths = sum(t.decision_path(x).sum(axis=1).A1 for t in rounds)
    assert groups[0].node_visits == pytest.approx(np.mean(paths), rel=1e-12)
    # a binary booster's trees all write one class: a round is one tree
    binary = GradientBoostingClassifier(n_estimators=36, max_depth=2, random_state=0)
    m = wb.load(binary.fit(x, y > 0), example_inputs=x)
    assert [g.trees for g in tree_groups(m.to_onnx().proto, {"input": x})] == [3] * GROUPS


def test_profile_rows_time_tree_groups_alone_where_the_runtime_can(forest) -> None:
    from workbench.profiling.profile import Profile
    from workbench.profiling.trees import GROUP_OP

    m = wb.load(forest)
    x = m.example_inputs(batch_size=16)
    tables = {}
    for backend in ("onnxruntime", "numba", "native"):
        p = wb.profile(m, backend=backend, inputs=x, layer_repeats=2, budget_s=0.1)
        table = p.layers.set_index("layer")
        groups = table[table["op_type"] == GROUP_OP]
        ensemble = table.loc["ensemble"]
        assert list(table.index[:11]) == ["ensemble", *groups.index]  # right after their layer
        assert (groups["fused_into"] == "ensemble").all() and groups["params_bytes"].isna().all()
        assert groups["attributed_ms"].sum() == pytest.approx(ensemble["latency_ms"])
        assert groups["node_visits"].sum() == pytest.approx(ensemble["node_visits"])
        assert p.memory.params_bytes == ensemble["params_bytes"]  # not counted twice
        (note,) = [n for n in p.notes if n.startswith("groups of trees (ensemble: 10 groups")]
        assert groups["latency_ms"].isna().all()  # the layer's row holds their time, once
        if backend == "native":  # the library's own object cannot be cut into groups
            assert groups["alone_ms"].isna().all() and (groups["samples"] == 0).all()
            assert groups["note"].str.startswith("attributed, not measured (native cannot").all()
            assert "are attributed, not measured (native cannot run" in note
        else:  # each group's trees timed alone on the same rows, beside the attribution
            assert (groups["alone_ms"] > 0).all() and np.isfinite(groups["alone_ms"]).all()
            assert (groups["samples"] > 0).all()
            assert groups["note"].str.startswith("measured: these 2 trees alone").all()
            ratio = groups["alone_ms"].sum() / ensemble["latency_ms"]
            assert f"(ratio {ratio:.2f}, not forced to 1" in note and 0.01 < ratio < 1000
        back = Profile.from_json(p.to_json()).layers.set_index("layer")
        for column in ("attributed_ms", "alone_ms", "samples"):
            np.testing.assert_array_equal(
                back.loc[groups.index, column].astype(float), groups[column]
            )
        tables[backend] = groups
    # the same groups, the same measured work on every runtime
    assert list(tables["onnxruntime"].index) == list(tables["numba"].index)
    assert tables["onnxruntime"]["node_visits"].equals(tables["native"]["node_visits"])


@pytest.mark.parametrize("backend", ["onnxruntime", "numba"])
def test_group_models_add_up_to_the_whole_ensembles_raw_scores(backend) -> None:
    from sklearn.ensemble import GradientBoostingRegressor

    from workbench.loaders.onnx import model_from_proto
    from workbench.profiling.trees import group_models, tree_groups

    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    gbm = GradientBoostingRegressor(n_estimators=24, max_depth=3, random_state=0)
    m = wb.load(gbm.fit(x, x[:, 0] * 2 + np.sin(x[:, 1])), example_inputs=x)
    proto = m.to_onnx().proto
    groups = tree_groups(proto, {"input": x})
    models = group_models(proto, groups)
    assert list(models) == [g.layer for g in groups] and len(groups) > 1
    runtime = wb.backend(backend)
    parts = [
        runtime.compile(model_from_proto(models[g.layer], g.layer), "cpu").run({"input": x})[0]
        for g in groups
    ]
    whole = runtime.compile(m, "cpu").run({"input": x})[0]
    # a sum of the groups' raw scores plus the ensemble's base value (no post-transform)
    np.testing.assert_allclose(sum(parts) + gbm.init_.constant_[0][0], whole, rtol=1e-5, atol=1e-5)
    tree = gbm.estimators_[: groups[0].trees, 0]
    first = sum(t.predict(x) for t in tree) * gbm.learning_rate
    np.testing.assert_allclose(parts[0][:, 0], first, rtol=1e-5, atol=1e-5)


def test_trees_fed_by_a_scaler_walk_the_scaled_rows(cancer) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from workbench.profiling.trees import GROUP_OP

    x, y = cancer
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(4, max_depth=3, random_state=0))
    m = wb.load(pipe.fit(x, y), example_inputs=x)
    rows = x[:64]
    p = wb.profile(m, backend="onnxruntime", inputs={"input": rows}, layer_repeats=2, budget_s=0.1)
    table = p.layers.set_index("layer")
    (ensemble,) = [n for n in table.index if table.loc[n, "op_type"].startswith("TreeEnsemble")]
    forest = pipe[-1]
    scaled = pipe[0].transform(rows).astype(np.float32)
    visited = forest.decision_path(scaled)[0].sum(axis=1).A1
    # the scaler runs in float32 in the graph, in float64 in scikit-learn: a row on a
    # threshold could go the other way, none of these does
    assert table.loc[ensemble, "node_visits"] == pytest.approx(np.mean(visited), rel=1e-12)
    groups = table[table["op_type"] == GROUP_OP]
    assert len(groups) == 4 and (groups["fused_into"] == ensemble).all()
    assert (groups["alone_ms"] > 0).all()  # each group reads the scaler's output, timed alone
    assert not any("not measured" in n for n in p.notes)


def test_isolation_forest_visits_are_its_path_lengths() -> None:
    from sklearn.ensemble import IsolationForest

    from workbench.profiling.trees import node_visits, tree_groups

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    forest = IsolationForest(n_estimators=12, max_samples=64, random_state=0).fit(x)
    m = wb.load(forest, example_inputs=x)
    proto = m.to_onnx().proto
    # each tree reads the features in its own order, selected by a Gather in the graph
    paths = [
        t.decision_path(x[:, f]).sum(axis=1).A1
        for t, f in zip(forest.estimators_, forest.estimators_features_, strict=True)
    ]
    (visits,) = node_visits(proto, {"input": x}).values()
    assert visits == pytest.approx(np.mean(sum(paths)), rel=1e-12)
    groups = tree_groups(proto, {"input": x}, group_size=1)
    assert [g.trees for g in groups] == [1] * 12
    # the converter writes the trees in its own order: compare them as a set
    np.testing.assert_allclose(
        sorted(g.node_visits for g in groups), sorted(np.mean(p) for p in paths), rtol=1e-12
    )


def test_isolation_forest_groups_are_cut_across_its_tree_nodes() -> None:
    """One tree node a tree, each reading its own feature order: a group's model holds
    its nodes with their own inputs and sums their raw outputs (here leaf ids)."""
    from sklearn.ensemble import IsolationForest

    from workbench.loaders.onnx import model_from_proto
    from workbench.profiling.trees import GROUP_OP, ensemble_rows, group_models, tree_groups

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    forest = IsolationForest(n_estimators=12, max_samples=64, random_state=0).fit(x)
    m = wb.load(forest, example_inputs=x)
    proto = m.to_onnx().proto
    rows, _ = ensemble_rows(proto, {"input": x})
    groups = tree_groups(proto, {"input": x}, group_size=5)
    models = group_models(proto, groups, rows)
    parts = []
    for g in groups:
        part = model_from_proto(models[g.layer], g.layer)
        assert len(part.inputs) == g.trees  # each tree's own selection of the features
        feeds = {v.name: rows[v.name] for v in part.inputs}
        parts.append(wb.backend("onnxruntime").compile(part, "cpu").run(feeds)[0])
    leaves = sum(
        t.apply(x[:, f])
        for t, f in zip(forest.estimators_, forest.estimators_features_, strict=True)
    )
    np.testing.assert_array_equal(sum(parts)[:, 0], leaves)
    p = wb.profile(m, "numba", inputs={"input": x[:32]}, layer_repeats=2, budget_s=0.1)
    table = p.layers[p.layers["op_type"] == GROUP_OP]
    assert len(table) == 12 and (table["alone_ms"] > 0).all() and (table["samples"] > 0).all()


def test_trees_fed_by_an_op_the_evaluator_lacks_say_why_not_measured(cancer) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from workbench.profiling.trees import ensemble_rows, node_visits, with_tree_groups

    x, y = cancer
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(2, max_depth=2, random_state=0))
    proto = wb.load(pipe.fit(x, y), example_inputs=x).to_onnx().proto
    (scaler,) = [n for n in proto.graph.node if n.op_type == "Scaler"]
    scaler.domain, scaler.op_type = "com.example", "MyScaler"
    rows, failed = ensemble_rows(proto, {"input": x[:8]})
    assert scaler.output[0] not in rows and list(failed) == [scaler.output[0]]
    assert "MyScaler" in failed[scaler.output[0]]
    assert node_visits(proto, {"input": x[:8]}) == {}
    table = pd.DataFrame({"latency_ms": [1.0]}, index=["ensemble"])
    same, notes = with_tree_groups(table, proto, {"input": x[:8]})
    assert same is table
    assert notes[0].startswith("node visits and groups of trees not measured for ensemble")
    assert "MyScaler" in notes[0]


def test_group_timing_false_leaves_the_groups_attributed(forest) -> None:
    from workbench.profiling.trees import GROUP_OP

    m = wb.load(forest)
    x = m.example_inputs(batch_size=8)
    p = wb.profile(m, "onnxruntime", inputs=x, layer_repeats=2, budget_s=0.1, group_timing=False)
    groups = p.layers[p.layers["op_type"] == GROUP_OP]
    assert len(groups) == 10 and groups["alone_ms"].isna().all()
    assert groups["note"].str.startswith("attributed, not measured (group_timing=False)").all()
