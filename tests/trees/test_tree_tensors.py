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


def test_graphs_beyond_one_tree_node_are_refused(lgb_regressor) -> None:
    with pytest.raises(TransformError, match="one tree-ensemble node"):
        wb.transform(wb.load(lgb_regressor), "tree-tensors")
