"""Memory truth: the model's own memory per backend, the estimate, and the process's RSS apart."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.backends.base import MemoryReport, memory_of
from workbench.backends.onnxruntime.memory import arena_report
from workbench.backends.torch.memory import cuda_memory
from workbench.profiling.memory import (
    LAYER_TOLERANCE,
    RssSampler,
    activation_agreement,
    estimate_memory,
    measure_memory,
    process_rss,
    upgrade_memory,
)
from workbench.profiling.profile import Profile

BACKENDS = ["torch", "onnxruntime", "numba"]


def test_sampler_sees_a_transient_allocation() -> None:
    with RssSampler(interval_s=0.0005) as rss:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched so it is resident
        block[::512] += 1
        del block
    assert rss.peak_bytes - rss.before_bytes > 32 * 2**20


class _Bare:
    """A plugin session written before ``memory``: runs, measures nothing itself."""

    device = "cpu"
    backend = "bare"

    def __init__(self, fail: bool = False, model: object = None) -> None:
        self.fail = fail
        self.model = model

    def run(self, inputs: object) -> list[np.ndarray]:
        if self.fail:
            raise RuntimeError("boom")
        return []


def test_a_session_without_memory_says_why_and_a_failing_run_is_reported() -> None:
    report = memory_of(_Bare(), {})
    assert not report.measured and report.peak_bytes is None and "'bare'" in report.reason
    assert "boom" in process_rss(_Bare(fail=True), {}).process_rss_error
    out = measure_memory(_Bare(model=wb.samples.load("digits-mlp")), {"x": np.zeros((2, 64))})
    assert "does not measure" in out.model_memory_unavailable
    assert out.model_peak_bytes is None and out.process_rss_bytes > 0


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKENDS)
def test_each_backend_measures_the_model_not_the_process(backend: str) -> None:
    model = wb.samples.load("digits-cnn")
    session = wb.backend(backend).compile(model, "cpu")
    try:
        out = measure_memory(session, model.example_inputs(32))
    finally:
        session.close()
    assert out.model_peak_source and out.model_activation_peak_bytes > 0
    assert out.model_peak_bytes == (
        out.model_weights_bytes + out.model_input_bytes + out.model_activation_peak_bytes
    )
    assert out.model_input_bytes == 32 * 64 * 4
    # the model is a few MiB at most; the process (Python, torch, ORT, numba) is far more
    assert out.model_peak_bytes < 16 * 2**20 < out.process_rss_bytes
    assert out.estimate_weights_bytes == pytest.approx(265_896, rel=0.01)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("sample", ["digits-cnn", "digits-mlp"])
def test_measured_peak_is_near_the_liveness_estimate(backend: str, sample: str) -> None:
    # allocator granularity and kernel temporaries put measurements within 2x of the estimate
    model = wb.samples.load(sample)
    session = wb.backend(backend).compile(model, "cpu")
    out = measure_memory(session, model.example_inputs(32))
    assert 0.5 <= out.model_peak_bytes / out.estimate_peak_bytes <= 2.0


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("sample", ["digits-cnn", "digits-mlp"])
def test_per_layer_activation_memory_agrees_with_the_cost_model(backend: str, sample: str) -> None:
    p = wb.profile(wb.samples.load(sample), backend, batch_size=32, budget_s=0.05, layer_repeats=1)
    table = activation_agreement(p)
    allocating = table[table["within_tolerance"].notna()]
    assert len(allocating) >= 3  # convolutions/linears and the layers after them
    assert allocating["within_tolerance"].all(), table.to_string()
    assert (abs(allocating["ratio"] - 1) <= LAYER_TOLERANCE).all()


def test_torch_per_layer_memory_is_each_modules_output() -> None:
    model = wb.samples.load("digits-cnn")
    report = memory_of(wb.backend("torch").compile(model, "cpu"), model.example_inputs(32))
    layers = report.by_layer_bytes
    assert layers["features.0"] == 32 * 32 * 8 * 8 * 4  # 32 channels of 8x8, fp32
    assert layers["features.3"] == 32 * 64 * 8 * 8 * 4
    assert layers["classifier.0"] == 0  # Flatten is a view
    params = sum(layer.params_bytes for layer in model.layers)
    assert report.weights_bytes == params + 3 * 8  # + BatchNorm's num_batches_tracked buffers


class _FakeCuda:
    """``torch.cuda``'s allocator counters, for a run that allocates 3000 B at its peak."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.allocated = 1000  # weights and inputs, already on the device

    def synchronize(self, device: str) -> None:
        self.calls.append(f"synchronize {device}")

    def reset_peak_memory_stats(self, device: str) -> None:
        self.calls.append("reset")

    def memory_allocated(self, device: str) -> int:
        return self.allocated

    def max_memory_allocated(self, device: str) -> int:
        return 4000

    def max_memory_reserved(self, device: str) -> int:
        return 8192


