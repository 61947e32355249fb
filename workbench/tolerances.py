"""Numerical tolerances for comparing backends with their references, kept in one place.

Two scopes: ``"op"`` for one operator against a reference implementation (one
rounding step of difference, plus the reordering of a reduction), and ``"model"``
for a whole network against another runtime, where reordered sums compound through
every layer. Integer results must match exactly.

They live here, below the backends, because backends use them at run time (the numba
registry checks a kernel against its reference); `workbench.testing.tolerances` adds
the test assertion for plugin authors.

Example:
    >>> from workbench.tolerances import allclose
    >>> allclose(ours, reference)                # dtype taken from the reference
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Scope = Literal["op", "model"]


@dataclass(frozen=True)
class Tolerance:
    """Relative and absolute tolerance, as `numpy.testing.assert_allclose` takes them."""

    rtol: float
    atol: float


# Why these values: float32 has a 6e-8 unit roundoff; a K-long dot product reordered
# (BLAS blocking, GPU tiling, fused multiply-add) drifts by about K ulps, so 1e-4
# relative covers K up to a few thousand. Whole models pass ~10 such layers plus
# transcendental approximations (erf, exp), hence the looser "model" scope.
_TOLERANCES: dict[tuple[str, Scope], Tolerance] = {
    ("float64", "op"): Tolerance(rtol=1e-7, atol=1e-9),
    ("float64", "model"): Tolerance(rtol=1e-6, atol=1e-8),
    ("float32", "op"): Tolerance(rtol=1e-4, atol=1e-5),
    ("float32", "model"): Tolerance(rtol=1e-3, atol=1e-4),
    ("float16", "op"): Tolerance(rtol=1e-2, atol=1e-3),
    ("float16", "model"): Tolerance(rtol=5e-2, atol=1e-2),
    ("bfloat16", "op"): Tolerance(rtol=2e-2, atol=1e-2),
    ("bfloat16", "model"): Tolerance(rtol=1e-1, atol=5e-2),
}
_EXACT = Tolerance(rtol=0.0, atol=0.0)


def tolerance(dtype: np.dtype | str | type, scope: Scope = "op") -> Tolerance:
    """The tolerance for results of ``dtype`` in ``scope``.

    Args:
        dtype: the dtype of the reference result.
        scope: ``"op"`` for one operator, ``"model"`` for a whole network.

    Returns:
        The `Tolerance`; exact (0, 0) for integer and boolean dtypes.
    """
    name = str(dtype) if str(dtype) == "bfloat16" else np.dtype(dtype).name
    if name in ("bfloat16",) or np.issubdtype(np.dtype(name), np.floating):
        return _TOLERANCES.get((name, scope), _TOLERANCES[("float32", scope)])
    return _EXACT


def allclose(actual: np.ndarray, expected: np.ndarray, scope: Scope = "op") -> bool:
    """Whether ``actual`` matches ``expected`` (shape and values) within tolerance."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return False
    tol = tolerance(expected.dtype, scope)
    return bool(np.allclose(actual, expected, rtol=tol.rtol, atol=tol.atol, equal_nan=True))
