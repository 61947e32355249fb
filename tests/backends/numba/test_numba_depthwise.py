"""Depthwise convolutions at stride 1 along whole rows (`depthwise.depthwise_rows_nhwc`)
against ONNX Runtime within the ``op`` tolerances, serial and parallel, at the edges of
the image (pads, dilations, an image narrower than the filter)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.backends.numba import cpu, depthwise
from workbench.model import Model
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(17)

#: (input [N, C, H, W], Conv attributes, fused activation)
CASES = {
    "3x3, 16 channels": ((2, 16, 9, 8), {"kernel_shape": [3, 3], "pads": [1] * 4}, "HardSwish"),
    "5x5, 24 channels, stride 2 rows": (
        (1, 24, 11, 7),
        {"kernel_shape": [5, 5], "strides": [2, 1], "pads": [2] * 4},
        "Relu",
    ),
    "dilated, uneven pads": (
        (2, 8, 7, 9),
        {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [0, 2, 1, 0]},
        "",
    ),
    "narrower than the filter": (
        (1, 8, 6, 4),
        {"kernel_shape": [5, 5], "pads": [2, 1, 2, 1]},
        "Sigmoid",
    ),
}


def _depthwise(x_shape: tuple[int, ...], attrs: dict[str, Any], act: str) -> Model:
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
def test_stride_one_depthwise_runs_along_rows(
    monkeypatch: pytest.MonkeyPatch, case: str, parallel: bool
) -> None:
    if parallel:  # small shapes, the parallel kernel all the same
        monkeypatch.setattr(cpu, "PARALLEL_MIN_WORK", 0)
    x_shape, attrs, act = CASES[case]
    model = _depthwise(x_shape, attrs, act)
    inputs = {"x": RNG.standard_normal(x_shape).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu")
    for _ in range(2):
        (got,) = session.run(inputs)
        assert got.shape == expected.shape
        assert_close(got, expected, scope="op")
    conv = next(n for n in session.graph.nodes if n.op_type == "Conv")
    assert "depthwise_rows_w" in conv.cache and conv.activation == act


def test_many_channels_keep_the_channel_loop() -> None:
    c = depthwise.ROWS_MAX_CHANNELS
    model = _depthwise((1, c, 5, 5), {"kernel_shape": [3, 3], "pads": [1] * 4}, "")
    inputs = {"x": RNG.standard_normal((1, c, 5, 5)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu")
    (got,) = session.run(inputs)
    assert_close(got, expected, scope="op")
    conv = next(n for n in session.graph.nodes if n.op_type == "Conv")
    assert "depthwise_rows_w" not in conv.cache and "depthwise_w" in conv.cache
