"""The torch-compile backend: compiled once per module (compiling costs seconds on 2 cores)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.backends.torch.compiled import (
    EAGER_EQUIVALENT,
    RecompileError,
    TorchCompileBackend,
    TorchCompiledSession,
)
from workbench.errors import BackendOptionError
from workbench.testing.tolerances import assert_close
from workbench.tolerances import tolerance

pytestmark = pytest.mark.skipif(
    "cpu" not in wb.backend("torch-compile").devices(),
    reason="torch-compile has no CPU device here (no C++ compiler)",
)


@pytest.fixture(scope="module")
def model() -> Any:
    return wb.samples.load("digits-cnn")


@pytest.fixture(scope="module")
def session(model: Any) -> Any:
    s = wb.backend("torch-compile").compile(model, "cpu", batch_size=4, dynamic=False)
    yield s
    s.close()


def test_listed_by_devices() -> None:
    table = wb.devices()
    row = table[table["backend"] == "torch-compile"]
    assert len(row) == 1


def test_outputs_match_eager_and_compile_time_is_recorded(model: Any, session: Any) -> None:
    x = model.example_inputs(4)
    (ours,) = session.run(x)
    (eager,) = wb.backend("torch").compile(model, "cpu").run(x)
    assert ours.shape == eager.shape and ours.dtype == eager.dtype
    tol = tolerance(eager.dtype, "model")
    np.testing.assert_allclose(ours, eager, rtol=tol.rtol, atol=tol.atol)
    assert isinstance(session, TorchCompiledSession)
    assert session.compile_s > 0
    assert session.recompiles == []  # batch 4 was compiled ahead


def test_user_module_untouched(model: Any, session: Any) -> None:
    assert session.compiled._orig_mod is not model.module
    assert session.module is model.module
    assert not any(sub._forward_hooks for sub in model.module.modules())


def test_a_new_batch_size_recompiles_before_timing_and_is_reported(
    model: Any, session: Any
) -> None:
    runner = session.runner(model.example_inputs(3))
    assert [r.shapes[0][0] for r in session.recompiles] == [3]
    runner()  # compiled already: a timed call does not compile
    assert any("recompiled for input shapes [(3, 1, 8, 8)]" in n for n in session.notes)


def test_a_recompile_during_timed_calls_is_an_error(model: Any, session: Any) -> None:
    import torch

    tensors = [torch.from_numpy(a) for a in model.example_inputs(5).values()]
    with pytest.raises(RecompileError, match="during a timed call"):
        session._checked(tensors)


def test_per_layer_table_has_module_names_and_says_eager(model: Any, session: Any) -> None:
    timings = session.layer_methods()["default"](model.example_inputs(4), 3)
    names = {t.layer for t in timings}
    assert {"features.0", "classifier.1"} <= names
    assert all(t.detail["timed"] == "eager" for t in timings)
    assert EAGER_EQUIVALENT in session.notes


def test_options_are_typed(model: Any) -> None:
    backend = wb.backend("torch-compile")
    with pytest.raises(BackendOptionError, match="'default', 'reduce-overhead', 'max-autotune'"):
        backend.compile(model, "cpu", mode="fast")
    with pytest.raises(BackendOptionError, match="unknown torch-compile option 'fullgraph'"):
        backend.compile(model, "cpu", fullgraph=True)


def test_an_onnx_export_compiles_and_matches_onnxruntime_with_canonical_layers(
    model: Any,
) -> None:
    onnx_model = model.to_onnx()
    x = onnx_model.example_inputs(4)
    session = wb.backend("torch-compile").compile(onnx_model, "cpu", batch_size=4, dynamic=False)
    (ours,) = session.run(x)
    (reference,) = wb.backend("onnxruntime").compile(onnx_model, "cpu").run(x)
    assert_close(ours, reference, scope="model", what="digits-cnn (ONNX) on torch-compile")
    assert session.recompiles == []
    timings = session.layer_methods()["default"](x, 2)
    assert {"features.0", "classifier.1"} <= {t.layer for t in timings}
    assert all(t.detail["timed"] == "eager" for t in timings)


def test_without_a_cpp_compiler_there_is_no_cpu_device(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workbench.backends.torch.compiled.cpp_compiler", lambda: None)
    backend = TorchCompileBackend()
    assert "cpu" not in backend.devices()
    support = backend.supports(model)
    assert not support.ok and "C++ compiler" in support.reasons[0]


def test_gpus_are_listed_only_with_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    class Props:
        name, total_memory = "Fake H100", 80 * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr("workbench.backends.torch.compiled.has_triton", lambda: True)
    assert TorchCompileBackend().devices() == ["cpu", "cuda:0"]
    monkeypatch.setattr("workbench.backends.torch.compiled.has_triton", lambda: False)
    availability = TorchCompileBackend().availability()
    assert list(availability.details) == ["cpu"] and "Triton" in availability.reason


def test_reduce_overhead_on_a_gpu_marks_each_inference_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    steps: list[int] = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    session = TorchCompiledSession.__new__(TorchCompiledSession)
    session.compiled = lambda *t: t[0] * 2  # stands in for the CUDA-graph module
    session._cuda_graphs = True
    x = torch.ones(2)
    assert session.call(x).tolist() == [2.0, 2.0] and steps == [1]


def test_profile_reports_compile_time_and_eager_layers(model: Any) -> None:
    options = {"batch_size": 4, "dynamic": False}
    p = wb.profile(
        model, "torch-compile", batch_size=4, layer_repeats=2, budget_s=0.1, options=options
    )
    assert p.compile_s is not None and p.compile_s > 0
    assert EAGER_EQUIVALENT in p.notes
    assert not any("recompiled" in note for note in p.notes)  # batch 4 was compiled ahead
    assert {"features.0", "classifier.1"} <= set(p.layers["layer"])
