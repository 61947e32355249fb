"""The shipped tree samples: their cards' held-out metrics hold when re-measured here."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.loaders.trees import run_onnx


@pytest.mark.parametrize("name", ["trees-gbm", "trees-forest"])
def test_classifier_samples_score_as_their_cards_say(name: str) -> None:
    from sklearn.metrics import accuracy_score, roc_auc_score

    m, data = wb.samples.load(name), wb.samples.dataset(name, split="test")
    card = wb.samples.info(name)
    label, proba = run_onnx(m, data.inputs)
    assert accuracy_score(data.labels, label) == pytest.approx(card["test_accuracy"], abs=1e-6)
    assert roc_auc_score(data.labels, proba[:, 1]) == pytest.approx(card["test_roc_auc"], abs=1e-6)
    assert card["test_accuracy"] > 0.9 and card["trees"] >= 100


def test_anomaly_sample_ranks_the_injected_anomalies_first() -> None:
    from sklearn.metrics import roc_auc_score

    m, data = wb.samples.load("trees-anomaly"), wb.samples.dataset("trees-anomaly")
    _, scores = run_onnx(m, data.inputs)
    auc = roc_auc_score(data.labels, -scores.ravel())  # a low score means anomalous
    assert auc == pytest.approx(wb.samples.info("trees-anomaly")["test_roc_auc"], abs=1e-6)
    assert auc > 0.95


def test_gbm_sample_runs_the_same_on_numba_native_and_onnxruntime() -> None:
    """The one smoke test on a big sample (300 trees): our kernel and XGBoost agree with ORT."""
    pytest.importorskip("xgboost")
    m = wb.samples.load("trees-gbm")
    x = wb.samples.dataset("trees-gbm").inputs[:300]
    want = run_onnx(m, x)
    for backend in ("numba", "native"):
        got = wb.backend(backend).compile(m, "cpu").run({"input": x})
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
