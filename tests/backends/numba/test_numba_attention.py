"""Attention's pieces on the Numba CPU path: Softmax over score rows (vectorised exp)
against ONNX Runtime, masks and non-finite rows included."""

from __future__ import annotations

import numpy as np
import pytest
from numba_helpers import ort_outputs, single_node_model

import workbench as wb
from workbench.backends.numba import softmax_rows
from workbench.testing.tolerances import assert_close


def _scores(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Scores as attention makes them: spread over tens, so exp spans many binades."""
    return (np.random.default_rng(seed).standard_normal(shape) * 12).astype(np.float32)


def test_exp_is_within_two_ulp_over_the_float32_range_it_takes() -> None:
    grid = np.linspace(-87.0, 0.0, 200_001).astype(np.float32)

    @__import__("numba").njit
    def each(xs: np.ndarray, out: np.ndarray) -> None:
        for i in range(xs.size):
            out[i] = softmax_rows.exp_nonpositive(xs[i])

    got = np.empty_like(grid)
    each(grid, got)
    exact = np.exp(grid.astype(np.float64))
    assert (np.abs(got - exact) / exact).max() < 2 * np.finfo(np.float32).eps


@pytest.mark.parametrize("parallel", [0, 1], ids=["parallel", "serial"])
def test_softmax_rows_match_float64(parallel: int) -> None:
    x = _scores((37, 50))
    out = np.empty_like(x)
    softmax_rows.softmax_rows[parallel](x, out)
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    assert_close(out, (e / e.sum(axis=1, keepdims=True)).astype(np.float32))


@pytest.mark.parametrize("axis", [-1, 1], ids=["last-axis", "middle-axis"])
def test_softmax_nodes_match_ort_with_masks_and_non_finite_rows(axis: int) -> None:
    """[batch, heads, rows, n] scores with a -inf mask, a row of -inf only, a NaN and a
    +inf: the same values as ORT, NaN in the same places."""
    x = _scores((2, 3, 7, 50))
    x[0, 0, :, 40:] = -np.inf  # a padding mask
    x[0, 1, 2, :] = -np.inf  # a fully masked row
    x[1, 0, 3, 5] = np.nan
    x[1, 2, 4, 9] = np.inf
    model = single_node_model("Softmax", {"x": x}, attrs={"axis": axis})
    session = wb.backend("numba").compile(model, "cpu")
    (got,) = session.run({"x": x})
    (expected,) = ort_outputs(model, {"x": x})
    assert_close(got, expected, what=f"Softmax axis {axis}")
    assert np.array_equal(np.isnan(got), np.isnan(expected))
