"""Importers: ORT profiling JSON and torch.profiler traces produced outside workbench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import workbench as wb
from workbench.profiling.layers import UNATTRIBUTED
from workbench.testing import toy_cnn


@pytest.fixture(scope="module")
def ort_trace(tmp_path_factory):
    """A trace written by a plain onnxruntime session, as a user would produce it."""
    import onnxruntime as ort

    model = toy_cnn()
    folder = tmp_path_factory.mktemp("ort")
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(folder / "user")
    session = ort.InferenceSession(model.to_onnx().onnx_bytes, opts, ["CPUExecutionProvider"])
    x = model.example_inputs(6)
    for _ in range(5):
        session.run(None, x)
    return model, session.end_profiling()


def test_onnxruntime_trace_with_the_model_maps_to_canonical_layers(ort_trace) -> None:
    model, path = ort_trace
    p = wb.Profile.from_onnxruntime_trace(path, model=model)
    table = p.layers.set_index("layer")
    assert p.latency.n == 5 and p.batch_size == 6 and p.backend == "onnxruntime"
    assert table.loc["features.0", "latency_ms"] > 0
    assert table.loc["features.1", "fused_into"] == "features.0"
    assert table.loc["fc", "latency_ms"] > 0
    # independently of the importer: the trace's own kernel durations, per run
    events = json.loads(Path(path).read_text())
    kernel_ms = sum(e["dur"] for e in events if e.get("name", "").endswith("_kernel_time")) / 1e3
    rows = table.drop(index=UNATTRIBUTED)["latency_ms"].sum()
    assert rows == pytest.approx(kernel_ms / 5, rel=0.5)
    assert "imported" in p.layer_method and any("instrumented" in n for n in p.notes)
    again = wb.Profile.from_json(p.to_json())
    assert list(again.layers["layer"]) == list(p.layers["layer"])


def test_onnxruntime_trace_without_the_model_uses_kernel_names(ort_trace) -> None:
    _, path = ort_trace
    p = wb.Profile.from_onnxruntime_trace(path)
    assert len(p.layers) > 2 and (p.layers["latency_ms"].iloc[:-1] >= 0).all()
    assert any("no model given" in n for n in p.notes)
    samples = p.layers.set_index("layer")["samples"].drop(UNATTRIBUTED)
    assert (samples == 5).all()


def test_torch_trace_with_record_function_ranges(tmp_path) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    module = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8))
    x = torch.rand(32, 64)
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode():
        for _ in range(4):
            with record_function("encoder"):
                h = module[1](module[0](x))
                with record_function("head"):
                    module[2](h)
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    p = wb.Profile.from_torch_trace(path)
    table = p.layers.set_index("layer")
    assert {"encoder", "head"} <= set(table.index)
    assert table.loc["encoder", "samples"] == 4 and table.loc["head", "latency_ms"] > 0
    # nested ranges count their own time only, so the rows add up to the traced time
    assert p.latency.median == pytest.approx(
        table.loc["encoder", "latency_ms"] + table.loc["head", "latency_ms"], rel=0.5
    )


def test_torch_trace_with_modules_or_only_ops(tmp_path) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x = torch.rand(4, 8)
    for stack in (True, False):
        with profile(activities=[ProfilerActivity.CPU], with_stack=stack) as prof:
            module(x)
            module(x)
        path = tmp_path / f"trace{stack}.json"
        prof.export_chrome_trace(str(path))
        p = wb.Profile.from_torch_trace(path)
        layers = set(p.layers["layer"])
        if stack:
            assert {"Linear_0", "Linear_1", "ReLU_0"} <= layers
            assert p.layers.set_index("layer").loc["Linear_0", "op_type"] == "Linear"
        else:
            assert "aten::linear" in layers
            assert any("per aten op" in n for n in p.notes)


def test_files_that_are_not_traces(tmp_path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"name": "a", "ph": "X", "ts": 0, "dur": 1, "cat": "other"}]))
    with pytest.raises(ValueError, match="no ONNX Runtime node events"):
        wb.Profile.from_onnxruntime_trace(path)
    path.write_text(json.dumps({"traceEvents": []}))
    with pytest.raises(ValueError, match=r"no torch\.profiler"):
        wb.Profile.from_torch_trace(path)
