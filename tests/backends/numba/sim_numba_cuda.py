"""The numba-cuda backend in Numba's CUDA simulator (tiny shapes: every thread is Python).

``NUMBA_ENABLE_CUDASIM=1`` must be set before ``numba.cuda`` is first imported, so
these tests run in their own pytest process, started by ``test_numba_cuda.py``
(the file name keeps the main run from collecting them).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest
from numba import cuda
from numba_conformance import CUDA_EXPECTED_SKIPS, EXPECTED_SKIPS, OPS, Case, cases, run_case
from numba_helpers import TINY_CASES, single_node_model, tiny_case

import workbench as wb
from workbench.backends.base import Backend
from workbench.backends.numba import unregister_kernel
from workbench.errors import BackendError
from workbench.loaders.onnx import model_from_proto
from workbench.model import Model
from workbench.testing import toy_cnn
from workbench.testing.tolerances import assert_close

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
    reason="simulator tests run in a subprocess started by test_numba_cuda.py",
)

#: Conformance cases small enough for the simulator (elements in all inputs and outputs).
MAX_ELEMENTS = 400
SMALL_CASES = [
    c
    for c in cases()
    if sum(a.size for ins, outs in c.data_sets for a in (*ins, *outs)) <= MAX_ELEMENTS
]


@pytest.fixture(scope="module")
def backend() -> Backend:
    return wb.backend("numba-cuda")


def test_simulator_is_offered_and_labelled(backend) -> None:
    availability = backend.availability()
    assert availability.ok and backend.devices() == ["cuda:0"]
    assert "simulator" in availability.details["cuda:0"]


def test_every_op_has_a_simulator_case() -> None:
    """The size filter leaves each op a conformance case, or `TINY_CASES` gives it one."""
    covered = {c.op_type for c in SMALL_CASES} | {op for op, *_ in TINY_CASES.values()}
    assert not OPS - covered, f"ops no simulator test runs: {sorted(OPS - covered)}"


@pytest.mark.parametrize("case", SMALL_CASES, ids=[c.name for c in SMALL_CASES])
def test_conformance_cuda_simulator(case: Case) -> None:
    run_case(case, "numba-cuda", "cuda:0", {**EXPECTED_SKIPS, **CUDA_EXPECTED_SKIPS})


@pytest.mark.parametrize("implicit_conv", [False, True], ids=["gemm", "implicit-conv"])
def test_register_tiled_gemm_with_edge_tiles(implicit_conv: bool) -> None:
    from workbench.backends.numba import cuda as kernels

    rng = np.random.default_rng(0)
    config = kernels.LARGE
    if implicit_conv:  # a 1x1 convolution is a GEMM over pixels: 130 of them, 2 tiles
        x = rng.standard_normal((1, 9, 10, 13), dtype=np.float32)
        m, k, n = 3, 9, 130
        b = x
        geo = cuda.to_device(np.array([1, 1, 1, 1, 0, 0, 1, 1, 10, 13], np.int64))
        expected_b = x.reshape(9, 130)
    else:
        m, k, n = 130, 9, 3
        b = rng.standard_normal((1, k, n), dtype=np.float32)
        geo = cuda.to_device(np.zeros(1, np.int64))
        expected_b = b[0]
    a = rng.standard_normal((1, m, k), dtype=np.float32)
    bias = rng.standard_normal(m if implicit_conv else n, dtype=np.float32)
    out = cuda.device_array(m * n, np.float32)
    grid = ((n + config.bn - 1) // config.bn, (m + config.bm - 1) // config.bm, 1)
    rs, cs = (1, 0) if implicit_conv else (0, 1)
    kernel = kernels.gemm_kernel(config, implicit_conv)
    kernel[grid, config.threads](a, b, out, m, n, k, geo, bias, rs, cs, 2.0, 1.0, 1, 0)
    expected = 2.0 * a[0] @ expected_b + (bias[:, None] if implicit_conv else bias[None, :])
    assert_close(out.copy_to_host().reshape(m, n), np.maximum(expected, 0))


@pytest.fixture(scope="module")
def cnn(backend) -> tuple[Model, dict[str, np.ndarray], Any, list[np.ndarray]]:
    """toy_cnn compiled once (each simulated run takes seconds), with its first outputs."""
    model = toy_cnn()
    inputs = model.example_inputs(batch_size=1)
    session = backend.compile(model, "cuda:0")
    return model, inputs, session, session.run(inputs)


def test_torch_model_with_fusion_matches_cpu(cnn) -> None:
    model, inputs, session, outputs = cnn
    expected = wb.backend("numba").compile(model, "cpu").run(inputs)
    assert any(n.activation == "Relu" for n in session.graph.nodes)
    for ours, reference in zip(outputs, expected, strict=True):
        assert_close(ours, reference, scope="model")


def test_activations_stay_on_the_device(cnn, monkeypatch) -> None:
    model, inputs, session, outputs = cnn
    uploads, downloads = [], []
    array_type = type(cuda.device_array(1))
    real_upload = array_type.copy_to_device
    real_copy = array_type.copy_to_host

    def counted_upload(self: Any, *args: Any, **kwargs: Any) -> Any:
        uploads.append(1)
        return real_upload(self, *args, **kwargs)

    def counted_download(self: Any, *args: Any, **kwargs: Any) -> Any:
        downloads.append(1)
        return real_copy(self, *args, **kwargs)

    # inputs are copied into the plan's input buffers; nothing else crosses the bus
    monkeypatch.setattr(array_type, "copy_to_device", counted_upload)
    monkeypatch.setattr(array_type, "copy_to_host", counted_download)
    again = session.run(inputs)
    assert len(uploads) == len(model.inputs)
    assert len(downloads) == len(session.graph.outputs)
    np.testing.assert_array_equal(again[0], outputs[0])


def test_run_layers_uses_events(cnn) -> None:
    model, inputs, session, _ = cnn
    timings = session.run_layers(inputs, repeats=1)
    assert timings and all(len(t.samples_ms) == 1 for t in timings)
    assert {layer.name for layer in model.layers if layer.params} <= {t.layer for t in timings}


@cuda.jit
def _scaled_sigmoid(x, out, factor):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = factor / (1.0 + math.exp(-x[i]))


@pytest.mark.parametrize("factor", [1.0, 2.0], ids=["right", "wrong"])
def test_custom_cuda_kernel_checked(backend, factor: float) -> None:
    x = np.linspace(-2, 2, 8, dtype=np.float32)
    model = single_node_model("Sigmoid", {"x": x})

    def launch(x, out):
        _scaled_sigmoid[1, 32](x, out, factor)

    backend.register_kernel("Sigmoid", launch)
    try:
        session = backend.compile(model, "cuda:0")
        if factor == 1.0:
            assert_close(session.run({"x": x})[0], 1 / (1 + np.exp(-x)))
        else:
            with pytest.raises(BackendError, match="disagrees"):
                session.run({"x": x})
    finally:
        unregister_kernel(op_type="Sigmoid", device="cuda")


def test_fused_epilogues_match_onnxruntime(backend) -> None:
    """MatMul + bias + Relu and a residual Add + Relu, each fused into one kernel."""
    from numba_helpers import ort_outputs
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 4), dtype=np.float32)
    bias = rng.standard_normal(4, dtype=np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["biased"]),
        helper.make_node("Relu", ["biased"], ["act"]),
        helper.make_node("Add", ["act", "r"], ["summed"]),
        helper.make_node("Relu", ["summed"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fused",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    model = model_from_proto(proto, name="fused")
    session = backend.compile(model, "cuda:0")
    assert [(n.op_type, n.activation) for n in session.graph.nodes] == [
        ("MatMul", "Relu"),
        ("Add", "Relu"),
    ]
    inputs = {
        "x": rng.standard_normal((2, 3), dtype=np.float32),
        "r": rng.standard_normal((2, 4), dtype=np.float32),
    }
    assert_close(session.run(inputs)[0], ort_outputs(model, inputs)[0])


@pytest.mark.parametrize("name", TINY_CASES)
def test_tiny_ops_match_the_reference(backend, name: str) -> None:
    model, inputs, expected = tiny_case(name)
    (got,) = backend.compile(model, "cuda:0").run(inputs)
    assert_close(got, expected, what=name)


def test_classic_cnn_ops_in_one_graph_match_onnxruntime(backend) -> None:
    """LRN, Pad, an inception module and the classifier, launched as they are on a GPU."""
    from classic_cnns import lrn_block
    from numba_helpers import ort_outputs

    model = lrn_block()
    inputs = model.example_inputs(batch_size=1)
    (got,) = backend.compile(model, "cuda:0").run(inputs)
    assert_close(got, ort_outputs(model, inputs)[0], scope="model")


def test_profile_in_the_simulator_times_with_the_wall_clock(backend) -> None:
    """torch here has no CUDA, so CUDA events cannot time the simulator: the timer falls
    back to the wall clock around the runner, which synchronises the device itself."""
    model, inputs, _ = tiny_case(next(iter(TINY_CASES)))
    p = wb.profile(model, "numba-cuda", "cuda:0", inputs=inputs, layers=False, budget_s=0.05)
    assert p.device == "cuda:0" and p.latency.n >= 1 and p.latency.median > 0
