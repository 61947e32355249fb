"""Channels-last MaxPool with its maxima in vector registers (`max_pool`): the kernel
against a NumPy float64 reference (a maximum is exact: equal, not close), and in a
session after a convolution against ONNX Runtime within the ``op`` tolerances, serial
and parallel, at the image's edges (pads, dilations, ceil_mode, odd sizes) and with
channel counts that 16 does not divide (the overlapping last block)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.backends.numba import cpu, max_pool, simd
from workbench.model import Model
from workbench.testing.tolerances import assert_close

pytestmark = pytest.mark.skipif(
    not simd.VECTORS, reason="the vector kernel needs AVX2 (and Numba for this CPU)"
)
RNG = np.random.default_rng(23)

#: (input [N, C, H, W], MaxPool attributes)
CASES = {
    "3x3 stride 2, 16 channels": ((1, 16, 11, 11), {"kernel_shape": [3, 3], "strides": [2, 2]}),
    "3x3 stride 2 pad 1, 24 channels": (
        (2, 24, 12, 9),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4},
    ),
    "ceil_mode, 40 channels": (
        (1, 40, 10, 13),
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    ),
    "dilated, uneven pads": (
        (1, 17, 9, 8),
        {"kernel_shape": [2, 3], "dilations": [2, 2], "pads": [1, 0, 0, 2]},
    ),
    "wider than the image": ((1, 32, 3, 2), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
}


def _reference(x: np.ndarray, attrs: dict[str, Any], out_hw: tuple[int, int]) -> np.ndarray:
    """MaxPool over NHWC in float64, each window clipped to the image."""
    kh, kw = attrs["kernel_shape"]
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    pt, pl = attrs.get("pads", [0] * 4)[:2]
    n, h, w, c = x.shape
    out = np.full((n, *out_hw, c), -np.inf)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            for ki in range(kh):
                for kj in range(kw):
                    y, xx = oy * sh - pt + ki * dh, ox * sw - pl + kj * dw
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, oy, ox] = np.maximum(out[:, oy, ox], x[:, y, xx])
    return out


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_kernel_equals_a_float64_reference(case: str, parallel: bool) -> None:
    shape, attrs = CASES[case]
    n, c, h, w = shape
    # all negative: a window's padding must never win
    x = -np.abs(RNG.standard_normal((n, h, w, c))).astype(np.float32) - 1
    # the output's size as ONNX Runtime makes it (ceil_mode, pads)
    (sized,) = ort_outputs(_pooled(shape, attrs), {"x": np.zeros((n, 5, h, w), np.float32)})
    out_hw = sized.shape[2:]
    kh, kw = attrs["kernel_shape"]
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    window = (kh, kw, sh, sw, *attrs.get("pads", [0] * 4), dh, dw, 1, 0)
    out = np.full((n, *out_hw, c), np.nan, np.float32)
    max_pool.max_pool2d_vector_nhwc[0 if parallel else 1](x, window, out)
    np.testing.assert_array_equal(out, _reference(x, attrs, out_hw).astype(np.float32))


def _pooled(x_shape: tuple[int, ...], attrs: dict[str, Any]) -> Model:
    """x [N, 5, H, W] -> Conv(5 -> C, 3x3, pad 1) -> Relu -> MaxPool: the convolution
    starts the NHWC chain the pooling continues."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    n, c, h, w = x_shape
    consts = {
        "w": RNG.standard_normal((c, 5, 3, 3)).astype(np.float32),
        "b": RNG.standard_normal(c).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1] * 4),
        helper.make_node("Relu", ["y"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["z"], name="pool", **attrs),
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("x", 1, [n, 5, h, w])],
        [helper.make_tensor_value_info("z", 1, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="pooled")


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("case", list(CASES))
def test_max_pool_after_a_convolution_matches_onnxruntime(
    monkeypatch: pytest.MonkeyPatch, case: str, parallel: bool
) -> None:
    if parallel:  # small shapes, the parallel kernel all the same
        monkeypatch.setattr(cpu, "PARALLEL_MIN_WORK", 1)
    picked: list[Any] = []
    pick: Callable[..., Any] = cpu.pick
    monkeypatch.setattr(cpu, "pick", lambda k, *a: picked.append(k) or pick(k, *a))
    shape, attrs = CASES[case]
    model = _pooled(shape, attrs)
    n, _c, h, w = shape
    inputs = {"x": RNG.standard_normal((n, 5, h, w)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu")
    (got,) = session.run(inputs)
    assert got.shape == expected.shape
    assert_close(got, expected, scope="op")
    assert max_pool.max_pool2d_vector_nhwc in picked


def test_fewer_channels_than_a_vector_keep_the_loop() -> None:
    """Below 16 channels (or in float64) the loop over the channels runs."""
    assert max_pool.fits(np.zeros((1, 4, 4, 16), np.float32))
    assert not max_pool.fits(np.zeros((1, 4, 4, 15), np.float32))
    assert not max_pool.fits(np.zeros((1, 4, 4, 16), np.float64))
