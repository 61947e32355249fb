"""Small tree models for the tree tests (20 trees of depth 4: fast to convert and run)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")


@pytest.fixture(scope="session")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled breast-cancer table (569 rows, 30 features), float32."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="session")
def forest(cancer: tuple[np.ndarray, np.ndarray]) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    x, y = cancer
    return RandomForestClassifier(20, max_depth=4, random_state=0).fit(x, y)


@pytest.fixture(scope="session")
def xgb_classifier(cancer: tuple[np.ndarray, np.ndarray]) -> Any:
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("onnxmltools")
    x, y = cancer
    return xgb.XGBClassifier(n_estimators=20, max_depth=4, random_state=0).fit(x, y)


@pytest.fixture(scope="session")
def lgb_regressor(cancer: tuple[np.ndarray, np.ndarray]) -> Any:
    lgb = pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    x, y = cancer
    return lgb.LGBMRegressor(n_estimators=20, max_depth=4, verbose=-1).fit(x, y.astype(float))
