"""Dense convolutions on a small map (few GEMM rows, as at batch 1 on a 7x7 map) run their
product by the packed GEMM where it beats BLAS, else split into column panels, one per
thread (`cpu_ops._conv_product`); against ONNX Runtime within the ``op`` tolerances."""

from __future__ import annotations

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.backends.numba import cpu_ops, packed_gemm
from workbench.model import Model
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(23)


def _conv(c: int, m: int, kernel: int, stride: int) -> Model:
    """x [1, c, 7, 7] -> 1x1 Conv (so the next reads NHWC) -> Conv -> Relu."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    consts = {
        "w0": RNG.standard_normal((c, c, 1, 1)).astype(np.float32) * 0.2,
        "w": RNG.standard_normal((m, c, kernel, kernel)).astype(np.float32) * 0.1,
        "b": RNG.standard_normal(m).astype(np.float32),
    }
    attrs = {"pads": [kernel // 2] * 4, "strides": [stride] * 2}
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["x0"], name="first"),
        helper.make_node("Conv", ["x0", "w", "b"], ["y0"], name="conv", **attrs),
        helper.make_node("Relu", ["y0"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "split",
        [helper.make_tensor_value_info("x", 1, [1, c, 7, 7])],
        [helper.make_tensor_value_info("y", 1, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="split")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("c", "m", "kernel", "stride"),
    [(96, 300, 1, 1), (300, 96, 1, 1), (48, 260, 3, 2)],
    ids=["1x1, depth 96", "1x1, depth 300", "3x3 stride 2 (im2col)"],
)
def test_few_rows_split_into_column_panels(
    c: int, m: int, kernel: int, stride: int, threads: int
) -> None:
    model = _conv(c, m, kernel, stride)
    inputs = {"x": RNG.standard_normal((1, c, 7, 7)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu", threads=threads, conv_strategy="rules")
    for _ in range(2):
        (got,) = session.run(inputs)
        assert_close(got, expected, scope="op")
    conv = next(n for n in session.graph.nodes if n.name == "conv")
    rows, depth = (7 // stride + (stride > 1)) ** 2, kernel * kernel * c
    packed = packed_gemm.worthwhile(rows, depth, m, np.dtype(np.float32))
    assert ("packed" in conv.cache) == packed
    # unpacked (no AVX-512), the 96 columns of "depth 300" are too few to cut in two
    panels = threads == 2 and not packed and m >= 2 * cpu_ops.SPLIT_MIN_COLUMNS
    assert (("panels", 2) in conv.cache) == panels


@pytest.mark.parametrize(
    ("c", "m", "group", "hw", "dense"),
    [
        (24, 112, 4, (6, 5), True),
        (64, 32, 4, (6, 5), False),
        (32, 48, 2, (6, 5), False),
        (64, 64, 4, (24, 24), False),
    ],
    ids=[
        "6 per group: one dense GEMM",
        "16 per group: one GEMM each",
        "two groups of 16",
        "1152 pixels: shared over the threads, in blocks",
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_pointwise_convolutions(
    c: int, m: int, group: int, hw: tuple[int, int], dense: bool, threads: int
) -> None:
    """ShuffleNet's grouped 1x1 convolutions: one GEMM with a block-diagonal weight when
    the groups are narrow (`cpu_ops.GROUPED_DENSE_MAX_CHANNELS`), else one per group on
    blocks of pixels (`cpu.gemm_groups`), the last block of a share a short one."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    consts = {
        "w0": RNG.standard_normal((c, c, 1, 1)).astype(np.float32) * 0.2,
        "w": RNG.standard_normal((m, c // group, 1, 1)).astype(np.float32),
        "b": RNG.standard_normal(m).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["x0"], name="first"),
        helper.make_node("Conv", ["x0", "w", "b"], ["y0"], name="conv", group=group),
        helper.make_node("Relu", ["y0"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "grouped",
        [helper.make_tensor_value_info("x", 1, [2, c, *hw])],
        [helper.make_tensor_value_info("y", 1, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    model = model_from_proto(proto, name="grouped")
    inputs = {"x": RNG.standard_normal((2, c, *hw)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu", threads=threads)
    for _ in range(2):
        (got,) = session.run(inputs)
        assert_close(got, expected, scope="op")
    conv = next(n for n in session.graph.nodes if n.name == "conv")
    assert ("block_diagonal_w" in conv.cache) == dense
    assert ("group_taps" in conv.cache) == (not dense)
