"""The packed float32 GEMM (`workbench.backends.numba.packed_gemm`): the kernel against float64
NumPy, and MatMul/Gemm nodes with constant weights against ONNX Runtime."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import pytest
from numba_helpers import ort_outputs

import workbench as wb
from workbench.backends.numba import cpu
from workbench.backends.numba import packed_gemm as gemm
from workbench.testing.tolerances import assert_close

#: a row tail (13 = 2 x MR + 1), a depth crossing a K slice, a width with a partial panel
M, K, N = 13, gemm.KC + 44, 70


def _operands(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32)
    return a, w, rng.standard_normal(N).astype(np.float32)


@pytest.mark.parametrize("tasks", [1, 2, 3], ids=["serial", "two-shares", "three-shares"])
@pytest.mark.parametrize("act", ["", "Relu"], ids=["plain", "relu"])
def test_packed_product_matches_float64(tasks: int, act: str) -> None:
    """``act(a @ w + bias)`` into a view of a wider array: every valid column written,
    nothing past the view's columns touched, whatever the panels' shares."""
    a, w, bias = _operands()
    packed = gemm.pack(w, bias)
    wide = np.full((M, N + 5), 7.0, np.float32)
    out = wide[:, 2 : 2 + N]
    tiles = np.empty((tasks, gemm.MC, gemm.NR), np.float32)
    run = gemm.gemm_packed[0 if tasks > 1 else 1]
    run(a, packed.panels, packed.bias, cpu.ACTIVATIONS[act], tiles, out)
    expected = a.astype(np.float64) @ w.astype(np.float64) + bias
    if act == "Relu":
        expected = np.maximum(expected, 0)
    assert_close(out, expected.astype(np.float32), what="packed GEMM")
    assert (wide[:, :2] == 7).all() and (wide[:, 2 + N :] == 7).all()


@pytest.mark.parametrize("shape", [(70, 7, 3, 3), (64, 16, 1, 1)], ids=["3x3", "1x1"])
def test_a_convolution_weight_packs_from_its_own_layout(shape: tuple[int, ...]) -> None:
    """`pack` of ``w.transpose(2, 3, 1, 0)`` (read-only, strided) equals `pack` of its
    contiguous ``[kh*kw*C, M]`` copy: the same panels (a partial one for 70 columns)."""
    w = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    w.flags.writeable = False  # as an ONNX initializer
    copy = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, shape[0]))
    np.testing.assert_array_equal(
        gemm.pack(w.transpose(2, 3, 1, 0), None).panels, gemm.pack(copy, None).panels
    )


def _linear_model(op: str, bias_input: bool = False) -> tuple[wb.Model, dict[str, np.ndarray]]:
    """MatMul(x, W) + b -> Relu over [2, M, K] rows, or Gemm(x, W', C) with transB (C a
    constant, or a graph input when ``bias_input``)."""
    from onnx import TensorProto, helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    a, w, bias = _operands(1)
    feeds = {"x": np.stack([a, -a])}
    consts = {"w": w, "b": bias}
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["p"], name="mm"),
        helper.make_node("Add", ["p", "b"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    if op == "Gemm":
        feeds = {"x": a} | ({"b": bias} if bias_input else {})
        consts = {"w": np.ascontiguousarray(w.T)} | ({} if bias_input else {"b": bias})
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm", transB=1)]
    graph = helper.make_graph(
        nodes,
        "linear",
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape))
            for name, value in feeds.items()
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    return model_from_proto(proto, name="linear-test"), feeds


@pytest.mark.parametrize(
    ("op", "bias_input"),
    [("MatMul", False), ("Gemm", False), ("Gemm", True)],
    ids=["matmul-bias-relu", "gemm-transb", "gemm-bias-input"],
)
def test_products_with_constant_weights_run_packed_and_match_ort(
    op: str, bias_input: bool, monkeypatch: Any
) -> None:
    """A constant weight (and bias) is packed once and the node's output equals ORT's,
    on two runs (the second reuses the packed weight); a bias that is a graph input keeps
    the BLAS path, since a packed copy of it would go stale."""
    monkeypatch.setattr(gemm, "AVAILABLE", True)  # the kernel is exact on any CPU
    model, feeds = _linear_model(op, bias_input)
    session = wb.backend("numba").compile(model, "cpu")
    for scale in (1.0, -2.0):
        run_feeds = {name: value * scale for name, value in feeds.items()}
        (got,) = session.run(run_feeds)
        (expected,) = ort_outputs(model, run_feeds)
        assert_close(got, expected, what=op)
    (node,) = [n for n in session.graph.nodes if n.op_type == op]
    packed = node.cache.get("packed")
    assert isinstance(packed, gemm.PackedWeight) is not bias_input
    if packed is not None:  # the memory report counts the packed copy, not a transposed one
        assert "bT" not in node.cache
        assert session.memory(feeds).activation_peak_bytes >= packed.nbytes > K * N * 4


def test_few_rows_small_depths_and_other_dtypes_stay_on_blas(monkeypatch: Any) -> None:
    monkeypatch.setattr(gemm, "AVAILABLE", True)
    assert gemm.worthwhile(50, 768, 3072, np.dtype(np.float32))
    assert not gemm.worthwhile(1, 768, 3072, np.dtype(np.float32))  # a GEMV: BLAS's
    assert not gemm.worthwhile(50, 64, 512, np.dtype(np.float32))  # depth under a K slice
    assert not gemm.worthwhile(gemm.MC + 1, 768, 768, np.dtype(np.float32))
    assert not gemm.worthwhile(50, 768, 768, np.dtype(np.float64))


def test_the_micro_kernel_is_vector_fused_multiply_adds() -> None:
    """The inner loop is ``vfmadd...ps`` on zmm registers with AVX-512 (12 sums of one
    register) and on ymm with AVX2 (6 sums of two halves each), not scalar code."""
    import numba

    if platform.machine().lower() not in ("x86_64", "amd64") or not gemm.AVAILABLE:
        pytest.skip("the instructions named are x86-64's AVX2 and AVX-512")
    register = "zmm" if gemm.VECTORS == 2 else "ymm"
    kernel = numba.njit(fastmath=True)(gemm._gemm_packed)  # uncached: its assembly shows
    a, w, bias = _operands()
    packed = gemm.pack(w, bias)
    tiles = np.empty((1, gemm.MC, gemm.NR), np.float32)
    kernel(a, packed.panels, packed.bias, 0, tiles, np.empty((M, N), np.float32))
    asm = kernel.inspect_asm(kernel.signatures[0])
    assert sum("vfmadd" in line and register in line for line in asm.splitlines()) >= 2 * gemm.MR
