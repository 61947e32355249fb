"""Numerical tolerances for tests and plugin authors: `workbench.tolerances` plus `assert_close`.

Example:
    >>> from workbench.testing.tolerances import assert_close
    >>> assert_close(ours, reference)            # dtype taken from the reference
"""

from __future__ import annotations

import numpy as np

from workbench.tolerances import Scope, Tolerance, allclose, tolerance

__all__ = ["Scope", "Tolerance", "allclose", "assert_close", "tolerance"]


def assert_close(
    actual: np.ndarray, expected: np.ndarray, scope: Scope = "op", what: str = ""
) -> None:
    """Assert shape, dtype and values of ``actual`` match ``expected`` within tolerance.

    Args:
        actual: the result under test.
        expected: the reference result; its dtype picks the tolerance.
        scope: ``"op"`` or ``"model"``.
        what: a label for the failure message.

    Raises:
        AssertionError: on a shape, dtype or value mismatch.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    tol = tolerance(expected.dtype, scope)
    np.testing.assert_allclose(actual, expected, rtol=tol.rtol, atol=tol.atol, err_msg=what)
