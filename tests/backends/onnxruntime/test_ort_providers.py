"""ONNX Runtime: optimisation levels, execution providers, node placement and TensorRT builds.

The CUDA and TensorRT paths run here through a fake build of onnxruntime: it reports
those providers as available and records what the session asked for, while a real CPU
session does the work (so every node lands on the CPU provider: a full fallback).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

import workbench as wb
from workbench.backends.base import LayerTiming
from workbench.backends.onnxruntime import OnnxRuntimeSession
from workbench.backends.onnxruntime.session import provider_chain
from workbench.backends.onnxruntime.trace import mark_fallbacks
from workbench.errors import BackendOptionError, DeviceUnavailableError

GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


class FakeBinding:
    """io_binding() of the fake: binds host arrays and runs the real session on them."""

    def __init__(self, session: FakeSession) -> None:
        self.session, self.inputs, self.devices = session, {}, []

    def bind_ortvalue_input(self, name: str, value: Any) -> None:
        self.inputs[name] = value.array
        self.devices.append(value.device)

    def bind_output(self, name: str, device: str, device_id: int) -> None:
        self.devices.append(device)

    def synchronize_outputs(self) -> None:
        pass


class FakeOrtValue:
    def __init__(self, array: np.ndarray, device: str) -> None:
        self.array, self.device = array, device

    @staticmethod
    def ortvalue_from_numpy(array: np.ndarray, device: str, device_id: int) -> FakeOrtValue:
        return FakeOrtValue(array, device)


class FakeSession:
    """An InferenceSession of the fake build: asks for GPU providers, runs on the CPU."""

    created: ClassVar[list[list[str]]] = []
    runs: ClassVar[list[tuple[int, ...]]] = []

    def __init__(self, data: Any, options: Any = None, providers: list[str] = ()) -> None:
        self.providers = list(providers)
        FakeSession.created.append(self.providers)
        self.real = REAL_SESSION(data, options, providers=["CPUExecutionProvider"])

    def get_providers(self) -> list[str]:
        return [p for p in self.providers if p in GPU_PROVIDERS]

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        FakeSession.runs.append(next(iter(feeds.values())).shape)
        return self.real.run(names, feeds)

    def io_binding(self) -> FakeBinding:
        return FakeBinding(self)

    def run_with_iobinding(self, binding: FakeBinding) -> None:
        self.run(None, binding.inputs)

    def get_outputs(self) -> Any:
        return self.real.get_outputs()

    def end_profiling(self) -> str:
        return self.real.end_profiling()


REAL_SESSION: Any = None


@pytest.fixture
def gpu_build(monkeypatch: pytest.MonkeyPatch) -> Any:
    """onnxruntime pretending to be a GPU build with TensorRT and CUDA."""
    global REAL_SESSION
    import onnxruntime as ort

    REAL_SESSION = ort.InferenceSession
    FakeSession.created, FakeSession.runs = [], []
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_PROVIDERS))
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.setattr(ort, "OrtValue", FakeOrtValue)
    return FakeSession


@pytest.fixture(scope="module")
def model() -> Any:
    return wb.samples.load("digits-cnn")


def test_optimization_levels_and_the_old_spelling(model: Any) -> None:
    backend = wb.backend("onnxruntime")
    x = model.example_inputs(2)
    outputs = {}
    for level in ("disabled", "basic", "extended", "all", "disable"):
        session = backend.compile(model, "cpu", optimization=level)
        outputs[level] = session.run(x)[0]
        assert session.options.optimization == ("disabled" if level == "disable" else level)
    np.testing.assert_allclose(outputs["disabled"], outputs["all"], rtol=1e-4, atol=1e-5)
    with pytest.raises(BackendOptionError, match="'disabled', 'basic', 'extended', 'all'"):
        backend.compile(model, "cpu", optimization="max")


def test_a_provider_missing_from_the_build_is_refused(model: Any) -> None:
    with pytest.raises(DeviceUnavailableError, match="not in this onnxruntime build"):
        wb.backend("onnxruntime").compile(model, "cpu", provider="NoSuchExecutionProvider")


def test_provider_chains_fall_back_to_cuda_then_cpu() -> None:
    assert provider_chain("TensorrtExecutionProvider", GPU_PROVIDERS) == GPU_PROVIDERS
    assert provider_chain("TensorrtExecutionProvider", GPU_PROVIDERS[::2]) == GPU_PROVIDERS[::2]
    assert provider_chain("CPUExecutionProvider", GPU_PROVIDERS) == ["CPUExecutionProvider"]


def test_tensorrt_engine_build_is_in_compile_not_in_timing(model: Any, gpu_build: Any) -> None:
    backend = wb.backend("onnxruntime")
    assert {"cuda:0", "tensorrt:0"} <= set(backend.devices())
    session = backend.compile(model, "tensorrt:0")
    assert gpu_build.created[-1] == GPU_PROVIDERS
    assert gpu_build.runs == [(1, 1, 8, 8)]  # the engine build run, at batch 1, in compile
    assert "TensorRT built its engine" in session.notes[0] and "for batch 1" in session.notes[0]
    runner = session.runner(model.example_inputs(4))
    assert gpu_build.runs[-1] == (4, 1, 8, 8) and "input shapes [(4, 1, 8, 8)]" in session.notes[1]
    before = len(gpu_build.runs)
    runner()
    runner()
    assert len(gpu_build.runs) == before + 2  # timed calls are inference only


def test_profile_on_tensorrt_reports_engine_build(model: Any, gpu_build: Any) -> None:
    p = wb.profile(model, "onnxruntime", "tensorrt:0", batch_size=1, layers=False, budget_s=0.1)
    assert p.compile_s is not None and p.compile_s > 0
    assert any("TensorRT built its engine" in note for note in p.notes)


def test_cuda_fallbacks_show_in_the_layer_table(model: Any, gpu_build: Any) -> None:
    session = wb.backend("onnxruntime").compile(model, "cuda:0")
    assert isinstance(session, OnnxRuntimeSession) and session.notes == []  # no engine built
    assert gpu_build.created[-1] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    timings = session.run_layers(model.example_inputs(2), repeats=2)
    ran = [t for t in timings if t.samples_ms and any(t.samples_ms)]
    assert ran and all(t.detail["provider"] == "CPUExecutionProvider" for t in ran)
    assert all(t.detail["fallback"] == "CPUExecutionProvider" for t in ran)
    assert "fallback from CUDAExecutionProvider" in ran[0].detail["note"]


def test_a_layer_on_its_own_provider_is_not_a_fallback() -> None:
    timings = [
        LayerTiming("a", "Conv", (1.0,), {"provider": "CUDAExecutionProvider"}),
        LayerTiming("b", "Shape", (0.1,), {"provider": "CPUExecutionProvider", "note": "x"}),
    ]
    a, b = mark_fallbacks(timings, "CUDAExecutionProvider")
    assert "fallback" not in a.detail
    assert b.detail["fallback"] == "CPUExecutionProvider"
    assert (
        b.detail["note"] == "x; ran on CPUExecutionProvider (fallback from CUDAExecutionProvider)"
    )


def test_provider_column_in_the_profile_table(model: Any) -> None:
    p = wb.profile(model, "onnxruntime", batch_size=2, layer_repeats=2, budget_s=0.1)
    ran = p.layers[p.layers["latency_ms"] > 0]
    assert set(ran["provider"].dropna()) == {"CPUExecutionProvider"}
    again = type(p).from_json(p.to_json())
    assert list(again.layers["provider"].fillna("")) == list(p.layers["provider"].fillna(""))
