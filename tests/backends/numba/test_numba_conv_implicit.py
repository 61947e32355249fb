"""The implicit-GEMM convolution on the packed weight (`packed_gemm.conv_packed`, the
``"packed"`` strategy of a dense NHWC Conv): the kernel against a float64 NumPy
convolution, and Conv nodes that run it against ONNX Runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.backends.numba import cpu, strategy
from workbench.backends.numba import packed_gemm as gemm
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(5)


def _reference(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, strides: int, pads: int, dilation: int
) -> np.ndarray:
    """``relu(conv(x, w) + bias)`` in float64, NHWC in and out, tap by tap."""
    n, h, wid, _ = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (pads, pads), (pads, pads), (0, 0)))
    oh = (h + 2 * pads - dilation * (kh - 1) - 1) // strides + 1
    ow = (wid + 2 * pads - dilation * (kw - 1) - 1) // strides + 1
    out = np.zeros((n, oh, ow, m)) + bias
    for ki in range(kh):
        for kj in range(kw):
            top, left = ki * dilation, kj * dilation
            patch = xp[:, top : top + strides * (oh - 1) + 1 : strides,
                       left : left + strides * (ow - 1) + 1 : strides]  # fmt: skip
            out += np.einsum("nhwc,mc->nhwm", patch, w[:, :, ki, kj].astype(np.float64))
    return np.maximum(out, 0)


#: (batch, size, C, M, kernel, stride, pad, dilation): a 3x3 over several blocks with a
#: row tail and a partial panel (M = 70), stride 2 on an odd map, a dilated 5x5 on few
#: channels (the unfold's scalar taps), and 1x1s read straight from the input (no pads)
#: or unfolded (stride 2)
GEOMETRIES = [
    (5, 9, 24, 70, 3, 1, 1, 1),
    (3, 11, 16, 32, 3, 2, 1, 1),
    (2, 12, 5, 20, 5, 1, 4, 2),
    (4, 6, 40, 48, 1, 1, 0, 1),
    (2, 7, 16, 33, 1, 2, 0, 1),
]


@pytest.mark.parametrize("tasks", [1, 3], ids=["serial", "three-shares"])
@pytest.mark.parametrize(
    "geometry", GEOMETRIES, ids=["3x3", "3x3-stride2", "5x5-dilated", "1x1", "1x1-stride2"]
)
def test_implicit_convolution_matches_float64(geometry: tuple[int, ...], tasks: int) -> None:
    """``relu(conv + bias)`` into a view of a wider array: every output pixel and channel
    written (float32 `op` tolerances against float64), nothing past the view touched,
    whatever the tasks' shares (short micro-tiles at their ends)."""
    n, size, c, m, k, stride, pad, dilation = geometry
    x = RNG.standard_normal((n, size, size, c)).astype(np.float32)
    w = RNG.standard_normal((m, c, k, k)).astype(np.float32)
    bias = RNG.standard_normal(m).astype(np.float32)
    expected = _reference(x, w, bias, stride, pad, dilation)
    _, oh, ow, _ = expected.shape
    packed = gemm.pack(w.transpose(2, 3, 1, 0).reshape(-1, m), bias)
    geo = (k, k, stride, stride, pad, pad, dilation, dilation, oh, ow)
    plan = gemm.implicit_plan(x.shape, geo)
    assert (plan.padded is None) == (pad == 0)  # the 1x1s read the input itself
    src = x
    if plan.padded is not None:
        src = np.zeros(plan.padded, np.float32)
        cpu.pad_interior[1](x, plan.top, plan.left, src)
    tiles = np.empty((tasks, gemm.MR * gemm.NR), np.float32)
    wide = np.full((n * oh * ow, m + 5), 7.0, np.float32)
    run = gemm.conv_packed[0 if tasks > 1 else 1]
    act = cpu.ACTIVATIONS["Relu"]
    run(src, geo, plan.segments, plan.length, packed.panels, packed.bias, act, tiles,
        wide[:, 2 : 2 + m])  # fmt: skip
    got = wide[:, 2 : 2 + m].reshape(n, oh, ow, m)
    assert_close(got, expected.astype(np.float32), what="implicit convolution")
    assert (wide[:, :2] == 7).all() and (wide[:, 2 + m :] == 7).all()


