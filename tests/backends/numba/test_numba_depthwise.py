"""Depthwise convolutions on NHWC data against ONNX Runtime within the ``op`` tolerances,
serial and parallel, at the edges of the image (pads, dilations, odd widths, an image
narrower than the filter), and at two image sizes in one session; each case names the
kernel that runs it (`depthwise.bind`): ``vector`` (float32, 16 channels or more, an
output 8 or more wide, AVX-512), ``rows`` (stride 1) and ``rows_s2`` (stride 2) along
whole rows, or ``channels`` (the loop over the channels)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.backends.numba import cpu, depthwise, simd
from workbench.model import Model
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(17)
KERNELS = {
    "vector": depthwise.depthwise_vector_nhwc,
    "rows": depthwise.depthwise_rows_nhwc,
    "rows_s2": depthwise.depthwise_rows_s2_nhwc,
    "channels": depthwise.depthwise_nhwc,
}

#: (input [N, C, H, W], Conv attributes, fused activation, the kernel that runs it)
CASES = {
    "3x3, 16 channels": (
        (2, 16, 9, 8),
        {"kernel_shape": [3, 3], "pads": [1] * 4},
        "HardSwish",
        "vector",
    ),
    "5x5, 32 channels, stride 2": (
        (1, 32, 13, 15),
        {"kernel_shape": [5, 5], "strides": [2, 2], "pads": [2] * 4},
        "Relu",
        "vector",
    ),
    "3x3, 48 channels, dilated, uneven pads": (
        (1, 48, 9, 11),
        {"kernel_shape": [3, 3], "dilations": [1, 2], "pads": [1, 2, 0, 1]},
        "Sigmoid",
        "vector",
    ),
    "3x3, 72 channels: the last block overlaps": (
        (1, 72, 6, 12),
        {"kernel_shape": [3, 3], "pads": [1] * 4},
        "Relu",
        "vector",
    ),
    "5x5, 32 channels on a 7x7 map": (
        (1, 32, 7, 7),
        {"kernel_shape": [5, 5], "pads": [2] * 4},
        "HardSwish",
        "rows",
    ),
    "5x5, 24 channels, stride 2 rows": (
        (1, 24, 11, 7),
        {"kernel_shape": [5, 5], "strides": [2, 1], "pads": [2] * 4},
        "Relu",
        "rows",
    ),
    "dilated, uneven pads": (
        (2, 8, 7, 9),
        {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [0, 2, 1, 0]},
        "",
        "rows",
    ),
    "stride 2, odd width": (
        (2, 24, 9, 11),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4},
        "HardSwish",
        "rows_s2",
    ),
    "5x5 stride 2, dilated, uneven pads": (
        (1, 8, 12, 13),
        {"kernel_shape": [5, 5], "strides": [1, 2], "dilations": [1, 2], "pads": [2, 3, 1, 0]},
        "Relu",
        "rows_s2",
    ),
    "narrower than the filter": (
        (1, 8, 6, 4),
        {"kernel_shape": [5, 5], "pads": [2, 1, 2, 1]},
        "Sigmoid",
        "rows",
    ),
    "many channels": ((1, 200, 5, 6), {"kernel_shape": [3, 3], "pads": [1] * 4}, "", "channels"),
    "many channels, stride 2": (
        (1, 72, 5, 6),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4},
        "",
        "channels",
    ),
}


def _picked(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The kernel pairs `cpu.pick` chooses from, recorded."""
    seen: list[Any] = []
    pick: Callable[..., Any] = cpu.pick

    def spy(kernels: Any, work: int, min_work: int = 0) -> Any:
        seen.append(kernels)
        return pick(kernels, work, min_work)

    monkeypatch.setattr(cpu, "pick", spy)
    return seen


def _depthwise(x_shape: tuple[Any, ...], attrs: dict[str, Any], act: str) -> Model:
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    c = x_shape[1]
    kh, kw = attrs["kernel_shape"]
    consts = {
        "w": RNG.standard_normal((c, 1, kh, kw)).astype(np.float32),
        "b": RNG.standard_normal(c).astype(np.float32),
    }
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="dw", group=c, **attrs)]
    if act:
        nodes.append(helper.make_node(act, ["y"], ["z"], name="act"))
    graph = helper.make_graph(
        nodes,
        "depthwise",
        [helper.make_tensor_value_info("x", 1, list(x_shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], 1, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="depthwise")


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("case", list(CASES))
def test_depthwise_matches_onnxruntime(
    monkeypatch: pytest.MonkeyPatch, case: str, parallel: bool
) -> None:
    if parallel:  # small shapes, the parallel kernels all the same
        monkeypatch.setattr(cpu, "PARALLEL_MIN_WORK", 1)
        monkeypatch.setattr(depthwise, "PARALLEL_MIN_WORK", 1)
    x_shape, attrs, act, kernel = CASES[case]
    if kernel == "vector" and not simd.VECTORS:
        pytest.skip("the vector kernel needs AVX2 (and Numba compiling for this CPU)")
    picked = _picked(monkeypatch)
    model = _depthwise(x_shape, {**attrs}, act)
    inputs = {"x": RNG.standard_normal(x_shape).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu")
    for _ in range(2):
        (got,) = session.run(inputs)
        assert got.shape == expected.shape
        assert_close(got, expected, scope="op")
    assert KERNELS[kernel] in picked
    conv = next(n for n in session.graph.nodes if n.op_type == "Conv")
    assert conv.activation == act


@pytest.mark.parametrize("stride", [1, 2])
def test_one_session_at_two_image_sizes(stride: int) -> None:
    """The tiled filters and the column planes depend on the image's width: each size
    gets its own."""
    attrs = {"kernel_shape": [3, 3], "strides": [stride] * 2, "pads": [1] * 4}
    model = _depthwise(("N", 16, "H", "W"), attrs, "Relu")  # type: ignore[arg-type]
    session = wb.backend("numba").compile(model, "cpu")
    for shape in ((1, 16, 7, 9), (2, 16, 10, 14), (1, 16, 7, 9)):
        inputs = {"x": RNG.standard_normal(shape).astype(np.float32)}
        (expected,) = ort_outputs(model, inputs)
        (got,) = session.run(inputs)
        assert_close(got, expected, scope="op")
