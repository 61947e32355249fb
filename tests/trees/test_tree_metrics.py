"""Tabular metrics against scikit-learn's, and through wb.evaluate on a tree model."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.evaluation.tabular import log_loss, log_loss_logit, rmse, roc_auc


def test_metrics_equal_scikit_learns() -> None:
    from sklearn import metrics

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    p1 = np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1).round(2)  # ties included
    proba = np.stack([1 - p1, p1], axis=1).astype(np.float32)
    assert roc_auc(proba, labels) == pytest.approx(metrics.roc_auc_score(labels, p1))
    assert log_loss(proba, labels) == pytest.approx(metrics.log_loss(labels, proba), rel=1e-6)
    values = rng.normal(size=300)
    assert rmse(values + 0.5, values) == pytest.approx(0.5)


def test_log_loss_of_logits_equals_scikit_learns_of_their_sigmoid_and_stays_finite() -> None:
    from sklearn import metrics

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    logits = (rng.normal(size=300) + 2 * labels - 1).astype(np.float32)[:, None]
    proba = 1 / (1 + np.exp(-logits.astype(np.float64).ravel()))
    expected = metrics.log_loss(labels, proba)
    assert log_loss_logit(logits, labels) == pytest.approx(expected, rel=1e-9)
    # a confident wrong logit costs its size, not inf (exp(1000) would overflow)
    assert log_loss_logit(np.array([-1000.0, 1000.0]), np.array([1, 1])) == pytest.approx(500.0)
    assert "log_loss_logit" in log_loss.misfit(logits)
    assert log_loss_logit.misfit(np.zeros((3, 2), np.float32))


def test_evaluate_scores_the_probabilities_of_a_tree_model(cancer, forest) -> None:
    from sklearn.metrics import roc_auc_score

    x, y = cancer
    data = wb.Dataset.from_arrays(x, y)
    result = wb.evaluate(wb.load(forest), data, metric=roc_auc, backend="numba")
    assert result.output == "probabilities"
    assert result.value == pytest.approx(roc_auc_score(y, forest.predict_proba(x)[:, 1]))


def test_tabular_metrics_are_built_in_by_name() -> None:
    from workbench.evaluation.metrics import get_metric

    assert get_metric("roc_auc") is roc_auc
    assert get_metric("log_loss") is log_loss
    assert get_metric("log_loss_logit") is log_loss_logit
    assert get_metric("rmse") is rmse
