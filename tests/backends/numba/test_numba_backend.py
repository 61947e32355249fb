"""The numba backend on the CPU: whole models against ONNX Runtime, and its contract."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from numba_helpers import TINY_CASES, ort_outputs, single_node_model, tiny_case

import workbench as wb
from workbench.backends.base import Backend, LayerTiming, Session
from workbench.backends.numba import register_kernel, unregister_kernel
from workbench.errors import (
    BackendError,
    BackendOptionError,
    DeviceUnavailableError,
    UnsupportedModelError,
)
from workbench.testing import toy_cnn, toy_mlp
from workbench.testing.tolerances import assert_close

SAMPLES = ["digits-mlp", "digits-cnn", "digits-transformer", "digits-resnet"]


@pytest.fixture(scope="module")
def backend() -> Backend:
    return wb.backend("numba")


@pytest.mark.parametrize("gemm", ["blas", "tiled"])
@pytest.mark.parametrize("name", SAMPLES)
def test_sample_models_match_onnxruntime(backend, name: str, gemm: str) -> None:
    model = wb.samples.load(name)
    session = backend.compile(model, "cpu", gemm=gemm)
    for batch in (1, 3):
        inputs = model.example_inputs(batch_size=batch)
        expected = ort_outputs(model.to_onnx(), inputs)
        got = session.run(inputs)
        for ours, reference in zip(got, expected, strict=True):
            assert_close(ours, reference, scope="model", what=f"{name} batch {batch}")


@pytest.mark.parametrize("make", [toy_mlp, toy_cnn], ids=["toy_mlp", "toy_cnn"])
def test_torch_models_run_through_their_onnx_export(backend, make) -> None:
    import torch

    model = make()
    inputs = model.example_inputs(batch_size=4)
    with torch.no_grad():
        expected = model.module(*(torch.from_numpy(v) for v in inputs.values())).numpy()
    (got,) = backend.compile(model, "cpu").run(inputs)
    assert_close(got, expected, scope="model")


def test_repeated_runs_reuse_buffers_but_return_fresh_arrays(backend) -> None:
    model = wb.samples.load("digits-cnn")
    session = backend.compile(model, "cpu")
    a, b = model.example_inputs(2, seed=1), model.example_inputs(2, seed=2)
    first = session.run(a)[0]
    second = session.run(b)[0]
    again = session.run(a)[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)
    # a new batch size gets its own plan, and the old one still works
    assert session.run(model.example_inputs(5))[0].shape == (5, 10)
    np.testing.assert_array_equal(session.run(a)[0], first)


def test_planning_reuses_dead_buffers(backend) -> None:
    model = wb.samples.load("digits-resnet")
    session = backend.compile(model, "cpu")
    session.run(model.example_inputs(1))
    (plan,) = session._executor._plans.values()
    written = sum(int(np.prod(step.outs[0].shape)) * 4 for step in plan.steps if step.outs)
    assert 0 < plan.arena_bytes < written / 2


def test_folding_and_fusion(backend) -> None:
    session = backend.compile(wb.samples.load("digits-cnn"), "cpu")
    ops = [n.op_type for n in session.graph.nodes]
    assert "BatchNormalization" not in ops and "Relu" not in ops
    convs = [n for n in session.graph.nodes if n.op_type == "Conv"]
    assert convs and all(n.activation == "Relu" and len(n.fused) == 2 for n in convs)


def test_a_folded_batch_norm_is_within_two_ulp_of_float64(backend) -> None:
    """The folded weight is made in float32 (no float64 copy of each weight): within two
    float32 roundings of the float64 product, and the session equals ORT's outputs."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    rng = np.random.default_rng(41)
    consts = {
        "w": rng.standard_normal((6, 3, 3, 3)).astype(np.float32),
        "scale": rng.standard_normal(6).astype(np.float32),
        "beta": rng.standard_normal(6).astype(np.float32),
        "mean": rng.standard_normal(6).astype(np.float32),
        "var": rng.uniform(0.1, 2.0, 6).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
        helper.make_node("BatchNormalization", ["y", "scale", "beta", "mean", "var"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bn",
        [helper.make_tensor_value_info("x", 1, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("z", 1, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = model_from_proto(helper.make_model(graph, ir_version=10), name="bn")
    session = backend.compile(model, "cpu", layout="nchw")
    conv = next(n for n in session.graph.nodes if n.op_type == "Conv")
    c = {k: v.astype(np.float64) for k, v in consts.items()}
    factor = c["scale"] / np.sqrt(c["var"] + 1e-5)
    exact = c["w"] * factor.reshape(-1, 1, 1, 1)
    folded = session.graph.consts[conv.inputs[1]]
    assert folded.dtype == np.float32
    np.testing.assert_allclose(folded, exact, rtol=2 * 2.0**-23, atol=0)
    inputs = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    assert_close(session.run(inputs)[0], ort_outputs(model, inputs)[0], scope="op")


def test_runner_is_a_zero_argument_callable(backend) -> None:
    model = wb.samples.load("digits-mlp")
    session = backend.compile(model, "cpu")
    assert isinstance(session, Session)
    inputs = model.example_inputs(2)
    run = session.runner(inputs)
    (out,) = run()
    np.testing.assert_allclose(out, session.run(inputs)[0])


def test_run_layers_one_entry_per_canonical_layer(backend) -> None:
    model = wb.samples.load("digits-cnn")
    timings = backend.compile(model, "cpu").run_layers(model.example_inputs(2), repeats=3)
    assert all(isinstance(t, LayerTiming) and len(t.samples_ms) == 3 for t in timings)
    names = [t.layer for t in timings]
    assert len(names) == len(set(names))
    assert set(names) <= {layer.name for layer in model.layers} | {"(layout)"}
    first = next(t for t in timings if t.layer != "(layout)")
    assert first.op_type == "Conv" and first.detail["nodes"] and len(first.detail["fused"]) == 2
    assert all(s > 0 for s in first.samples_ms)
    fused = [t for t in timings if t.detail.get("fused_into")]
    assert fused and all(t.samples_ms == (0.0, 0.0, 0.0) for t in fused)


def test_unsupported_ops_are_named(backend) -> None:
    x = np.ones((2, 3), np.float32)
    model = single_node_model("Einsum", {"x": x}, {"equation": "ij->ji"})
    support = backend.supports(model)
    assert not support.ok and "Einsum" in support.reasons[0]
    with pytest.raises(UnsupportedModelError, match="Einsum"):
        backend.compile(model, "cpu")


def test_supported_sample_models(backend) -> None:
    for name in SAMPLES:
        assert backend.supports(wb.samples.load(name)).ok


def test_devices_and_errors(backend) -> None:
    assert backend.devices() == ["cpu"]
    assert backend.availability().version == numba.__version__
    with pytest.raises(DeviceUnavailableError):
        backend.compile(wb.samples.load("digits-mlp"), "cuda:0")
    with pytest.raises(BackendOptionError, match="unknown numba option 'tile'"):
        backend.compile(wb.samples.load("digits-mlp"), "cpu", tile=3)


def test_gemm_kernels_agree() -> None:
    from workbench.backends.numba import cpu

    rng = np.random.default_rng(0)
    a = rng.standard_normal((70, 130), dtype=np.float32)
    b = rng.standard_normal((130, 90), dtype=np.float32)
    blas, tiled = np.empty((70, 90), np.float32), np.empty((70, 90), np.float32)
    cpu.gemm_blas(a, b, blas)
    for kernel in cpu.gemm_tiled:
        kernel(a, b, tiled)
        assert_close(tiled, a @ b)
    assert_close(blas, a @ b)


def test_split_gemm_kernels_agree_with_numpy() -> None:
    """Row blocks, column panels (padded last panel, fused bias and Relu) and batched
    items split over threads compute what one BLAS call does (float32: 1e-5 relative)."""
    from workbench.backends.numba import cpu

    rng = np.random.default_rng(1)
    a = rng.standard_normal((70, 130), dtype=np.float32)
    b = rng.standard_normal((130, 90), dtype=np.float32)
    rows = np.empty((70, 90), np.float32)
    cpu.gemm_split_rows(a, b, rows, 3)
    assert_close(rows, a @ b)
    width = 32  # 90 columns in 3 panels of 32, the last two columns zero padding
    padded = np.zeros((130, 96), np.float32)
    padded[:, :90] = b
    panels = np.ascontiguousarray(padded.reshape(130, 3, width).transpose(1, 0, 2))
    bias = rng.standard_normal(90, dtype=np.float32)
    panel_out = np.empty((70, 90), np.float32)
    cpu.gemm_panels(a, panels, np.empty((3, 70, width), np.float32), bias, cpu.ACT_RELU, panel_out)
    assert_close(panel_out, np.maximum(a @ b + bias, 0))
    items_a = rng.standard_normal((5, 9, 16), dtype=np.float32)
    items_b = rng.standard_normal((5, 16, 7), dtype=np.float32)
    items = np.full((5, 9, 7), -1.0, np.float32)
    cpu.bmm_rows_split(items_a, items_b, items, 8)
    assert_close(items[:, :8], items_a[:, :8] @ items_b)
    assert (items[:, 8] == -1).all()  # the spare row is left alone


@pytest.mark.parametrize(
    ("sample", "split_key"),
    [("digits-mlp", "panels"), ("digits-cnn", None), ("digits-transformer", None)],
)
def test_products_split_over_threads_match_one_thread(sample: str, split_key) -> None:
    """Splitting the big products over 2 threads (row blocks, column panels, batched
    items) gives the one-thread session's outputs, and the MLP's wide layer really
    takes the column-panel path."""
    m = wb.samples.load(sample)
    x = m.example_inputs(batch_size=32)
    one = wb.backend("numba").compile(m, "cpu", threads=1)
    two = wb.backend("numba").compile(m, "cpu", threads=2)
    for _ in range(2):  # the second run replays the bound steps
        assert_close(two.run(x)[0], one.run(x)[0])
    if split_key is not None:
        caches = [key for node in two.graph.nodes for key in node.cache]
        assert any(isinstance(key, tuple) and key[0] == split_key for key in caches)
    with pytest.raises(BackendOptionError, match="threads must be at least 1"):
        wb.backend("numba").compile(m, "cpu", threads=0)


@numba.njit(cache=False)
def _relu_kernel(x, out):
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(flat_in.size):
        flat_out[i] = max(flat_in[i], 0.0)


@numba.njit(cache=False)
def _wrong_relu(x, out):
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(flat_in.size):
        flat_out[i] = abs(flat_in[i])


def test_custom_kernel_is_checked_then_used(backend) -> None:
    model = wb.samples.load("digits-resnet")
    inputs = model.example_inputs(1)
    expected = backend.compile(model, "cpu").run(inputs)[0]
    calls = []

    def relu(x, out):
        calls.append(x.shape)
        _relu_kernel(x, out)

    backend.register_kernel("Relu", relu)
    try:
        session = backend.compile(model, "cpu")
        assert any(n.op_type == "Relu" for n in session.graph.nodes)  # not fused away
        assert_close(session.run(inputs)[0], expected, scope="model")
        assert len(calls) > 0
    finally:
        unregister_kernel(op_type="Relu")


def test_custom_kernel_that_disagrees_is_refused(backend) -> None:
    model = wb.samples.load("digits-resnet")
    register_kernel(_wrong_relu, op_type="Relu", device="cpu")
    try:
        with pytest.raises(BackendError, match="disagrees with the reference"):
            backend.compile(model, "cpu").run(model.example_inputs(1))
    finally:
        unregister_kernel(op_type="Relu", device="cpu")


def test_custom_kernel_for_one_node(backend) -> None:
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    model = single_node_model("Sigmoid", {"x": x})

    def halve(x, out):
        out[...] = x / 2

    register_kernel(halve, node="someone_else")
    try:
        (got,) = backend.compile(model, "cpu").run({"x": x})
        assert_close(got, 1 / (1 + np.exp(-x)))
    finally:
        unregister_kernel(node="someone_else")
    with pytest.raises(ValueError, match="view"):
        register_kernel(halve, op_type="Reshape")


def test_second_process_loads_kernels_from_the_disk_cache(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import workbench as wb
        from workbench.backends.numba import cpu
        m = wb.samples.load("digits-cnn")
        wb.backend("numba").compile(m, "cpu").run(m.example_inputs(2))
        kernels = [
            cpu.gemm_blas, cpu.bmm_rows, *cpu.im2col_nhwc, *cpu.winograd_input,
            *cpu.winograd_output, *cpu.pool2d_nhwc, *cpu.bias_act_rows,
        ]
        print(sum(sum(k.stats.cache_misses.values()) for k in kernels),
              sum(sum(k.stats.cache_hits.values()) for k in kernels))
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.split()
        for _ in range(2)
    ]
    (first_misses, _), (second_misses, second_hits) = [tuple(map(int, r)) for r in runs]
    assert first_misses > 0
    assert second_misses == 0 and second_hits > 0


def test_compile_seconds_count_the_plan_of_each_new_shape(backend, monkeypatch) -> None:
    """Numba loads (or compiles) its kernels when it plans a shape: that planning is
    compile time, measured per new shape, and the profile's compile_s includes it; the
    first inference is not in it (making a runner executes nothing)."""
    from workbench.backends.numba.executor import Executor
    from workbench.profiling.measure import compiled

    executed: list[object] = []
    execute = Executor.execute
    monkeypatch.setattr(Executor, "execute", lambda e, p: executed.append(p) or execute(e, p))
    model = wb.samples.load("digits-cnn")
    with compiled(model, "numba", "cpu") as run:
        session, before = run.session, run.compile_s
        assert session.graph_s > 0 and session.plan_s == 0
        replay = session.runner(model.example_inputs(2))
        planned = session.plan_s
        assert planned > 0 and run.compile_s == pytest.approx(before + planned)
        assert not executed  # the warm-up execution is the runner's first call
        replay()
        assert len(executed) == 1
        session.run(model.example_inputs(2))  # the same shapes: no new plan
        assert session.plan_s == planned
        session.run(model.example_inputs(3))
        assert session.plan_s > planned
        assert session.compile_s == pytest.approx(session.graph_s + session.plan_s)


def test_planning_loads_the_kernels_the_first_inference_runs(backend) -> None:
    """The plan asks Numba for its bound kernels' signatures: the first inference finds
    them loaded (`preload`), and gives ORT's outputs."""
    from workbench.backends.numba.preload import _kernel_calls

    model = wb.samples.load("digits-cnn")
    session = backend.compile(model, "cpu")
    inputs = model.example_inputs(4)
    session.runner(inputs)
    (plan,) = session._executor.plans
    calls = list(_kernel_calls(plan.thunks, set()))
    assert calls
    for kernel, args in calls:
        assert tuple(kernel.typeof_pyval(a) for a in args) in kernel.overloads
    assert_close(session.run(inputs)[0], ort_outputs(model, inputs)[0], scope="model")


@pytest.mark.parametrize(
    ("op", "x_shape", "y_shape"),
    [
        ("Add", (2, 3, 8), (2, 3, 8)),  # a residual: whole operands
        ("Div", (2, 3, 8), (8,)),  # a bias: a row repeated
        ("Sub", (2, 3, 8), (2, 3, 1)),  # a mean: a column repeated
        ("Max", (2, 3, 8), ()),  # a scalar (NaN kept, as np.maximum does)
        ("Mul", (2, 3, 8), (2, 1, 8)),  # a squeeze-and-excitation scale, NHWC
        ("Gelu", (2, 3, 8), None),
        ("HardSwish", (2, 3, 8), None),
    ],
)
def test_elementwise_ops_run_cached_loops_equal_to_their_ufuncs(op, x_shape, y_shape) -> None:
    """Contiguous operands, whole or repeated along axes, run an ``@njit`` loop cached on
    disk (a ufunc's loop is compiled by LLVM in every process), bit for bit the ufunc's."""
    from workbench.backends.numba import elementwise

    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    x.flat[0] = np.nan
    args = [x]
    if y_shape is not None:
        args.append(rng.standard_normal(y_shape).astype(np.float32))
    if op in elementwise.PARAMETRIC:
        args += [np.asarray(p, np.float32) for p in elementwise.parameters(op, {})]
    out = np.empty(x_shape, np.float32)
    run = elementwise.bind(op, args, out)
    assert run.func is elementwise._loop(op, "float32")
    run()
    with np.errstate(invalid="ignore"):  # the ufunc warns of the NaN (the loop does not)
        expected = elementwise.ufunc(op, np.float32)(*args)
    np.testing.assert_array_equal(out, expected)


def test_replayed_plans_read_each_runs_inputs(backend) -> None:
    """Steps are bound to fixed buffers once; every run must still see its own inputs."""
    model = wb.samples.load("digits-cnn")
    session = backend.compile(model, "cpu")
    rng = np.random.default_rng(3)
    batches = [rng.random((4, 1, 8, 8), dtype=np.float32) for _ in range(2)]
    for x in [*batches, batches[0]]:
        (expected,) = ort_outputs(model.to_onnx(), {"x": x})
        assert_close(session.run({"x": x})[0], expected, scope="model")


@pytest.mark.parametrize("trans", [{"transA": 1}, {"transB": 1}])
def test_gemm_transposes_activations_on_every_run(backend, trans: dict[str, int]) -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random((3, 3), dtype=np.float32), rng.random((3, 3), dtype=np.float32)
    session = backend.compile(single_node_model("Gemm", {"a": a, "b": b}, trans), "cpu")
    for scale in (1.0, 2.0):
        a2, b2 = a * scale, b + scale
        left = a2.T if "transA" in trans else a2
        right = b2.T if "transB" in trans else b2
        assert_close(session.run({"a": a2, "b": b2})[0], left @ right)


@pytest.mark.parametrize(
    ("op", "count", "fused"),
    [("Add", 2, True), ("Sum", 2, True), ("Sum", 3, False)],
    ids=["Add", "Sum of two (ShuffleNet's)", "Sum of three: Relu apart"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_residual_add_and_relu_run_as_one_fused_op(
    backend, dtype: type, op: str, count: int, fused: bool
) -> None:
    from onnx import helper

    from workbench.loaders.onnx import model_from_proto

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    names = ["a", "b", "c"][:count]
    nodes = [
        helper.make_node(op, names, ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info(n, elem, [2, 3, 4]) for n in names],
        [helper.make_tensor_value_info("y", elem, None)],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    session = backend.compile(model_from_proto(proto, name="residual"), "cpu")
    steps = [(n.op_type, n.activation) for n in session.graph.nodes]
    assert steps == ([(op, "Relu")] if fused else [(op, ""), ("Relu", "")])
    rng = np.random.default_rng(5)
    xs = {n: (rng.standard_normal((2, 3, 4)) * 4).astype(dtype) for n in names}
    expected = np.maximum(sum(xs.values()), 0)
    np.testing.assert_array_equal(session.run(xs)[0], expected)


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((2, 1, 3, 4), (3, 4, 5)), ((6, 4), (4, 5)), ((4,), (2, 4, 5))],
    ids=str,
)
def test_matmul_refreshes_broadcast_operands_on_every_run(backend, a_shape, b_shape) -> None:
    """Bound MatMuls copy broadcast operands each run, and never keep a stale copy."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    session = backend.compile(single_node_model("MatMul", {"a": a, "b": b}), "cpu")
    for scale in (1.0, -2.0, 0.5):
        a2, b2 = a * scale, b + scale
        assert_close(session.run({"a": a2, "b": b2})[0], np.matmul(a2, b2))


def test_layer_norm_reads_scale_and_bias_inputs_on_every_run(backend) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    scale, bias = np.ones(6, np.float32), np.zeros(6, np.float32)
    model = single_node_model("LayerNormalization", {"x": x, "scale": scale, "bias": bias})
    session = backend.compile(model, "cpu")
    normalised = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    for step in (1.0, 3.0):
        s, b = scale * step, bias + step
        feeds = {"x": x, "scale": s, "bias": b}
        assert_close(session.run(feeds)[0], normalised * s + b)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", TINY_CASES)
def test_tiny_ops_match_the_reference(backend, name: str, layout: str) -> None:
    model, inputs, expected = tiny_case(name)
    (got,) = backend.compile(model, "cpu", layout=layout).run(inputs)
    assert_close(got, expected, what=name)


def test_supports_lists_exactly_the_ops_with_kernels() -> None:
    """`supports` answers without importing Numba, from op lists that must match the tables
    (less the executor's own fused ops, which no ONNX file contains)."""
    from workbench.backends.numba import CPU_OPS, CUDA_OPS, cpu_ops, cuda_ops
    from workbench.backends.numba.embedding_bag_graph import FUSED_OP
    from workbench.backends.numba.qdq_fusion import FUSED_CONV
    from workbench.backends.numba.qdq_fusion import FUSED_OP as INT8_OP

    fused = {FUSED_OP, INT8_OP, FUSED_CONV}
    assert set(cpu_ops.make_kernels()) - fused == CPU_OPS
    assert not fused & CPU_OPS
    assert set(cuda_ops.make_kernels()) == CUDA_OPS


def test_float32_erf_and_gelu_are_vectorisable_and_within_stated_error() -> None:
    """float32 Erf/Gelu use a rational erf (no libm call): within 2e-7 of math.erf and
    5e-7 absolute for Gelu over [-8, 8]; NaN passes through; float64 stays libm's."""
    import math

    from workbench.backends.numba import elementwise

    x = np.linspace(-8, 8, 40001).astype(np.float32)
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    assert np.abs(elementwise.apply("Erf", [x], None) - exact).max() < 2e-7
    gelu = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    assert np.abs(elementwise.apply("Gelu", [x], None) - gelu).max() < 5e-7
    nan = elementwise.apply("Gelu", [np.array([np.nan, 0.0], np.float32)], None)
    assert np.isnan(nan[0]) and nan[1] == 0
    assert (elementwise.apply("Erf", [x.astype(np.float64)], None) == exact).all()


def test_nan_and_infinite_rows_give_nan_as_in_onnxruntime(backend) -> None:
    """IEEE division in the kernels: a Softmax over a row of NaN or of -inf is NaN (it
    raised ZeroDivisionError from inside the kernel, on the zoo's Inception v2)."""
    x = np.array([[np.nan] * 4, [1, 2, 3, 4], [-np.inf] * 4], np.float32)
    model = single_node_model("Softmax", {"x": x}, {"axis": 1})
    (got,) = backend.compile(model, "cpu").run({"x": x})
    assert_close(got, ort_outputs(model, {"x": x})[0])
    assert np.isnan(got[[0, 2]]).all()


@pytest.mark.parametrize("op", ["GatherElements", "ScatterElements"])
def test_an_index_out_of_range_is_a_clear_error_on_any_run(backend, op: str) -> None:
    """Indices are activations: the check holds on runs after the first, never writing
    or reading past the data."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    index = np.array([[0, 2], [1, -3]], np.int64)
    inputs = {"x": x, "i": index}
    extra = {"u": np.ones((2, 2), np.float32)} if op == "ScatterElements" else {}
    model = single_node_model(op, {**inputs, **extra}, {"axis": 1})
    session = backend.compile(model, "cpu")
    (got,) = session.run({**inputs, **extra})
    assert_close(got, ort_outputs(model, {**inputs, **extra})[0])
    with pytest.raises(BackendError, match=f"{op} .*out of range"):
        session.run({**inputs, "i": np.array([[0, 3], [1, 0]], np.int64), **extra})
