"""Between channels-last convolutions, ShuffleNet's channel shuffle (Reshape -> Transpose
-> Reshape, `layout._channel_shuffles`) and SqueezeNet's opset-9 Dropout with an unread
mask run NHWC themselves instead of converting to NCHW and back; against ONNX Runtime
within the ``op`` tolerances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.backends.numba import cpu
from workbench.backends.numba.layout import LAYOUT_LAYER
from workbench.model import Model
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(29)
SHAPE = (2, 8, 5, 6)


def _shuffled(split: list[int], merge: list[int], extra_reader: bool = False) -> Model:
    """x -> 1x1 Conv -> Relu -> Reshape(split) -> Transpose(0, 2, 1, 3, 4) ->
    Reshape(merge) -> depthwise 3x3 Conv; with ``extra_reader`` the Transpose's output
    is also a graph output (so the shuffle must stay NCHW)."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    c = SHAPE[1]
    consts = {
        "w0": RNG.standard_normal((c, c, 1, 1)).astype(np.float32),
        "w1": RNG.standard_normal((c, 1, 3, 3)).astype(np.float32),
        "split": np.array(split, np.int64),
        "merge": np.array(merge, np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="pointwise"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Reshape", ["b", "split"], ["c"], name="split"),
        helper.make_node("Transpose", ["c"], ["d"], name="swap", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["d", "merge"], ["e"], name="merge"),
        helper.make_node("Conv", ["e", "w1"], ["y"], name="dw", group=c, pads=[1] * 4),
    ]
    outputs = [helper.make_tensor_value_info("y", 1, None)]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("d", 1, None))
    graph = helper.make_graph(
        nodes,
        "shuffle",
        [helper.make_tensor_value_info("x", 1, list(SHAPE))],
        outputs,
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="shuffle")


@pytest.mark.parametrize(
    ("split", "merge", "extra_reader", "nhwc"),
    [
        ([0, 2, 4, 5, 6], [0, 8, 5, 6], False, True),
        ([2, 4, 2, 5, 6], [2, -1, 5, 6], False, True),
        # a 0 past the batch copies an input dimension, which NHWC would move: kept NCHW
        ([0, 2, 4, 0, -1], [0, 8, 5, 6], False, False),
        ([0, 2, 4, 5, 6], [0, 8, 5, 6], True, False),
    ],
    ids=["batch 0", "explicit, -1", "0 past the batch", "transposed value read twice"],
)
def test_a_channel_shuffle_runs_channels_last(
    monkeypatch: pytest.MonkeyPatch,
    split: list[int],
    merge: list[int],
    extra_reader: bool,
    nhwc: bool,
) -> None:
    picked: list[Any] = []
    pick: Callable[..., Any] = cpu.pick
    monkeypatch.setattr(cpu, "pick", lambda k, *a: picked.append(k) or pick(k, *a))
    model = _shuffled(split, merge, extra_reader)
    inputs = {"x": RNG.standard_normal(SHAPE).astype(np.float32)}
    expected = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu")
    got = session.run(inputs)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert_close(g, e, scope="op")
    shuffle = [n for n in session.graph.nodes if n.name in ("split", "swap", "merge")]
    assert [n.channels_last for n in shuffle] == [nhwc] * 3
    assert (cpu.shuffle_rows in picked) == nhwc
    conversions = [n for n in session.graph.nodes if n.layer == LAYOUT_LAYER]
    # into NHWC before the first convolution and back for the output; around the
    # shuffle too when it stays NCHW
    assert len(conversions) == (2 if nhwc else 4)