def test_cuda_peak_is_the_allocators_peak_after_a_reset() -> None:
    cuda = _FakeCuda()
    ran: list[bool] = []
    report = cuda_memory(cuda, "cuda:1", lambda: ran.append(True), 600, 400)
    assert ran and cuda.calls[:2] == ["synchronize cuda:1", "reset"]
    assert report.activation_peak_bytes == 3000 and report.reserved_bytes == 8192
    assert report.peak_bytes == 4000  # weights + inputs + what the run added
    assert "max_memory_allocated" in report.source


def _node(ts: int, in_use: int, held: int = 4096) -> dict[str, object]:
    args = {"mem_bytes_in_use": str(in_use), "mem_arena_held": str(held)}
    return {"cat": "Node", "name": "n_kernel_time", "ts": ts, "dur": 1, "args": args}


def test_ort_arena_report_reads_the_last_run_above_its_baseline() -> None:
    events = [
        {"cat": "Session", "name": "model_run", "ts": 10, "dur": 50},
        _node(11, 900),
        _node(20, 300),  # the first run ends holding 300 B
        {"cat": "Session", "name": "model_run", "ts": 100, "dur": 50},
        _node(101, 1300, held=8192),
        _node(110, 700),
    ]
    report = arena_report({"traceEvents": events})
    assert report.activation_peak_bytes == 1000 and report.reserved_bytes == 8192
    missing = arena_report([{"cat": "Node", "name": "n_kernel_time", "ts": 1, "args": {}}])
    assert not missing.measured and "no allocator statistics" in missing.reason


def test_ort_on_another_provider_is_unavailable_not_guessed() -> None:
    from workbench.backends.onnxruntime.memory import onnxruntime_memory

    class _Gpu:
        provider = "CUDAExecutionProvider"

    report = onnxruntime_memory(_Gpu(), {})  # type: ignore[arg-type]
    assert not report.measured and "CUDAExecutionProvider" in report.reason


def test_estimate_frees_values_after_their_last_reader(tmp_path) -> None:
    # x -> a -> b -> r (view of b) -> c: a dies when b is made, b lives on through r
    def value(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 256])

    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r1"),
        helper.make_node("Relu", ["a"], ["b"], name="r2"),
        helper.make_node("Reshape", ["b", "shape"], ["r"], name="view"),
        helper.make_node("Relu", ["r"], ["c"], name="r3"),
    ]
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 256])
    graph = helper.make_graph(nodes, "g", [value("x")], [value("c")], [shape])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "chain.onnx"
    onnx.save(proto, path)
    model = wb.load(path)
    out = estimate_memory(model.to_onnx().proto, {"x": np.zeros((1, 256), np.float32)})
    # peak: a and b together (1 KiB each); the Reshape allocates nothing
    assert out.estimate_activation_peak_bytes == 2 * 1024
    assert out.estimate_weights_bytes == 16 and out.estimate_input_bytes == 1024
    assert out.estimate_peak_bytes == 16 + 1024 + 2048


def test_old_profiles_load_with_their_rss_labelled_as_the_process() -> None:
    p = wb.profile(wb.samples.load("digits-mlp"), "onnxruntime", budget_s=0.05, layer_repeats=1)
    data = json.loads(p.to_json())
    data["memory"] = {"peak_bytes": 450 * 2**20, "rss_before_bytes": 400 * 2**20}
    old = Profile.from_json(json.dumps(data))
    assert old.memory.process_rss_bytes == 450 * 2**20 and "peak_bytes" not in old.memory.extra
    assert "peak_bytes" not in json.loads(old.to_json())["memory"]
    assert old.memory.process_rss_before_bytes == 400 * 2**20
    summary = old.summary(top=0)
    assert "process RSS (not the model): 450 MiB" in summary
    assert "model peak: unavailable (not measured" in summary
    assert upgrade_memory(None) == {}


def test_summary_and_html_show_the_model_first_and_label_the_rss() -> None:
    p = wb.profile(wb.samples.load("digits-mlp"), "torch", budget_s=0.05, layer_repeats=1)
    summary = p.summary(top=0)
    model_line = next(line for line in summary.splitlines() if "model peak:" in line)
    assert "MiB" in model_line and "torch.profiler" in model_line
    assert summary.index("model peak") < summary.index("process RSS (not the model)")
    assert "estimated peak" in summary
    assert "process RSS (not the model)" in p._repr_html_()
    assert p.headline()["model_peak_bytes"] == p.memory.model_peak_bytes


def test_memory_report_peak_is_none_when_unmeasured() -> None:
    assert MemoryReport.unavailable("no counters").peak_bytes is None
    report = MemoryReport("x", activation_peak_bytes=5, weights_bytes=None, input_bytes=2)
    assert report.peak_bytes == 7
