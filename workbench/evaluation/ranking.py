"""Retrieval metrics: recall@k of a model that scores every item for each query.

Outputs are scores ``(N, items)`` (higher ranks first); labels are the relevant items'
ids per query, ``(N, relevant)`` int, padded with -1 where a query has fewer. Name one
in ``wb.evaluate`` or ``wb.sweep`` as ``"recall@10"``.

Example:
    >>> m, data = wb.samples.load("two-tower"), wb.samples.dataset("two-tower")
    >>> wb.evaluate(m, data, metric="recall@10")
"""

from __future__ import annotations

import numpy as np

from workbench.evaluation.metric_type import Metric

__all__ = ["recall_at_k"]


def recall_at_k(k: int) -> Metric:
    """Mean over queries of the fraction of its relevant items ranked in the top ``k``.

    A query without relevant items (all -1) is left out of the mean.

    Args:
        k: how many top-scoring items count as retrieved (positive).

    Returns:
        A `Metric` named ``recall@k`` (higher is better; 100 points per unit).

    Example:
        >>> recall_at_k(2)(np.array([[0.9, 0.1, 0.5]]), np.array([[2, -1]]))
        1.0
    """

    def score(outputs: np.ndarray, labels: np.ndarray) -> float:
        scores = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
        relevant = np.asarray(labels).reshape(len(scores), -1).astype(np.int64)
        top = np.argpartition(-scores, min(k, scores.shape[1]) - 1, axis=1)[:, :k]
        valid = relevant >= 0
        hits = ((relevant[:, :, None] == top[:, None, :]).any(-1) & valid).sum(1)
        counted = valid.sum(1) > 0
        if not counted.any():
            return float("nan")  # no query has a relevant item: recall is undefined
        return float((hits[counted] / valid.sum(1)[counted]).mean())

    def misfit(outputs: np.ndarray) -> str:
        if outputs.dtype.kind != "f" or outputs.ndim != 2:
            return f"it ranks float scores (queries, items), not {outputs.dtype} {outputs.shape}"
        if outputs.shape[1] < k:
            return f"it needs at least {k} items per query, not {outputs.shape[1]}"
        return ""

    return Metric(f"recall@{k}", score, True, 100.0, misfit)
