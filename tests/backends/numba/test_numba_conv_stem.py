"""A network's first convolution, on its NCHW image (a few channels): the direct loop,
im2col + BLAS in two block sizes (`cpu.conv_nchw_gemm`) and, with 16 output channels or
more on AVX-512, the direct loop with its sums in vector registers
(`depthwise.conv_nchw_vector`), chosen by timing like any dense convolution; every
candidate against ONNX Runtime within the ``op`` tolerances."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.backends.numba import packed_gemm, strategy
from workbench.model import Model
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(5)
CANDIDATES = ("direct", "im2col", "im2col:small", "vector")

#: (input [N, C, H, W], output channels, Conv attributes, fused activation)
STEMS = {
    "mobilenet 3x3": ((2, 3, 17, 16), 16, {"strides": [2, 2], "pads": [1] * 4}, "HardSwish"),
    "resnet 7x7 stride 2": ((1, 3, 23, 21), 8, {"strides": [2, 2], "pads": [3, 3, 3, 3]}, "Relu"),
    "one channel, uneven pads": ((3, 1, 9, 8), 4, {"pads": [1, 0, 2, 1]}, ""),
    "dilated, stride 3": ((2, 2, 15, 14), 5, {"strides": [3, 2], "dilations": [2, 1]}, "Sigmoid"),
    "24 channels, stride 1": ((1, 3, 10, 13), 24, {"pads": [1] * 4}, "Relu"),
    # 2 x 24 output rows x 48 x 147 x 32 multiply-adds: split over the threads
    "split over threads": ((2, 3, 48, 48), 32, {"strides": [2, 2], "pads": [3, 3, 3, 3]}, "Relu"),
}  # fmt: skip


def _stem(x_shape: tuple[int, ...], m: int, attrs: dict[str, Any], act: str) -> Model:
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    k = 7 if attrs.get("pads", [0])[0] == 3 else 3
    weight = RNG.standard_normal((m, x_shape[1], k, k)).astype(np.float32)
    bias = RNG.standard_normal(m).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="stem", **attrs)]
    if act:
        nodes.append(helper.make_node(act, ["y"], ["z"], name="act"))
    graph = helper.make_graph(
        nodes,
        "stem",
        [helper.make_tensor_value_info("x", 1, list(x_shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], 1, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="stem")


class FakeTimer:
    """Runs each candidate and reports ``fastest`` as the quickest."""

    def __init__(self, fastest: str) -> None:
        self.fastest = fastest
        self.calls: set[str] = set()

    def __call__(self, name: str, run: Callable[[], Any]) -> float:
        run()
        self.calls.add(name)
        return 1.0 if name == self.fastest else 2.0


@pytest.mark.parametrize("fastest", CANDIDATES)
@pytest.mark.parametrize("case", list(STEMS))
def test_each_stem_kernel_matches_onnxruntime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str, fastest: str
) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    timer = FakeTimer(fastest)
    monkeypatch.setattr(strategy, "TIMER", timer)
    x_shape, m, attrs, act = STEMS[case]
    offered = set(CANDIDATES) - ({"vector"} if m < 16 or not packed_gemm.AVAILABLE else set())
    if fastest not in offered:
        pytest.skip(f"{fastest} is not offered for {m} channels here")
    model = _stem(x_shape, m, attrs, act)
    inputs = {"x": RNG.standard_normal(x_shape).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu", conv_strategy="measure")
    for _ in range(2):  # the second run reuses the bound kernel and its workspaces
        (got,) = session.run(inputs)
        assert got.shape == expected.shape
        assert_close(got, expected, scope="op")
    (row,) = session.conv_strategies
    assert (row["strategy"], row["rules"]) == (fastest, "im2col")
    assert timer.calls == offered
    conv = next(n for n in session.graph.nodes if n.op_type == "Conv")
    assert conv.activation == act and not conv.inputs[0].endswith("nhwc")


def test_the_rules_run_im2col_and_tiled_gemm_keeps_the_direct_loop(tmp_path: Path) -> None:
    x_shape, m, attrs, act = STEMS["resnet 7x7 stride 2"]
    model = _stem(x_shape, m, attrs, act)
    inputs = {"x": RNG.standard_normal(x_shape).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    for options, chosen in (({"conv_strategy": "rules"}, "im2col"), ({"gemm": "tiled"}, "direct")):
        session = wb.backend("numba").compile(model, "cpu", **options)
        (got,) = session.run(inputs)
        assert_close(got, expected, scope="op")
        assert session.conv_strategies[0]["strategy"] == chosen


def test_a_changed_set_of_candidates_is_measured_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cache key holds the candidates' names: a kernel added later is timed, not
    passed over for a decision made without it."""
    from workbench.backends.numba import cpu_ops

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(strategy, "TIMER", FakeTimer("im2col"))
    x_shape, m, attrs, act = STEMS["resnet 7x7 stride 2"]
    model = _stem(x_shape, m, attrs, act)
    inputs = {"x": RNG.standard_normal(x_shape).astype(np.float32)}
    sources = []
    for blocks in ({"im2col": 1 << 20}, {"im2col": 1 << 20}, cpu_ops.NCHW_BLOCK_BYTES):
        monkeypatch.setattr(cpu_ops, "NCHW_BLOCK_BYTES", blocks)
        session = wb.backend("numba").compile(model, "cpu", conv_strategy="measure")
        session.run(inputs)
        sources.append(session.conv_strategies[0]["source"])
    assert sources == ["measured", "cache", "measured"]
