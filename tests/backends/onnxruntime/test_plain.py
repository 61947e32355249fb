"""The one builder of ORT sessions (`plain`) and the session's public staging methods."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.backends.base import StagedSession
from workbench.backends.onnxruntime.plain import plain_session, run_plain

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def model() -> wb.Model:
    return wb.samples.load("digits-mlp")


def test_every_kind_of_graph_gives_the_backends_outputs(model: wb.Model, tmp_path: Path) -> None:
    x = model.example_inputs(3)
    want = wb.backend("onnxruntime").compile(model, "cpu").run(x)[0]
    exported = model.to_onnx()
    path = tmp_path / "m.onnx"
    path.write_bytes(exported.onnx_bytes)
    for graph in (model, exported.onnx_bytes, exported.proto, path):
        (got,) = run_plain(graph, x)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_the_options_given_are_the_sessions(model: wb.Model, tmp_path: Path) -> None:
    import onnxruntime as ort

    dump = tmp_path / "optimized.onnx"
    session = plain_session(
        model, optimization="basic", threads=1, optimized_model_filepath=str(dump)
    )
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert dump.is_file() and session.get_providers() == ["CPUExecutionProvider"]
    defaults = plain_session(model).get_session_options()  # ORT's own defaults
    assert defaults.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert defaults.intra_op_num_threads == 0


def test_intermediate_outputs_on_request(model: wb.Model) -> None:
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(model.to_onnx().proto)
    hidden = next(n.output[0] for n in proto.graph.node if n.op_type in ("Gemm", "MatMul"))
    proto.graph.output.append(onnx.ValueInfoProto(name=hidden))
    (value,) = run_plain(proto, model.example_inputs(2), [hidden], optimization="disabled")
    assert value.shape[0] == 2


def test_the_session_stages_once_and_runs_on_the_staged_feeds(model: wb.Model) -> None:
    session = wb.backend("onnxruntime").compile(model, "cpu")
    assert isinstance(session, StagedSession)
    x = model.example_inputs(2)
    feeds = session.stage(x)
    assert list(feeds) == [spec.name for spec in model.inputs]
    np.testing.assert_array_equal(session.run_staged(feeds)[0], session.run(x)[0])


def test_a_profiled_trace_is_deleted_after_use(model: wb.Model) -> None:
    session = wb.backend("onnxruntime").compile(model, "cpu")
    with session.profiled_trace(model.example_inputs(2), runs=2) as (trace, feeds):
        assert trace.is_file() and '"model_run"' in trace.read_text()
        assert set(feeds) == {spec.name for spec in model.inputs}
    assert not trace.parent.exists()
    assert session.session.get_session_options().enable_profiling is False


def test_only_the_onnxruntime_package_builds_inference_sessions() -> None:
    package = ROOT / "workbench"
    builders = sorted(
        str(path.relative_to(ROOT))
        for path in package.rglob("*.py")
        if re.search(r"InferenceSession\(", path.read_text())
        and not path.is_relative_to(package / "backends" / "onnxruntime")
    )
    assert builders == []


def test_spinning_off_is_the_sessions_option(model: wb.Model) -> None:
    entry = "session.intra_op.allow_spinning"
    quiet = wb.backend("onnxruntime").compile(model, "cpu", spinning=False).session
    assert quiet.get_session_options().get_session_config_entry(entry) == "0"
    default = wb.backend("onnxruntime").compile(model, "cpu").session.get_session_options()
    with pytest.raises(Exception, match="does not have"):  # unset: ORT's own default, spin
        default.get_session_config_entry(entry)
