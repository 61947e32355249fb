"""Numeric tolerances live outside testing/ (backends use them); testing re-exports them."""

from __future__ import annotations

import numpy as np
import pytest

import workbench.testing.tolerances as testing_tolerances
from workbench.tolerances import Tolerance, allclose, tolerance


def test_tolerance_loosens_with_scope_and_is_exact_for_integers() -> None:
    assert tolerance("float32", "op") == Tolerance(rtol=1e-4, atol=1e-5)
    assert tolerance(np.float32, "model").rtol > tolerance(np.float32, "op").rtol
    assert tolerance("int64") == Tolerance(rtol=0.0, atol=0.0)


def test_allclose_checks_shape_and_values() -> None:
    x = np.ones((2, 3), np.float32)
    assert allclose(x + 1e-6, x)
    assert not allclose(x + 1e-2, x)
    assert not allclose(x.reshape(3, 2), x)


def test_testing_module_reexports_the_same_tolerances_and_asserts() -> None:
    assert testing_tolerances.tolerance is tolerance
    assert testing_tolerances.allclose is allclose
    x = np.ones(4, np.float32)
    testing_tolerances.assert_close(x, x.copy())
    with pytest.raises(AssertionError, match="dtype"):
        testing_tolerances.assert_close(x, x.astype(np.float64))
