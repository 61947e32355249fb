"""Channels-last execution on the CPU: the graph pass and the NHWC kernels, against ORT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.backends.numba import cpu
from workbench.backends.numba.layout import LAYOUT_LAYER, NHWC_SUFFIX
from workbench.errors import BackendOptionError
from workbench.model import Model
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(7)


def _chain_model(tail: list[tuple[str, dict[str, Any]]], extra: dict[str, np.ndarray]) -> Model:
    """x [2, 5, 9, 7] -> Conv(5->4, 3x3, pad 1) -> each (op, attrs) of ``tail`` in turn.

    Five input channels: a convolution on fewer reads its input NCHW (`layout`), and
    these tests follow the conversions of a chain that starts with one.

    A tail op's inputs are the previous output plus the values its ``"with"`` entry
    names: ``extra`` constants (broadcasting) or earlier outputs such as ``"t0"``.
    """
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    weight = RNG.standard_normal((4, 5, 3, 3)).astype(np.float32)
    bias = RNG.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t0"], name="conv", pads=[1, 1, 1, 1])]
    for i, (op, attrs) in enumerate(tail):
        attrs = dict(attrs)
        inputs = [f"t{i}", *attrs.pop("with", [])]
        nodes.append(helper.make_node(op, inputs, [f"t{i + 1}"], name=f"{op}{i}", **attrs))
    out = f"t{len(tail)}"
    initializers = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    initializers += [numpy_helper.from_array(v, k) for k, v in extra.items()]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", 1, [2, 5, 9, 7])],
        [helper.make_tensor_value_info(out, 1, None)],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="chain")


def _check(model: Model, **options: Any) -> Any:
    inputs = {"x": RNG.standard_normal((2, 5, 9, 7)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu", layout="nhwc", **options)
    (got,) = session.run(inputs)
    assert got.shape == expected.shape
    assert_close(got, expected, scope="op")
    return session


POOLS = [
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 1], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 0, 0, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (
        "AveragePool",
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
    ("AveragePool", {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
]


@pytest.mark.parametrize(("op", "attrs"), POOLS, ids=[str(p[1]) for p in POOLS])
def test_pooling_after_a_convolution_runs_nhwc(op: str, attrs: dict[str, Any]) -> None:
    session = _check(_chain_model([(op, attrs)], {}))
    pool = next(n for n in session.graph.nodes if n.op_type == op)
    assert pool.channels_last and pool.inputs[0].endswith(NHWC_SUFFIX)


#: Ops after a convolution that stay in the NHWC chain: activations of MobileNets
#: (Clip as Relu6, HardSwish), YOLO (LeakyRelu), AlexNet (LRN).
CHANNEL_OPS = [
    ("Clip", {"with": ["lo", "hi"]}),
    ("HardSwish", {}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
    ("LeakyRelu", {"alpha": 0.2}),
    ("LRN", {"size": 3, "alpha": 0.5, "bias": 2.0}),
]


@pytest.mark.parametrize(("op", "attrs"), CHANNEL_OPS, ids=[p[0] for p in CHANNEL_OPS])
def test_activations_and_lrn_after_a_convolution_run_nhwc(op: str, attrs: dict[str, Any]) -> None:
    bounds = {"lo": np.array(-0.5, np.float32), "hi": np.array(0.6, np.float32)}
    # a second convolution after the op: the chain only ends at the graph output
    tail = [(op, attrs), ("Conv", {"with": ["w2"], "kernel_shape": [1, 1]})]
    weight = RNG.standard_normal((2, 4, 1, 1)).astype(np.float32)
    session = _check(_chain_model(tail, {**bounds, "w2": weight}))
    # HardSwish runs in the convolution's epilogue (`conv_fusion`), the others on their own
    node = next((n for n in session.graph.nodes if n.op_type == op), None)
    if node is None:
        node = next(n for n in session.graph.nodes if n.activation == op)
    assert node.channels_last and node.inputs[0].endswith(NHWC_SUFFIX)
    layout_nodes = [n for n in session.graph.nodes if n.layer == LAYOUT_LAYER]
    assert len(layout_nodes) == 2  # into NHWC at the input, back at the output


def test_per_tensor_quantize_dequantize_pairs_stay_in_the_nhwc_chain() -> None:
    """An INT8 CNN's activation pairs between convolutions; a per-channel pair (its axis
    is NCHW's) goes back to NCHW."""
    qdq = {"with": ["s", "z"]}
    tail = [("QuantizeLinear", qdq), ("DequantizeLinear", qdq)]
    tail += [("Conv", {"with": ["w2"], "kernel_shape": [1, 1]})]
    per_tensor = {"s": np.array(0.05, np.float32), "z": np.array(3, np.int8)}
    weight = RNG.standard_normal((2, 4, 1, 1)).astype(np.float32)
    session = _check(_chain_model(tail, {**per_tensor, "w2": weight}))
    assert all(n.channels_last for n in session.graph.nodes if n.op_type != "Transpose")
    assert len([n for n in session.graph.nodes if n.layer == LAYOUT_LAYER]) == 2
    per_channel = {"s": np.full(4, 0.05, np.float32), "z": np.arange(4, dtype=np.int8)}
    session = _check(_chain_model(tail, {**per_channel, "w2": weight}))
    quantize = next(n for n in session.graph.nodes if n.op_type == "QuantizeLinear")
    assert not quantize.channels_last


