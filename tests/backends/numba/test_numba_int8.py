"""QDQ INT8 in integer arithmetic on the Numba CPU backend, checked against the ONNX spec.

Small hand-built QDQ graphs (what ORT's static and dynamic quantizers write) keep these
fast. The reference is `onnx.reference` (each op as the spec words it: dequantize, the
op in float, quantize), not ONNX Runtime: ORT's fused u8s8 kernels on a CPU with AVX2 but
no VNNI sum pairs of 8-bit products in saturating int16 (``vpmaddubsw``), 172 steps off
the spec on one of these graphs. A fused product's quantized output may differ from the
spec's by one quantization step where the two round a value lying at a step's midpoint
differently (the integer sums are requantized with one float multiplier, the float
reading divides): that is the bound checked, with almost every value equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numba_helpers import spec_outputs

import workbench as wb
from workbench.backends.numba import int8, qdq_fusion

#: At most this share of outputs may differ from the spec's, each by one quantization step.
ONE_STEP_SHARE = 0.02


def _qdq_model(activations: str, trans_b: int, seed: int = 0) -> tuple[wb.Model, float]:
    """``x -> Q -> DQ -> Gemm(W1 per-channel, b1) -> Relu -> Q -> DQ -> MatMul(W2 one
    scale) -> Q -> DQ -> y``, as ORT's QDQ quantizer writes it; the output's scale too."""
    from onnx import TensorProto, helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    rng = np.random.default_rng(seed)
    qtype = np.uint8 if activations == "uint8" else np.int8
    zero = 7 if activations == "uint8" else -3
    k, hidden, n = 40, 72, 10
    w1 = rng.integers(-127, 128, (hidden, k) if trans_b else (k, hidden)).astype(np.int8)
    w2 = rng.integers(-127, 128, (hidden, n)).astype(np.int8)
    w1_scale = rng.uniform(0.002, 0.004, hidden).astype(np.float32)
    consts = {
        "x_s": np.float32(0.02), "x_z": qtype(zero),
        "w1_q": w1, "w1_s": w1_scale, "w1_z": np.zeros(hidden, np.int8),
        "b1_q": rng.integers(-300, 300, hidden).astype(np.int32),
        "b1_s": np.float32(0.02) * w1_scale, "b1_z": np.zeros(hidden, np.int32),
        "h_s": np.float32(0.03), "h_z": qtype(0 if activations == "uint8" else -128),
        "w2_q": w2, "w2_s": np.float32(0.003), "w2_z": np.int8(0),
        "y_s": np.float32(0.01), "y_z": qtype(zero),
    }  # fmt: skip
    nodes = [
        helper.make_node("DequantizeLinear", ["w1_q", "w1_s", "w1_z"], ["w1"], axis=1 - trans_b),
        helper.make_node("DequantizeLinear", ["b1_q", "b1_s", "b1_z"], ["b1"], axis=0),
        helper.make_node("DequantizeLinear", ["w2_q", "w2_s", "w2_z"], ["w2"]),
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"]),
        helper.make_node("Gemm", ["xd", "w1", "b1"], ["h"], name="fc1", transB=trans_b),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("QuantizeLinear", ["hr", "h_s", "h_z"], ["hq"]),
        helper.make_node("DequantizeLinear", ["hq", "h_s", "h_z"], ["hd"]),
        helper.make_node("MatMul", ["hd", "w2"], ["y0"], name="fc2"),
        helper.make_node("QuantizeLinear", ["y0", "y_s", "y_z"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_z"], ["y"]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(np.asarray(v), name) for name, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    return model_from_proto(proto, name="qdq-test"), float(consts["y_s"])


def _within_one_step(got: np.ndarray, expected: np.ndarray, step: float) -> None:
    steps = np.abs(got.astype(np.float64) - expected) / step
    assert steps.max() <= 1.0 + 1e-4, f"{steps.max():.2f} steps apart"
    assert np.mean(steps > 0.5) <= ONE_STEP_SHARE, f"{np.mean(steps > 0.5):.1%} differ"


@pytest.mark.parametrize("activations", ["uint8", "int8"])
@pytest.mark.parametrize("trans_b", [1, 0], ids=["transB", "plain"])
def test_qdq_products_run_in_integers_within_one_step_of_the_spec(
    activations: str, trans_b: int
) -> None:
    model, step = _qdq_model(activations, trans_b)
    x = np.random.default_rng(1).uniform(-1, 2.5, (33, 40)).astype(np.float32)
    session = wb.backend("numba").compile(model, "cpu")
    products = [n for n in session.graph.nodes if n.op_type == qdq_fusion.FUSED_OP]
    assert [n.name for n in products] == ["fc1", "fc2"]
    # the activation's dequantize, the Relu and the output's quantize ran inside fc1
    assert set(products[0].fused) >= {"DequantizeLinear_4", "QuantizeLinear_7"}
    assert products[0].activation == "Relu"
    (got,) = session.run({"x": x})
    (expected,) = spec_outputs(model, {"x": x})
    _within_one_step(got, expected, step)


def _qdq_conv_model(activations: str, seed: int = 4) -> tuple[wb.Model, float]:
    """``x -> Q -> DQ -> Conv(3x3, stride 2, pads 1, per-channel weight, bias) -> Q -> DQ``."""
    from onnx import TensorProto, helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    rng = np.random.default_rng(seed)
    qtype = np.uint8 if activations == "uint8" else np.int8
    c, m = 5, 12
    geometry: dict[str, Any] = {"pads": [1, 1, 1, 1], "strides": [2, 2]}
    w_scale = rng.uniform(0.004, 0.008, m).astype(np.float32)
    consts = {
        "x_s": np.float32(0.02), "x_z": qtype(11 if activations == "uint8" else -7),
        "w_q": rng.integers(-127, 128, (m, c, 3, 3)).astype(np.int8), "w_s": w_scale,
        "w_z": np.zeros(m, np.int8),
        "b_q": rng.integers(-500, 500, m).astype(np.int32), "b_s": np.float32(0.02) * w_scale,
        "b_z": np.zeros(m, np.int32), "y_s": np.float32(0.05), "y_z": qtype(3),
    }  # fmt: skip
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"], axis=0),
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"]),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv", **geometry),
        helper.make_node("QuantizeLinear", ["c", "y_s", "y_z"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_z"], ["y"]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "qdq_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c, 9, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), name) for name, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    return model_from_proto(proto, name="qdq-conv-test"), float(consts["y_s"])


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_qdq_convolutions_run_in_integers_within_one_step_of_the_spec(
    activations: str, layout: str
) -> None:
    model, step = _qdq_conv_model(activations)
    x = np.random.default_rng(5).uniform(-1, 3, (3, 5, 9, 8)).astype(np.float32)
    session = wb.backend("numba").compile(model, "cpu", layout=layout)
    (conv,) = [n for n in session.graph.nodes if n.op_type == qdq_fusion.FUSED_CONV]
    assert conv.name == "conv" and "QuantizeLinear_5" in conv.fused
    (got,) = session.run({"x": x})
    (expected,) = spec_outputs(model, {"x": x})
    assert got.shape == expected.shape == (3, 12, 5, 4)
    _within_one_step(got, expected, step)


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_int8_products_are_exact(activations: str, parallel: bool, monkeypatch: Any) -> None:
    """The int32 sums equal NumPy's in int64, zero points of both operands included
    (VNNI where the CPU has it and the weight is symmetric, int16 dot products else),
    for a depth and a width that are not multiples of the vectors'."""
    from workbench.backends.numba import cpu

    monkeypatch.setattr(cpu, "PARALLEL_MIN_WORK", 0 if parallel else 1 << 62)
    rng = np.random.default_rng(2)
    low, high, x_zero = (0, 256, 9) if activations == "uint8" else (-128, 128, -5)
    x = rng.integers(low, high, (6, 37)).astype(activations)
    w = rng.integers(-128, 128, (37, 70)).astype(np.int8)
    for zero in (rng.integers(-4, 5, 70).astype(np.int8), np.zeros(70, np.int8)):
        weight = int8.pack(w, zero, axis=1)
        product = int8.product(weight, x, np.array(x_zero, x.dtype), {})
        product.run()
        result = np.empty((6, 70), np.int32)
        fix = cpu.pick(int8.offset, 1)
        fix(product.acc, product.zero, product.shift, product.column_sums, result)
        expected = (x.astype(np.int64) - x_zero) @ (w.astype(np.int64) - zero)
        np.testing.assert_array_equal(result, expected)


