"""Trees compiled to torch tensor ops (Hummingbird's GEMM and tree traversal) against ORT."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.errors import TransformError
from workbench.loaders.trees import run_onnx


@pytest.mark.parametrize("strategy", ["gemm", "tree_trav"])
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


def test_auto_picks_gemm_for_shallow_trees_only(cancer) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = cancer
    shallow = wb.load(RandomForestClassifier(5, max_depth=3, random_state=0).fit(x, y))
    deep = wb.load(RandomForestClassifier(5, max_depth=6, random_state=0).fit(x, y))
    assert wb.transform(shallow, "tree-tensors").recipe["chosen"] == "gemm"
    assert wb.transform(deep, "tree-tensors").recipe["chosen"] == "tree_trav"


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