def _conv_chain() -> wb.Model:
    """An image's first Conv (NCHW input), then a 3x3 stride-2 Conv + Relu, a 1x1 Conv
    and a 2x2 Conv padded only at the end (as exporters write "same") on NHWC
    activations: the last three are dense NHWC convolutions with a ``"packed"``
    candidate (at least one vector of output channels)."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    shapes = {"w0": (16, 3, 3, 3), "w1": (40, 16, 3, 3), "w2": (32, 40, 1, 1), "w3": (16, 32, 2, 2)}
    rng = np.random.default_rng(3)
    # weights of unit gain (1 / sqrt(fan-in)): the sums stay near 1, so float32's
    # rounding stays within the model tolerance of ORT's (summed in another order)
    consts = {
        name: (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        for name, shape in shapes.items()
    }
    consts |= {
        f"b{i}": rng.standard_normal(shapes[f"w{i}"][0]).astype(np.float32) for i in range(4)
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["y0"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["y1"], name="conv3x3", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["y1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y2"], name="conv1x1"),
        helper.make_node("Conv", ["y2", "w3", "b3"], ["y"], name="conv2x2", pads=[0, 0, 1, 1]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "implicit",
        [helper.make_tensor_value_info("x", 1, ["N", 3, 13, 13])],
        [helper.make_tensor_value_info("y", 1, None)],
        [numpy_helper.from_array(value, name) for name, value in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="implicit")


def _prefer(name: str) -> Callable[[str, Callable[[], Any]], float]:
    def timer(candidate: str, run: Callable[[], Any]) -> float:
        run()
        return 1.0 if candidate == name else 2.0

    return timer


def test_convolutions_measured_fastest_run_packed_and_match_ort(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where the timer finds ``"packed"`` fastest, the dense NHWC convolutions run it
    (weight packed once, kept in the node's cache) and the model's outputs equal ORT's
    (float32 `model` tolerances) on two batches in the same buffers."""
    monkeypatch.setattr(gemm, "AVAILABLE", True)  # the kernel is exact on any CPU
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(strategy, "TIMER", _prefer("packed"))
    model = _conv_chain()
    session = wb.backend("numba").compile(model, "cpu", conv_strategy="measure")
    for seed in (1, 2):
        feeds = {
            "x": np.random.default_rng(seed).standard_normal((3, 3, 13, 13)).astype(np.float32)
        }
        (got,) = session.run(feeds)
        (expected,) = ort_outputs(model, feeds)
        assert_close(got, expected, scope="model", what="conv chain")
    chosen = {row["layer"]: row["strategy"] for row in session.conv_strategies}
    assert chosen["conv3x3"] == chosen["conv1x1"] == chosen["conv2x2"] == "packed"
    for node in session.graph.nodes:
        if node.name in ("conv3x3", "conv1x1", "conv2x2"):
            assert isinstance(node.cache.get("packed"), gemm.PackedWeight)


def test_the_tiled_gemm_gets_no_packed_candidate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``gemm="tiled"`` keeps the portable kernels: no convolution is offered ``"packed"``."""
    monkeypatch.setattr(gemm, "AVAILABLE", True)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    seen: list[str] = []

    def timer(candidate: str, run: Callable[[], Any]) -> float:
        seen.append(candidate)
        run()
        return 1.0

    monkeypatch.setattr(strategy, "TIMER", timer)
    session = wb.backend("numba").compile(_conv_chain(), "cpu", gemm="tiled")
    session.run({"x": RNG.standard_normal((2, 3, 13, 13)).astype(np.float32)})
    assert seen and "packed" not in seen
