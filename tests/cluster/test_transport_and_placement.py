"""What travels to workers (bytes, not code) and where points may run; no cluster needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import workbench as wb
from workbench.cluster.placement import device_resource, plan
from workbench.cluster.transport import (
    ModelFile,
    pack_metric,
    pack_model,
    pack_reference,
    pack_spec,
    unpack_model,
    unpack_reference,
)
from workbench.errors import InputError
from workbench.evaluation.metrics import Metric, get_metric
from workbench.optimize.quantize import Int8Dynamic


def test_a_sample_travels_as_its_name_and_weights_and_comes_back_equal() -> None:
    model = wb.samples.load("digits-mlp")
    package = pack_model(model)
    assert package.kind == "sample" and isinstance(package.payload, bytes)
    assert unpack_model(package).fingerprint() == model.fingerprint()


def test_changed_sample_weights_travel_and_drop_the_committed_onnx_file() -> None:
    model = wb.samples.load("digits-mlp")
    assert model.module is not None
    with torch.no_grad():
        next(model.module.parameters()).mul_(2.0)
    rebuilt = unpack_model(pack_model(model))
    assert rebuilt.fingerprint() == model.fingerprint() and rebuilt.onnx_path is None


def test_an_onnx_model_travels_as_its_bytes_with_its_recipe() -> None:
    onnx_model = wb.samples.load("digits-mlp").to_onnx()
    package = pack_model(onnx_model)
    assert package.kind == "onnx" and package.payload == onnx_model.onnx_bytes
    assert unpack_model(package).fingerprint() == onnx_model.fingerprint()


def test_user_code_travels_only_when_trusted() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 2)).eval()
    model = wb.load(module, example_inputs=(torch.zeros(1, 4),))
    with pytest.raises(InputError, match="trust=True"):
        pack_model(model)
    assert pack_model(model, trust=True).kind == "trusted"
    own = Metric("own", lambda outputs, labels: 0.0)
    with pytest.raises(InputError, match="trust=True"):
        pack_metric(own)
    assert pack_metric(own, trust=True) is own
    assert pack_metric(get_metric("top3")) == "top3"


def test_a_transform_config_travels_as_its_recipe() -> None:
    packed = pack_spec(Int8Dynamic(per_channel=True))
    assert packed["name"] == "int8-dynamic" and packed["config"]["per_channel"] is True


def _worker(host: str, **resources: float) -> dict[str, object]:
    return {"host": host, "resources": resources}


def test_one_timing_slot_per_host_places_by_resources() -> None:
    placement = plan({"a": _worker("h1", timing=1, GPU=1), "b": _worker("h2", timing=1)})
    assert not placement.host_slot
    assert placement.requirements("cpu") == {"timing": 1}
    assert placement.requirements("cuda:1") == {"GPU": 1, "timing": 1}


def test_shared_hosts_or_no_resources_fall_back_to_a_host_lock() -> None:
    two_on_one = plan({"a": _worker("h1", timing=1), "b": _worker("h1", timing=1)})
    bare = plan({"a": _worker("h1"), "b": _worker("h2")})
    for placement in (two_on_one, bare):
        assert placement.host_slot and "per-host lock" in placement.note
        assert placement.requirements("cpu") == {}
    assert not plan({"a": _worker("h1")}, exclusive=False).host_slot


def test_an_accelerator_no_worker_has_is_refused_with_what_to_do() -> None:
    placement = plan({"a": _worker("h1")})
    assert placement.requirements("cuda:0") is None
    assert '--resources "GPU=1' in placement.missing("cuda:0")
    assert device_resource("xpu:0") == "XPU" and device_resource("cpu") is None


def test_per_host_without_a_cluster_says_what_is_missing() -> None:
    with pytest.raises(InputError, match="give cluster="):
        wb.sweep("digits-mlp", per_host=True)


def test_a_fair_childs_model_file_travels_as_its_bytes_and_a_sample_as_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "worker"))  # the worker's /tmp
    source = tmp_path / "mlp.onnx"
    source.write_bytes(wb.samples.load("digits-mlp").onnx_bytes)
    package = pack_reference(str(source))
    assert isinstance(package, ModelFile) and package.payload == source.read_bytes()
    source.unlink()  # the worker's machine does not have the file: it gets its own copy
    copy = Path(unpack_reference(package))
    assert copy.is_relative_to(tmp_path / "worker") and copy.name == "mlp.onnx"
    assert copy.read_bytes() == package.payload
    assert unpack_reference(package) == str(copy)  # written once per machine
    assert wb.load(copy).fingerprint() == wb.load(package.payload).fingerprint()
    assert pack_reference("digits-mlp") == unpack_reference("digits-mlp") == "digits-mlp"