def test_global_average_pool_reads_nhwc_and_writes_nchw() -> None:
    session = _check(_chain_model([("Tanh", {}), ("GlobalAveragePool", {})], {}))
    ops = [(n.op_type, n.channels_last) for n in session.graph.nodes]
    # one conversion in, none out: GlobalAveragePool's [N, C, 1, 1] needs none
    assert ops == [
        ("Transpose", False),
        ("Conv", True),
        ("Tanh", True),
        ("GlobalAveragePool", True),
    ]


def _feature_map_model(channels: int, ops: list[str], conv: bool) -> Model:
    """x [2, channels, 8, 6] -> each op of ``ops`` (Relu, or a 2x2 MaxPool) -> a 3x3
    Conv to 3 channels when ``conv``: a model cut mid-network starts so."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    nodes, value = [], "x"
    for i, op in enumerate(ops):
        attrs = {"kernel_shape": [2, 2], "strides": [2, 2]} if op == "MaxPool" else {}
        nodes.append(helper.make_node(op, [value], [f"t{i}"], name=f"{op}{i}", **attrs))
        value = f"t{i}"
    weight = RNG.standard_normal((3, channels, 3, 3)).astype(np.float32)
    if conv:
        nodes.append(helper.make_node("Conv", [value, "w"], ["y"], name="conv", pads=[1] * 4))
        value = "y"
    graph = helper.make_graph(
        nodes,
        "feature_map",
        [helper.make_tensor_value_info("x", 1, [2, channels, 8, 6])],
        [helper.make_tensor_value_info(value, 1, None)],
        [numpy_helper.from_array(weight, "w")] if conv else [],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="feature_map")


@pytest.mark.parametrize("ops", [["MaxPool"], ["Relu", "MaxPool"]], ids=str)
def test_a_feature_map_input_converts_where_its_chain_starts(ops: list[str]) -> None:
    """A model cut before a pooling (`workbench.planning.cuts`) gets an NCHW feature map
    that a convolution reads after it: it converts once, first, and the chain runs NHWC
    as inside the whole model, not the NCHW pooling and a conversion before the Conv."""
    model = _feature_map_model(16, ops, conv=True)
    inputs = {"x": RNG.standard_normal((2, 16, 8, 6)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu", layout="nhwc")
    (got,) = session.run(inputs)
    assert_close(got, expected, scope="op")
    ops_run = [(n.op_type, n.channels_last) for n in session.graph.nodes]
    assert ops_run[0] == ("Transpose", False) and session.graph.nodes[0].inputs == ["x"]
    assert all(nhwc for op, nhwc in ops_run[1:] if op != "Transpose")


@pytest.mark.parametrize(
    ("channels", "conv"), [(3, True), (16, False)], ids=["image-conv", "no-conv"]
)
def test_a_chain_not_feeding_a_converting_conv_stays_nchw(channels: int, conv: bool) -> None:
    """An image's pooling before its first convolution (which reads NCHW) and a pooling
    whose output leaves the graph keep NCHW: nothing is converted to NHWC for them."""
    model = _feature_map_model(channels, ["MaxPool"], conv=conv)
    inputs = {"x": RNG.standard_normal((2, channels, 8, 6)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu", layout="nhwc")
    (got,) = session.run(inputs)
    assert_close(got, expected, scope="op")
    assert not any(n.name.endswith("::to_nhwc") for n in session.graph.nodes)
    assert not next(n for n in session.graph.nodes if n.op_type == "MaxPool").channels_last


@pytest.mark.parametrize(
    "shape", [(4, 1, 1), (1, 4, 1, 1), (7,), (9, 1), (), (1, 1, 9, 7)], ids=str
)
def test_broadcasting_against_constants_of_any_rank(shape: tuple[int, ...]) -> None:
    const = RNG.standard_normal(shape).astype(np.float32)
    session = _check(
        _chain_model([("Mul", {"with": ["c"]}), ("Sub", {"with": ["c"]})], {"c": const})
    )
    assert [n.op_type for n in session.graph.nodes if n.channels_last] == ["Conv", "Mul", "Sub"]


def test_concat_over_channels_and_residual_add() -> None:
    tail = [("Relu", {}), ("Add", {"with": ["t0"]}), ("Concat", {"axis": -3, "with": ["t0"]})]
    session = _check(_chain_model(tail, {}))
    assert all(n.channels_last for n in session.graph.nodes if n.op_type != "Transpose")
    concat = next(n for n in session.graph.nodes if n.op_type == "Concat")
    assert concat.attrs["axis"] == 3


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_concat_over_channels_copies_each_input_into_its_columns(
    monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    """Inputs 16 channels wide run `cpu.copy_columns`, the 4-wide one NumPy's copy; one
    input read twice."""
    if parallel:  # small shapes, the parallel kernel all the same
        monkeypatch.setattr(cpu, "PARALLEL_MIN_WORK", 1)
    picked: list[Any] = []
    pick: Callable[..., Any] = cpu.pick
    monkeypatch.setattr(cpu, "pick", lambda k, *a: picked.append(k) or pick(k, *a))
    w2 = RNG.standard_normal((16, 4, 1, 1)).astype(np.float32)
    tail = [
        ("Conv", {"with": ["w2"], "kernel_shape": [1, 1]}),
        ("Concat", {"axis": 1, "with": ["t0", "t1"]}),
    ]
    session = _check(_chain_model(tail, {"w2": w2}))
    concat = next(n for n in session.graph.nodes if n.op_type == "Concat")
    assert concat.channels_last
    assert cpu.copy_columns in picked


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_copy_columns_fills_only_its_columns(parallel: bool) -> None:
    part = RNG.standard_normal((5, 16)).astype(np.float32)
    out = np.full((5, 40), np.nan, np.float32)
    cpu.copy_columns[0 if parallel else 1](part, out, 8)
    np.testing.assert_array_equal(out[:, 8:24], part)
    assert np.isnan(out[:, :8]).all() and np.isnan(out[:, 24:]).all()


def test_layout_conversions_are_shared_and_profiled_as_one_layer() -> None:
    # two consumers that need NCHW (a Softmax, then the graph output) share one transpose
    session = _check(_chain_model([("Relu", {}), ("Softmax", {"axis": 1})], {}))
    names = [n.name for n in session.graph.nodes if n.layer == LAYOUT_LAYER]
    assert names == ["x::to_nhwc", "t1::to_nchw"]
    inputs = {"x": RNG.standard_normal((2, 5, 9, 7)).astype(np.float32)}
    layers = [t.layer for t in session.run_layers(inputs, repeats=2)]
    assert layers.count(LAYOUT_LAYER) == 1


def test_nchw_layout_option_keeps_the_onnx_layout() -> None:
    model = wb.samples.load("digits-cnn")
    session = wb.backend("numba").compile(model, "cpu", layout="nchw")
    assert not any(n.channels_last for n in session.graph.nodes)
    assert not any(n.op_type == "Transpose" for n in session.graph.nodes)
    with pytest.raises(BackendOptionError, match="layout='nchwc' is not one of 'nhwc', 'nchw'"):
        wb.backend("numba").compile(model, "cpu", layout="nchwc")


@pytest.mark.parametrize("name", ["digits-cnn", "digits-resnet"])
def test_samples_agree_in_both_layouts(name: str) -> None:
    model = wb.samples.load(name)
    inputs = model.example_inputs(batch_size=3)
    nchw = wb.backend("numba").compile(model, "cpu", layout="nchw").run(inputs)
    nhwc_session = wb.backend("numba").compile(model, "cpu", layout="nhwc")
    nhwc = nhwc_session.run(inputs)
    assert sum(n.op_type == "Conv" and n.channels_last for n in nhwc_session.graph.nodes) >= 3
    for a, b in zip(nhwc, nchw, strict=True):
        assert_close(a, b, scope="model")


@pytest.mark.parametrize("block_bytes", [1, 2000, 1 << 30], ids=["row", "rows", "whole"])
def test_im2col_in_row_blocks_matches(monkeypatch, block_bytes: int) -> None:
    """Large convolutions run im2col + GEMM a block of output rows at a time."""
    from workbench.backends.numba import cpu_ops

    monkeypatch.setattr(cpu_ops, "IM2COL_BLOCK_BYTES", block_bytes)
    _check(_chain_model([("Sigmoid", {})], {}), conv_strategy="rules")  # the rules: im2col


@pytest.mark.parametrize(
    ("hw", "pads", "activation"),
    [((8, 8), [1, 1, 1, 1], "Relu"), ((7, 5), [0, 0, 0, 0], ""), ((6, 9), [2, 0, 1, 2], "Relu")],
    ids=["same", "valid-odd", "asymmetric"],
)
@pytest.mark.parametrize("block_bytes", [1 << 30, 20000], ids=["one-block", "blocks"])
def test_winograd_3x3_matches_onnxruntime(
    monkeypatch, hw: tuple[int, int], pads: list[int], activation: str, block_bytes: int
) -> None:
    """3x3 stride-1 convolutions with enough channels run Winograd F(2x2, 3x3), in
    blocks of tile rows when large (the last block shorter)."""
    from onnx import helper, numpy_helper

    from workbench.backends.numba import cpu_ops
    from workbench.loaders.onnx import model_from_proto

    monkeypatch.setattr(cpu_ops, "IM2COL_BLOCK_BYTES", block_bytes)

    c, m = 16, 24
    weight = RNG.standard_normal((m, c, 3, 3)).astype(np.float32)
    bias = RNG.standard_normal(m).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y0"], name="conv", pads=pads)]
    nodes.append(helper.make_node(activation or "Identity", ["y0"], ["y"], name="act"))
    graph = helper.make_graph(
        nodes,
        "winograd",
        [helper.make_tensor_value_info("x", 1, [3, c, *hw])],
        [helper.make_tensor_value_info("y", 1, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    model = model_from_proto(proto, name="winograd")
    inputs = {"x": RNG.standard_normal((3, c, *hw)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    # the rules pick Winograd here; measuring might pick another kernel
    session = wb.backend("numba").compile(model, "cpu", conv_strategy="rules")
    assert_close(session.run(inputs)[0], expected, scope="op")
    conv = next(n for n in session.graph.nodes if n.op_type == "Conv")
    assert "winograd_u" in conv.cache
