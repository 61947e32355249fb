"""Our tree-traversal kernel (numba, numba-cuda in the simulator) against ONNX Runtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.loaders.trees import run_onnx


def _models(cancer: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    x, y = cancer
    xi, yi = load_iris(return_X_y=True)
    models = {
        "forest-binary": (RandomForestClassifier(20, max_depth=4, random_state=0).fit(x, y), x),
        "gbm-binary": (GradientBoostingClassifier(n_estimators=20, max_depth=3).fit(x, y), x),
        "forest-multiclass": (RandomForestClassifier(10, max_depth=4).fit(xi, yi), xi),
        "gbm-multiclass": (GradientBoostingClassifier(n_estimators=10).fit(xi, yi), xi),
        "gbm-regressor": (GradientBoostingRegressor(n_estimators=10).fit(x, y.astype(float)), x),
        "forest-2-targets": (RandomForestRegressor(10, max_depth=4).fit(x, np.c_[y, x[:, 0]]), x),
        "isolation-forest": (IsolationForest(n_estimators=20, random_state=0).fit(x), x),
    }
    for name, lib in (("xgboost", "xgboost"), ("lightgbm", "lightgbm")):
        try:
            module = __import__(lib)
        except ImportError:
            continue
        if name == "xgboost":
            models["xgb-binary"] = (module.XGBClassifier(n_estimators=20, max_depth=4).fit(x, y), x)
            models["xgb-multiclass"] = (module.XGBClassifier(n_estimators=5).fit(xi, yi), xi)
        else:
            kw = {"n_estimators": 20, "max_depth": 4, "verbose": -1}
            models["lgb-binary"] = (module.LGBMClassifier(**kw).fit(x, y), x)
            models["lgb-regressor"] = (module.LGBMRegressor(**kw).fit(x, y.astype(float)), x)
    return models


@pytest.fixture(scope="module")
def trained(cancer) -> dict[str, Any]:
    return _models(cancer)


@pytest.fixture(scope="module")
def tree_models(trained) -> dict[str, Any]:
    return {name: wb.load(est) for name, (est, _) in trained.items()}


@pytest.fixture(scope="module")
def tree_data(trained) -> dict[str, np.ndarray]:
    return {name: data for name, (_, data) in trained.items()}


CASES = [
    "forest-binary",
    "gbm-binary",
    "forest-multiclass",
    "gbm-multiclass",
    "forest-2-targets",
    "xgb-binary",
    "xgb-multiclass",
    "lgb-binary",
    "lgb-regressor",
]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("rows", [1, 200], ids=["batch1", "batch200"])
def test_numba_kernel_equals_onnxruntime(tree_models, tree_data, name: str, rows: int) -> None:
    if name not in tree_models:
        pytest.skip(f"{name}: its library is not installed")
    model = tree_models[name]
    x = tree_data[name][:rows].astype(np.float32)
    x[::3, 0] = np.nan  # missing values follow ORT's rule (track-true, else the false branch)
    got = wb.backend("numba").compile(model, "cpu").run({"input": x})
    want = run_onnx(model, x)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        if np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_numba_runs_the_isolation_forest_graph_like_onnxruntime(tree_models, tree_data) -> None:
    """200-odd nodes a forest: a Gather, a tree and two LabelEncoders (leaf -> sample count,
    leaf -> path length) a tree, then the anomaly score's arithmetic."""
    model = tree_models["isolation-forest"]
    assert wb.backend("numba").supports(model).ok
    assert "LabelEncoder" in {n.op_type for n in model.proto.graph.node}
    x = tree_data["isolation-forest"][:64].astype(np.float32)
    got = wb.backend("numba").compile(model, "cpu").run({"input": x})
    for g, w in zip(got, run_onnx(model, x), strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert not wb.backend("numba-cuda").supports(model).ok  # no CUDA LabelEncoder


def test_opset5_tree_ensemble_runs_like_the_legacy_op(tree_models, tree_data) -> None:
    """The ai.onnx.ml opset-5 ``TreeEnsemble`` op, built from a regressor's trees (whose
    base value moves into the leaves: the newer op has none)."""
    from workbench.loaders.trees import ensembles, to_opset5

    model = tree_models["gbm-regressor"]
    new = to_opset5(model)
    assert [n.op_type for n in new.proto.graph.node] == ["TreeEnsemble"]
    assert next(ensembles(new.proto)).n_nodes == next(ensembles(model.proto)).n_nodes
    x = tree_data["gbm-regressor"][:50]
    (got,) = wb.backend("numba").compile(new, "cpu").run({"input": x})
    np.testing.assert_allclose(got, run_onnx(model, x)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, run_onnx(new, x)[0], rtol=1e-5, atol=1e-6)


def test_cuda_kernel_in_the_simulator(tmp_path: Path, tree_models, tree_data) -> None:
    """A boosted classifier (base value, LOGISTIC, NaNs) on numba-cuda in the simulator,
    in a child process that imports no tree library."""
    pytest.importorskip("numba.cuda")
    model = tree_models["gbm-binary"]
    rows = tree_data["gbm-binary"][:16].copy()
    rows[::5, 7] = np.nan
    model.to_onnx(tmp_path / "model.onnx")
    label, proba = run_onnx(model, rows)
    np.savez(tmp_path / "io.npz", rows=rows, label=label, proba=proba)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    script = Path(__file__).with_name("sim_tree_cuda.py")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-2000:]
