"""Pareto flags of a trade-off: computed once here, for `sweep`'s table and `viz.tradeoff`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_mask(
    latency: Sequence[float], metric: Sequence[float], *, higher_is_better: bool = True
) -> np.ndarray:
    """True for points no other point dominates (as fast or faster AND as good or better,
    strictly better in one).

    Identical points are all on the front; a point missing its latency or metric (NaN,
    e.g. a failed run) never is, and never dominates another.

    Args:
        latency: one latency per point (lower is better).
        metric: one metric value per point.
        higher_is_better: the metric's direction (accuracy: True; error: False).

    Returns:
        A boolean array, one flag per point.

    Example:
        >>> pareto_mask([1.0, 2.0, 3.0], [0.90, 0.95, 0.94])
        array([ True,  True, False])
    """
    lat = np.asarray(latency, dtype=float)
    score = np.asarray(metric, dtype=float) * (1.0 if higher_is_better else -1.0)
    valid = ~(np.isnan(lat) | np.isnan(score))
    mask = valid.copy()
    for i in np.flatnonzero(valid):
        better = (lat <= lat[i]) & (score >= score[i]) & ((lat < lat[i]) | (score > score[i]))
        mask[i] = not (valid & better).any()
    return mask
