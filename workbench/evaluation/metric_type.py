"""`Metric`: a named metric with its direction and the outputs it can score.

Apart from `metrics` so that families of metrics (`tabular`) and the `evaluate` entry
point both build on it without importing each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Metric"]


@dataclass(frozen=True)
class Metric:
    """A named metric with its direction.

    Args:
        name: display name.
        fn: ``fn(outputs, labels) -> float``; ``outputs`` is the model's first output
            for the whole dataset (numpy), ``labels`` the labels.
        higher_is_better: True for scores (accuracy), False for errors (MSE).
        points: how many "points" one unit of the metric is, for budgets such as
            `suggest`'s ``max_drop`` (100 for fractions like accuracy: 1 point = 1%).
        misfit: ``misfit(output) -> reason``: why the metric cannot score this output
            (its shape or dtype), or ``""`` when it can; None accepts every output.

    Example:
        >>> rmse = Metric("rmse", lambda y, t: float(np.sqrt(((y - t) ** 2).mean())), False)
    """

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool = True
    points: float = 1.0
    misfit: Callable[[np.ndarray], str] | None = None

    def __call__(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        return float(self.fn(outputs, labels))

    def why_not(self, output: np.ndarray) -> str:
        """Why this metric cannot score ``output`` (one model output), or ``""``."""
        return self.misfit(output) if self.misfit is not None else ""
