"""Trees compiled to torch tensor ops (Hummingbird's GEMM and tree traversal) against ORT."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.errors import TransformError
from workbench.loaders.trees import run_onnx


@pytest.mark.parametrize("strategy", ["gemm", "perf_tree_trav", "tree_trav"])
@pytest.mark.parametrize("which", ["forest", "xgb_classifier", "gbm_regressor"])
def test_tensor_trees_equal_onnxruntime(request, cancer, which: str, strategy: str) -> None:
    x, y = cancer
    if which == "gbm_regressor":
        from sklearn.ensemble import GradientBoostingRegressor

        estimator = GradientBoostingRegressor(n_estimators=10, max_depth=3).fit(x, y.astype(float))
    else:
        estimator = request.getfixturevalue(which)
    m = wb.load(estimator)
    rows = x[:64].copy()
    rows[::4, 2] = np.nan
    t = wb.transform(m, "tree-tensors", strategy=strategy)
    assert t.framework == "torch" and [layer.name for layer in t.layers] == [
        "ensemble",
        "post-transform",
    ]
    got = wb.backend("torch").compile(t, "cpu").run({"input": rows})
    for g, w in zip(got, run_onnx(m, rows), strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g.reshape(w.shape), w, rtol=1e-5, atol=1e-6)


def test_auto_picks_the_strategy_by_depth_and_says_which(cancer) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = cancer
    noise = np.random.default_rng(0).integers(0, 2, len(y))  # memorised: trees deeper than 10
    chosen = {}
    for depth, labels in [(3, y), (6, y), (None, noise)]:
        forest = RandomForestClassifier(3, max_depth=depth, random_state=0).fit(x, labels)
        t = wb.transform(wb.load(forest), "tree-tensors")
        chosen[depth] = t.recipe["chosen"]
        assert t.recipe_name == f"tree-tensors(auto: {chosen[depth]})"
        assert f"strategy={chosen[depth]}" in repr(t.module)
    assert chosen == {3: "gemm", 6: "perf_tree_trav", None: "tree_trav"}
    with pytest.raises(TransformError, match=r"do not pad into perfect trees \(depth 1\d"):
        wb.transform(wb.load(forest), "tree-tensors", strategy="perf_tree_trav")


@pytest.mark.parametrize("library", ["xgboost", "sklearn"])
def test_perfect_trees_send_missing_values_both_ways_and_sum_several_targets(library) -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    y = (x[:, 0] > 0.3).astype(np.int64) + (x[:, 2] > 1)  # three classes
    if library == "xgboost":  # one class a tree; learned NaN directions, left and right
        xgb = pytest.importorskip("xgboost")
        pytest.importorskip("onnxmltools")
        x[rng.random(x.shape) < 0.2] = np.nan
        y = y + np.isnan(x[:, 1]) * (y == 0)
        estimator = xgb.XGBClassifier(n_estimators=6, max_depth=5, random_state=0)
    else:  # every leaf adds to all three classes
        estimator = RandomForestClassifier(4, max_depth=5, random_state=0)
    m = wb.load(estimator.fit(x, y))
    t = wb.transform(m, "tree-tensors", strategy="perf_tree_trav")
    assert t.recipe["chosen"] == "perf_tree_trav"
    rows = x[:128]
    got = wb.backend("torch").compile(t, "cpu").run({"input": rows})
    for g, w in zip(got, run_onnx(m, rows), strict=True):
        np.testing.assert_allclose(g.reshape(w.shape), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which", ["lgb_regressor", "lgb_classifier", "gbm_classifier"])
def test_graphs_with_nodes_after_the_trees_compile_them_too(request, cancer, which) -> None:
    x, y = cancer
    if which == "lgb_classifier":
        lgb = pytest.importorskip("lightgbm")
        three = np.digitize(x[:, 0], np.quantile(x[:, 0], [1 / 3, 2 / 3]))
        estimator = lgb.LGBMClassifier(n_estimators=5, max_depth=3, verbose=-1).fit(x, three)
    elif which == "gbm_classifier":
        from sklearn.ensemble import GradientBoostingClassifier

        estimator = GradientBoostingClassifier(n_estimators=5, max_depth=2).fit(x, y)
    else:
        estimator = request.getfixturevalue(which)
    m = wb.load(estimator)
    assert len(m.proto.graph.node) > 1  # Identity, Cast, Mul after the tree node
    rows = x[:64].copy()
    rows[::4, 2] = np.nan
    t = wb.transform(m, "tree-tensors")
    assert [layer.name for layer in t.layers] == ["ensemble", "post-transform", "postprocess"]
    got = wb.backend("torch").compile(t, "cpu").run({"input": rows})
    want = run_onnx(m, rows)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g.reshape(w.shape), w, rtol=1e-5, atol=1e-6)


def test_graphs_it_cannot_compile_are_refused_in_one_line(cancer, forest) -> None:
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = cancer
    iso = wb.load(IsolationForest(n_estimators=3, random_state=0).fit(x))
    with pytest.raises(TransformError, match=r"one tree-ensemble node; .* has 3"):
        wb.transform(iso, "tree-tensors")
    scaled = make_pipeline(StandardScaler(), forest.__class__(3, max_depth=2, random_state=0))
    with pytest.raises(TransformError, match=r"preprocess nodes around the trees: .*Scaler"):
        wb.transform(wb.load(scaled.fit(x, y)), "tree-tensors")
