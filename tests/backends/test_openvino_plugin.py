"""The OpenVINO plugin (extensions/workbench-openvino) through the public API and entry point."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.errors import BackendOptionError, DeviceUnavailableError
from workbench.testing.tolerances import assert_close

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("wb_openvino") is None or importlib.util.find_spec("openvino") is None,
    reason="pip install -e extensions/workbench-openvino (scripts/setup.sh does)",
)


@pytest.fixture(scope="module")
def digits() -> wb.Model:
    return wb.samples.load("digits-cnn")


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory: pytest.TempPathFactory) -> wb.Model:
    from workbench.testing.foreign import foreign_resnet50

    return wb.load(foreign_resnet50(tmp_path_factory.mktemp("r50") / "resnet50.onnx"))


def _ort(model: wb.Model, x: dict[str, np.ndarray]) -> list[np.ndarray]:
    return wb.backend("onnxruntime").compile(model, "cpu").run(x)


def test_devices_lists_openvino_from_the_entry_point() -> None:
    table = wb.devices()
    rows = table[table["backend"] == "openvino"]
    assert list(rows["device"]) == wb.backend("openvino").devices()
    assert "cpu" in set(rows["device"]) and rows["available"].all()


def test_device_names_follow_workbench_spelling() -> None:
    from wb_openvino import device_name

    assert [device_name(d) for d in ("CPU", "GPU", "GPU.1", "NPU")] == [
        "cpu",
        "gpu:0",
        "gpu:1",
        "npu",
    ]


@pytest.mark.parametrize(
    "options, word",
    [({"streams": 2}, "unknown openvino option 'streams'"), ({"hint": "fast"}, "hint='fast'")],
    ids=["unknown", "bad-hint"],
)
def test_bad_options_fail_like_every_backend(digits: wb.Model, options: dict, word: str) -> None:
    with pytest.raises(BackendOptionError, match="known options: hint"):
        wb.backend("openvino").compile(digits, "cpu", **options)
    with pytest.raises(BackendOptionError) as caught:
        wb.backend("openvino").compile(digits, "cpu", **options)
    assert word in str(caught.value)


def test_a_missing_device_is_refused(digits: wb.Model) -> None:
    with pytest.raises(DeviceUnavailableError, match="available: "):
        wb.backend("openvino").compile(digits, "gpu:7")


def test_a_precision_the_device_lacks_is_refused(digits: wb.Model) -> None:
    from wb_openvino import _CAPABILITY

    backend = wb.backend("openvino")
    offered = backend._core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    missing = [p for p, cap in _CAPABILITY.items() if cap not in offered]
    if not missing:
        pytest.skip("this CPU offers every precision")
    with pytest.raises(BackendOptionError, match=f"no {missing[0]} inference"):
        backend.compile(digits, "cpu", precision=missing[0])


@pytest.mark.parametrize("hint", ["latency", "throughput"])
def test_digits_cnn_matches_onnxruntime(digits: wb.Model, hint: str) -> None:
    x = digits.example_inputs(batch_size=8)
    session = wb.backend("openvino").compile(digits, "cpu", hint=hint, threads=1)
    (ours,) = session.run(x)
    (reference,) = _ort(digits, x)
    assert_close(ours, reference, scope="model", what=f"openvino {hint}")
    session.runner(x)()  # the timed callable runs on the staged inputs


def test_per_layer_table_uses_canonical_names_and_shows_fusion(digits: wb.Model) -> None:
    timings = (
        wb.backend("openvino")
        .compile(digits, "cpu")
        .run_layers(digits.example_inputs(batch_size=4), repeats=3)
    )
    by_layer = {t.layer: t for t in timings}
    canonical = {layer.name for layer in digits.to_onnx().layers}  # the export's (shape) too
    assert set(by_layer) - {"(layout)"} <= canonical
    conv = by_layer["features.0"]
    assert len(conv.samples_ms) == 3 and min(conv.samples_ms) > 0
    assert conv.detail["fused_from"] == ["features.1", "features.2"]  # BatchNorm and ReLU
    assert by_layer["features.1"].detail["fused_into"] == "features.0"
    assert by_layer["classifier.1"].samples_ms and by_layer["classifier.1"].op_type == "Gemm"


def test_profile_through_the_public_api(digits: wb.Model) -> None:
    p = wb.profile(digits, backend="openvino", batch_size=8, budget_s=0.2, layer_repeats=3)
    assert p.backend == "openvino" and p.latency.n > 0
    executed = p.layers[p.layers["latency_ms"] > 0]
    assert {"features.0", "features.3", "features.7", "classifier.1"} <= set(executed["layer"])


def test_foreign_resnet50_matches_onnxruntime_per_layer(resnet50: wb.Model) -> None:
    x = resnet50.example_inputs(batch_size=2)
    session = wb.backend("openvino").compile(resnet50, "cpu")
    (ours,) = session.run(x)
    (reference,) = _ort(resnet50, x)
    assert ours.shape == (2, 1000)
    assert_close(ours, reference, scope="model", what="resnet50")
    timings = {t.layer: t for t in session.run_layers(x, repeats=1)}
    names = {layer.name for layer in resnet50.layers}
    assert set(timings) - {"(layout)"} <= names  # the file's own node names
    convs = [layer.name for layer in resnet50.layers if layer.op_type == "Conv"]
    assert len(convs) == 53 and all(timings[c].samples_ms[0] > 0 for c in convs)
    norms = [layer.name for layer in resnet50.layers if layer.op_type == "BatchNormalization"]
    assert all(timings[n].detail.get("fused_into") in convs for n in norms)


def test_int8_model_runs_int8_kernels(digits: wb.Model) -> None:
    q = wb.quantize(digits, "int8-static", data=wb.samples.dataset("digits"))
    x = digits.example_inputs(batch_size=8)
    session = wb.backend("openvino").compile(q, "cpu")
    (ours,) = session.run(x)
    # the QDQ graph as the spec words it (ORT with its optimisations off): ORT's fused u8s8
    # kernels on a CPU with AVX2 but no VNNI saturate int16 pair sums (logits 1.6 off)
    (reference,) = wb.backend("onnxruntime").compile(q, "cpu", optimization="disabled").run(x)
    # both run the same quantized graph; rounding at a requantisation may differ by a step
    np.testing.assert_allclose(ours, reference, atol=0.02 * np.abs(reference).max())
    timings = {t.layer: t for t in session.run_layers(x, repeats=2)}
    convs = [layer.name for layer in q.layers if layer.op_type == "Conv"]
    assert convs and all("I8" in timings[c].detail["provider"] for c in convs)


def test_supports_names_the_ops_openvino_cannot_convert(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Foo", ["x"], ["y"], domain="custom.ops")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("custom.ops", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), tmp_path / "foo.onnx")
    support = wb.backend("openvino").supports(wb.load(tmp_path / "foo.onnx"))
    assert not support.ok
    assert "custom.ops.Foo" in support.reasons[0]


def test_the_backend_imports_openvino_without_its_telemetry_sending_tools() -> None:
    """``import openvino`` imports the conversion tools, whose import sends a usage event
    from a forked process; the backend runs without them, and they load when asked for."""
    import subprocess
    import sys

    script = (
        "import os, threading, sys\n"
        "forks = []\n"
        "os.register_at_fork(before=lambda: forks.append(threading.current_thread().name))\n"
        "import workbench as wb\n"
        "m = wb.samples.load('digits-mlp')\n"
        "assert wb.backend('openvino').availability().ok\n"
        "wb.backend('openvino').compile(m, 'cpu').run(m.example_inputs(2))\n"
        "assert 'openvino.tools.ovc' not in sys.modules and forks == [], forks\n"
        "import openvino\n"
        "assert callable(openvino.convert_model)  # loaded on demand, as OpenVINO does\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