@pytest.mark.parametrize("mask_read", [False, True], ids=["mask unused", "mask an output"])
def test_a_dropout_whose_mask_nothing_reads_stays_channels_last(mask_read: bool) -> None:
    """An opset-9 Dropout between convolutions (SqueezeNet's) with its mask output unread
    runs NHWC; a mask that is a graph output keeps it NCHW."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    c = SHAPE[1]
    consts = {
        "w0": RNG.standard_normal((c, c, 3, 3)).astype(np.float32),
        "w1": RNG.standard_normal((c, c, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="conv0", pads=[1] * 4),
        helper.make_node("Dropout", ["a"], ["b", "mask"], name="drop", ratio=0.5),
        helper.make_node("Conv", ["b", "w1"], ["y"], name="conv1"),
    ]
    outputs = [helper.make_tensor_value_info("y", 1, None)]
    if mask_read:
        outputs.append(helper.make_tensor_value_info("mask", 1, None))  # opset 9: float
    graph = helper.make_graph(
        nodes,
        "dropout",
        [helper.make_tensor_value_info("x", 1, list(SHAPE))],
        outputs,
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=7)
    model = model_from_proto(proto, name="dropout")
    inputs = {"x": RNG.standard_normal(SHAPE).astype(np.float32)}
    expected = ort_outputs(model, inputs)[0]
    session = wb.backend("numba").compile(model, "cpu")
    got = session.run(inputs)[0]
    assert got.shape == expected.shape
    assert_close(got, expected, scope="op")
    drop = next(n for n in session.graph.nodes if n.name == "drop")
    assert drop.channels_last == (not mask_read)
    conversions = [n for n in session.graph.nodes if n.layer == LAYOUT_LAYER]
    assert len(conversions) == (4 if mask_read else 2)


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize(("groups", "size"), [(3, 5), (2, 16), (4, 1)])
def test_the_shuffle_kernel_transposes_each_row(groups: int, size: int, parallel: bool) -> None:
    """`cpu.shuffle_rows` equals NumPy's transpose of each row seen as [groups, size]."""
    x = RNG.standard_normal((7, groups * size)).astype(np.float32)
    out = np.full_like(x, np.nan)
    cpu.shuffle_rows[0 if parallel else 1](x, groups, out)
    expected = x.reshape(7, groups, size).transpose(0, 2, 1).reshape(7, -1)
    np.testing.assert_array_equal(out, expected)


def _grouped_then_shuffled(c: int, m: int, group: int, shuffle: int) -> Model:
    """x [2, c, 6, 5] -> 1x1 Conv (so the next reads NHWC) -> grouped 1x1 Conv -> Relu ->
    channel shuffle in ``shuffle`` groups -> depthwise 3x3 Conv."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    consts = {
        "w0": RNG.standard_normal((c, c, 1, 1)).astype(np.float32) * 0.2,
        "w": RNG.standard_normal((m, c // group, 1, 1)).astype(np.float32),
        "b": RNG.standard_normal(m).astype(np.float32),
        "w1": RNG.standard_normal((m, 1, 3, 3)).astype(np.float32),
        "split": np.array([0, shuffle, m // shuffle, 6, 5], np.int64),
        "merge": np.array([0, m, 6, 5], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["x0"], name="first"),
        helper.make_node("Conv", ["x0", "w", "b"], ["a"], name="grouped", group=group),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "split"], ["s"], name="split"),
        helper.make_node("Transpose", ["s"], ["t"], name="swap", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "merge"], ["e"], name="merge"),
        helper.make_node("Conv", ["e", "w1"], ["y"], name="dw", group=m, pads=[1] * 4),
    ]
    graph = helper.make_graph(
        nodes,
        "grouped_shuffle",
        [helper.make_tensor_value_info("x", 1, [2, c, 6, 5])],
        [helper.make_tensor_value_info("y", 1, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="grouped_shuffle")


@pytest.mark.parametrize(
    ("c", "m", "group", "shuffle"),
    [(24, 32, 4, 4), (64, 64, 4, 4), (64, 64, 4, 2)],
    ids=["6 per group (dense product)", "16 per group (one GEMM each)", "shuffled in 2 of 4"],
)
def test_a_shuffle_after_a_grouped_convolution_is_its_output_order(
    c: int, m: int, group: int, shuffle: int
) -> None:
    """`conv_fusion.fuse_channel_shuffles`: the grouped Conv writes its channels to their
    shuffled places, the shuffle's nodes gone; a shuffle in another number of groups
    than the Conv's stays a node. Against ONNX Runtime within the ``op`` tolerances."""
    model = _grouped_then_shuffled(c, m, group, shuffle)
    inputs = {"x": RNG.standard_normal((2, c, 6, 5)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu")
    for _ in range(2):
        (got,) = session.run(inputs)
        assert_close(got, expected, scope="op")
    conv = next(n for n in session.graph.nodes if n.name == "grouped")
    folded = shuffle == group
    assert conv.attrs.get("shuffle") == (group if folded else None)
    assert ("swap" in [n.name for n in session.graph.nodes]) != folded
