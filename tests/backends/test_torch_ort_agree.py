"""The torch and onnxruntime backends agree, and the registry behaves."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.backends.base import Backend, Session, register
from workbench.errors import DeviceUnavailableError, UnknownBackendError, UnsupportedModelError
from workbench.testing import FakeBackend, toy_cnn, toy_mlp

# fp32 on two runtimes: reduction order differs, so allow a few ulps of the output scale
RTOL, ATOL = 1e-5, 1e-5


@pytest.mark.parametrize("build", [toy_mlp, toy_cnn], ids=["mlp", "cnn"])
def test_torch_and_onnxruntime_outputs_agree(build) -> None:
    model = build()
    x = model.example_inputs(batch_size=5)
    torch_out = wb.backend("torch").compile(model, "cpu").run(x)
    ort_out = wb.backend("onnxruntime").compile(model, "cpu").run(x)
    assert torch_out[0].shape == ort_out[0].shape == (5, *model.outputs[0].shape[1:])
    np.testing.assert_allclose(torch_out[0], ort_out[0], rtol=RTOL, atol=ATOL)


def test_runner_runs_the_same_computation() -> None:
    model = toy_mlp()
    session = wb.backend("onnxruntime").compile(model, "cpu", threads=1, optimization="basic")
    x = model.example_inputs(3)
    expected = session.run(x)[0]
    got = session.runner(x)()[0]
    np.testing.assert_array_equal(expected, got)


def test_unknown_backend_lists_known_names() -> None:
    with pytest.raises(UnknownBackendError, match="onnxruntime"):
        wb.backend("tensorflow")


def test_absent_device_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailableError, match=r"available: cpu|no usable device|cuda"):
        wb.backend("torch").compile(toy_mlp(), "cuda:7")
    with pytest.raises(DeviceUnavailableError):
        wb.backend("onnxruntime").compile(toy_mlp(), "tpu")


def test_torch_backend_runs_onnx_models_and_refuses_ops_it_lacks() -> None:
    onnx_model = toy_mlp().to_onnx()
    x = onnx_model.example_inputs(3)
    (ours,) = wb.backend("torch").compile(onnx_model).run(x)
    (reference,) = wb.backend("onnxruntime").compile(onnx_model, "cpu").run(x)
    np.testing.assert_allclose(ours, reference, rtol=RTOL, atol=ATOL)
    quantized = wb.quantize(toy_mlp(), "int8-dynamic")
    support = wb.backend("torch").supports(quantized)
    assert not support and "ONNX model with op(s)" in support.reasons[0]
    assert "MatMulInteger" in support.reasons[0]
    with pytest.raises(UnsupportedModelError, match="MatMulInteger"):
        wb.backend("torch").compile(quantized)


def test_backends_satisfy_the_protocols() -> None:
    for name in ("torch", "onnxruntime"):
        backend = wb.backend(name)
        assert isinstance(backend, Backend)
        session = backend.compile(toy_mlp(), "cpu")
        assert isinstance(session, Session)
        session.close()


def test_registered_plugin_profiles_like_a_builtin() -> None:
    register("fake-test")(FakeBackend)
    assert "fake-test" in wb.backend_names()
    table = wb.devices()
    assert table[(table.backend == "fake-test")].available.all()
    result = wb.profile(toy_mlp(), backend="fake-test", batch_size=2, layers=False, budget_s=0.05)
    assert result.backend == "fake-test" and result.latency.n >= 10


@pytest.mark.parametrize("name", wb.samples.names("digits"))
def test_backends_agree_on_every_sample(name: str) -> None:
    model = wb.samples.load(name)
    inputs, _ = next(iter(wb.samples.dataset("digits", batch_size=16)))
    torch_out = wb.backend("torch").compile(model, "cpu").run(inputs)[0]
    ort_out = wb.backend("onnxruntime").compile(model, "cpu").run(inputs)[0]
    assert torch_out.shape == ort_out.shape == (16, 10)
    np.testing.assert_allclose(torch_out, ort_out, rtol=RTOL, atol=5e-5)
    assert (torch_out.argmax(1) == ort_out.argmax(1)).all()
