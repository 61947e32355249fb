"""Tabular metrics for tree and click models: ROC-AUC, log loss (of probabilities, or of a
binary model's logit), F1 and RMSE as `Metric` objects.

Name one in ``wb.evaluate`` or ``wb.sweep`` (``metric="roc_auc"``) or pass the object;
the evaluation picks the model output the metric fits (a converted classifier's
``probabilities`` before its ``label``). Plain NumPy/SciPy: no scikit-learn needed at run time.

Example:
    >>> wb.evaluate(wb.samples.load("trees-gbm"), wb.samples.dataset("trees-gbm"), metric="roc_auc")
"""

from __future__ import annotations

import numpy as np

from workbench.evaluation.metric_type import Metric

__all__ = ["f1", "log_loss", "log_loss_logit", "rmse", "roc_auc"]

#: probabilities are clipped to [EPS, 1] before the logarithm (as scikit-learn does)
EPS = 1e-15


def _positive_scores(outputs: np.ndarray) -> np.ndarray:
    scores = np.asarray(outputs, dtype=np.float64)
    return scores[:, 1] if scores.ndim == 2 and scores.shape[1] == 2 else scores.ravel()


def _binary_scores_misfit(outputs: np.ndarray) -> str:
    if outputs.dtype.kind != "f":
        return f"it scores float outputs, not {outputs.dtype}"
    if outputs.ndim == 2 and outputs.shape[1] not in (1, 2):
        return f"it scores a binary model (1 or 2 columns), not {outputs.shape[1]} columns"
    return ""


def _probabilities_misfit(outputs: np.ndarray) -> str:
    one_column = outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1)
    if outputs.dtype.kind == "f" and one_column:
        # one score per row: a click model's logit, which only the logit metric may read
        return "it scores (rows, classes) probabilities; for one logit per row use 'log_loss_logit'"
    if outputs.dtype.kind != "f" or outputs.ndim != 2:
        return f"it scores float (rows, classes) probabilities, not {outputs.dtype} {outputs.shape}"
    if not np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        return "its rows do not sum to 1 (not probabilities)"
    return ""


def _logit_misfit(outputs: np.ndarray) -> str:
    if outputs.dtype.kind != "f" or not (
        outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1)
    ):
        return f"it scores one float logit per row, not {outputs.dtype} {list(outputs.shape)}"
    return ""


def _roc_auc(outputs: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import rankdata

    scores = _positive_scores(outputs)
    positive = np.asarray(labels).ravel() == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")  # undefined with one class
    ranks = rankdata(scores)  # ties get their average rank (Mann-Whitney U)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _log_loss(outputs: np.ndarray, labels: np.ndarray) -> float:
    proba = np.asarray(outputs, dtype=np.float64)
    picked = proba[np.arange(len(proba)), np.asarray(labels).astype(np.int64).ravel()]
    return float(-np.mean(np.log(np.clip(picked, EPS, 1.0))))


def _log_loss_logit(outputs: np.ndarray, labels: np.ndarray) -> float:
    logits = np.asarray(outputs, dtype=np.float64).ravel()
    positive = np.asarray(labels).ravel() == 1
    # -log(sigmoid(z)) = log(1 + exp(-z)), computed without overflow for large |z|
    return float(np.mean(np.logaddexp(0.0, np.where(positive, -logits, logits))))


def _f1(outputs: np.ndarray, labels: np.ndarray) -> float:
    predicted = np.asarray(outputs).ravel() == 1
    actual = np.asarray(labels).ravel() == 1
    true_positives = int((predicted & actual).sum())
    flagged = int(predicted.sum()) + int(actual.sum())
    return 2.0 * true_positives / flagged if flagged else float("nan")


def _binary_labels_misfit(outputs: np.ndarray) -> str:
    if outputs.dtype.kind not in "iub" or (outputs.ndim == 2 and outputs.shape[1] != 1):
        return f"it scores predicted 0/1 labels (N,), not {outputs.dtype} {list(outputs.shape)}"
    if outputs.ndim > 2 or not np.isin(outputs, (0, 1)).all():
        # scikit-learn's outlier detectors predict -1 for an outlier: 1 would mean "normal"
        return "its predicted labels are not all 0 or 1 (1 marks the positive class)"
    return ""


def _rmse(outputs: np.ndarray, labels: np.ndarray) -> float:
    error = np.asarray(outputs, np.float64).reshape(len(labels), -1) - np.asarray(
        labels, np.float64
    ).reshape(len(labels), -1)
    return float(np.sqrt(np.mean(error**2)))


#: area under the ROC curve of a binary classifier's positive-class score (higher is better)
roc_auc = Metric("roc_auc", _roc_auc, True, 100.0, _binary_scores_misfit)
#: mean negative log-likelihood of the true class (lower is better)
log_loss = Metric("log_loss", _log_loss, False, 1.0, _probabilities_misfit)
#: log loss of a binary model whose output is a logit (the sigmoid applied here; lower is better)
log_loss_logit = Metric("log_loss_logit", _log_loss_logit, False, 1.0, _logit_misfit)
#: F1 of predicted 0/1 labels for the positive class 1 (an anomaly, a click); higher is better
f1 = Metric("f1", _f1, True, 100.0, _binary_labels_misfit)
#: root mean squared error of a regressor (lower is better)
rmse = Metric("rmse", _rmse, False, 1.0, None)