def test_the_int8_kernels_compile_to_integer_multiply_adds() -> None:
    """The int16 kernel's inner loop is pairs of int16 products added into int32 lanes
    (pmaddwd, or AVX-512 VNNI's vpdpwssd), not widened 32-bit multiplies; where the CPU
    has AVX-512 VNNI the uint8 x int8 kernel is vpdpbusd."""
    import platform

    import numba

    from workbench.backends.numba import vnni

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the instructions named are x86's")
    # uncached copies: Numba shows no assembly for code loaded from its disk cache
    dots = numba.njit(int8._gemm)
    dots(np.zeros((2, 64), np.int16), np.zeros((3, 64), np.int16), np.empty((2, 3), np.int32))
    asm = dots.inspect_asm(dots.signatures[0])
    assert "pmaddwd" in asm or "vpdpwssd" in asm, "no int16 multiply-add in the GEMM loop"
    if vnni.AVAILABLE:
        bytes_ = numba.njit(int8._gemm_vnni)
        bytes_(np.zeros((5, 8), np.uint8), np.zeros((1, 32), np.int32), np.empty((5, 16), np.int32))
        assert "vpdpbusd" in bytes_.inspect_asm(bytes_.signatures[0])


def _dynamic_model(seed: int = 3) -> tuple[wb.Model, dict[str, np.ndarray]]:
    """``DynamicQuantizeLinear -> MatMulInteger`` with a constant int8 weight and one
    zero point per column (ORT's ``int8-dynamic`` writes this pair)."""
    from onnx import TensorProto, helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    rng = np.random.default_rng(seed)
    consts: dict[str, Any] = {
        "w": rng.integers(-128, 128, (50, 24)).astype(np.int8),
        "w_z": rng.integers(-3, 4, 24).astype(np.int8),
    }
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xz", "w_z"], ["y"], name="mm"),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 50])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2, 3, 24])],
        [numpy_helper.from_array(v, name) for name, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    x = rng.normal(0.3, 1.0, (2, 3, 50)).astype(np.float32)
    return model_from_proto(proto, name="dynamic-test"), {"x": x}


def test_matmul_integer_with_a_constant_weight_runs_the_integer_kernel_exactly() -> None:
    model, feeds = _dynamic_model()
    session = wb.backend("numba").compile(model, "cpu")
    (got,) = session.run(feeds)
    (expected,) = spec_outputs(model, feeds)
    np.testing.assert_array_equal(got, expected)
    (node,) = [n for n in session.graph.nodes if n.op_type == "MatMulInteger"]
    assert isinstance(node.cache["weight"], int8.PackedWeight)  # the integer path ran
    feeds2 = {"x": feeds["x"] * 3 - 1}  # a new range: scale and zero point change per run
    np.testing.assert_array_equal(session.run(feeds2)[0], spec_outputs(model, feeds2)[0])


def test_max_pool_between_a_dequantize_and_the_same_quantize_runs_on_quantized_values() -> None:
    """``DQ -> MaxPool -> Q`` with one scale and zero point is the pool of the quantized
    values: no float tensor in between, and the outputs equal the spec's exactly."""
    from onnx import TensorProto, helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    params = {"s": np.float32(0.03), "z": np.uint8(5)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("MaxPool", ["xd"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2]*2),
        helper.make_node("QuantizeLinear", ["p", "s", "z"], ["pq"]),
        helper.make_node("DequantizeLinear", ["pq", "s", "z"], ["y"]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), name) for name, v in params.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    model = model_from_proto(proto, name="qdq-pool-test")
    x = np.random.default_rng(6).uniform(-1, 5, (2, 3, 6, 6)).astype(np.float32)
    session = wb.backend("numba").compile(model, "cpu")
    (pool,) = [n for n in session.graph.nodes if n.op_type == "MaxPool"]
    assert pool.inputs[0] == "xq" and pool.outputs == ["pq"]
    np.testing.assert_array_equal(session.run({"x": x})[0], spec_outputs(model, {"x": x})[0])


def test_dynamic_products_fuse_their_float_tail_and_match_the_spec() -> None:
    """``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(scale) -> Add(bias) ->
    Relu`` (ORT's ``int8-dynamic`` with one weight scale per channel) is one node whose
    epilogue does the same float32 arithmetic: equal to the spec's outputs."""
    from onnx import TensorProto, helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    rng = np.random.default_rng(7)
    consts = {
        "w": rng.integers(-127, 128, (30, 20)).astype(np.int8),
        "w_s": rng.uniform(0.001, 0.01, 20).astype(np.float32),
        "w_z": np.zeros(20, np.int8),
        "b": rng.normal(0, 0.5, 20).astype(np.float32),
    }
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("Mul", ["xs", "w_s"], ["m"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xz", "w_z"], ["acc"], name="mm"),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["accf", "m"], ["y0"]),
        helper.make_node("Add", ["y0", "b"], ["y1"]),
        helper.make_node("Relu", ["y1"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic_tail",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 30])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, name) for name, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    model = model_from_proto(proto, name="dynamic-tail-test")
    session = wb.backend("numba").compile(model, "cpu")
    (product,) = [n for n in session.graph.nodes if n.op_type == qdq_fusion.FUSED_OP]
    assert product.name == "mm" and product.activation == "Relu"
    for seed in (8, 9):  # a new range each run: the scale is read every time
        x = {"x": np.random.default_rng(seed).normal(0, 2, (5, 30)).astype(np.float32)}
        np.testing.assert_allclose(
            session.run(x)[0], spec_outputs(model, x)[0], rtol=1e-6, atol=1e-6
        )
