"""Per-layer profiles on every sample model and backend: rows, shares, fusion, failures."""

from __future__ import annotations

import glob
import html
import json
import os
import tempfile

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.backends.base import LayerTiming
from workbench.errors import BackendError, InputError
from workbench.profiling.layers import UNATTRIBUTED, attribution, profile_layers
from workbench.testing import toy_cnn

SAMPLES = ["digits-mlp", "digits-cnn", "digits-transformer", "digits-resnet"]
BACKENDS = [name for name in ("torch", "onnxruntime", "numba") if wb.backend(name).devices()]


def _profile(model, backend, **kw):
    kw.setdefault("batch_size", 4)
    return wb.profile(model, backend=backend, budget_s=0.05, layer_repeats=3, **kw)


def _expected_layers(model, backend: str) -> set[str]:
    """Canonical layers the backend runs: torch leaves, or the ONNX export's layers."""
    if backend == "torch":
        return {layer.name for layer in model.layers if not layer.name[0].isupper()}
    return {layer.name for layer in model.to_onnx().layers}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_sample_on_every_backend(sample: str, backend: str) -> None:
    model = wb.samples.load(sample)
    p = _profile(model, backend)
    table = p.layers
    assert list(table.columns[:10]) == wb.profiling.profile.LAYER_COLUMNS[:10]
    assert table["layer"].iloc[-1] == UNATTRIBUTED
    rows = table[table["layer"] != UNATTRIBUTED]
    # every canonical layer has a row: timed, fused (with its target) or explained
    missing = _expected_layers(model, backend) - set(rows["layer"])
    if backend == "numba":  # the executor folds shape arithmetic at plan time
        missing -= {"(shape)"}
    assert not missing, missing
    assert (rows["latency_ms"].dropna() >= 0).all()
    assert rows["latency_ms"].notna().all()
    # attribution reads the (unattributed) row back; the layer rows themselves must sum to it
    numbers = attribution(p)
    assert numbers["layers_sum_ms"] == pytest.approx(rows["latency_ms"].sum(), rel=1e-9)
    assert numbers["ratio"] > 0
    assert "instrumented" in p.layer_method and any("ratio" in n for n in p.notes)
    assert p.memory.model_peak_bytes > 0 and p.memory.params_bytes > 0
    # Conv/Linear layers always get FLOPs, counted as 2 per multiply-add
    matmuls = rows[rows["op_type"].isin(["Conv2d", "Linear", "Conv", "Gemm"])]
    assert (matmuls["flops"] > 0).all()
    again = wb.Profile.from_json(p.to_json())
    assert json.loads(again.to_json())["layers"] == json.loads(p.to_json())["layers"]
    numeric = ["latency_ms", "share", "flops", "bytes"]
    pd.testing.assert_frame_equal(again.layers[numeric], table[numeric], check_dtype=False)
    slowest = rows.loc[rows["latency_ms"].idxmax(), "layer"]
    page = p._repr_html_()
    assert "Slowest layers" in page and html.escape(str(slowest)) in page


def test_layers_in_the_cli_json(tmp_path) -> None:
    from workbench.cli import main

    out = tmp_path / "p.json"
    args = ["profile", "digits-cnn", "--batch-size", "4", "--budget", "0.05", "--json", str(out)]
    code = main(args)
    assert code == 0
    data = json.loads(out.read_text())
    first = data["layers"][0]
    for key in ("layer", "op_type", "latency_ms", "latency_p90_ms", "share", "flops", "bytes",
                "intensity", "params_bytes", "activation_bytes"):  # fmt: skip
        assert key in first
    assert data["memory"]["model_peak_bytes"] > 0


def test_onnxruntime_fused_layers_are_shown_as_the_layers_they_cover() -> None:
    p = _profile(wb.samples.load("digits-resnet"), "onnxruntime")
    rows = p.layers.set_index("layer")
    # Conv + BatchNorm + Relu run as one kernel: time on the conv, the others point to it
    assert rows.loc["stem.1", "fused_into"] == "stem.0"
    assert rows.loc["stem.2", "fused_into"] == "stem.0"
    assert rows.loc["stem.1", "latency_ms"] == 0.0
    assert "stem.1" in rows.loc["stem.0", "note"]
    # the residual add and its relu run inside the block's second conv, not the next one
    assert rows.loc["layer1.0", "fused_into"] == "layer1.0.conv2"
    assert rows.loc["layer1.0.relu2", "fused_into"] == "layer1.0.conv2"


def test_onnxruntime_profiling_files_are_deleted() -> None:
    pattern = os.path.join(tempfile.gettempdir(), "wb-ort-*")
    before = set(glob.glob(pattern))
    _profile(toy_cnn(), "onnxruntime")
    assert set(glob.glob(pattern)) <= before


def test_torch_hooks_are_removed_and_the_model_is_unchanged() -> None:
    model = toy_cnn()
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    _profile(model, "torch")
    for sub in model.module.modules():
        assert not sub._forward_hooks and not sub._forward_pre_hooks
    for key, value in model.module.state_dict().items():
        assert np.array_equal(value.numpy(), state[key].numpy())


def test_containers_view_and_torch_profiler_method() -> None:
    model = wb.samples.load("digits-transformer")
    session = wb.backend("torch").compile(model, "cpu")
    inputs = model.example_inputs(4)
    end_to_end = _profile(model, "torch", layers=False).latency.median
    found = profile_layers(session, inputs, end_to_end, 3, view="containers", roofline=False)
    rows = found.layers.set_index("layer")
    assert {"blocks.0", "blocks.0.attn", "blocks.0.attn.q"} <= set(rows.index)
    # a container's inclusive time covers its children
    assert rows.loc["blocks.0", "latency_ms"] >= rows.loc["blocks.0.attn", "latency_ms"]
    assert rows.loc["DigitsTransformer", "share"] == pytest.approx(1.0)
    other = profile_layers(session, inputs, end_to_end, 3, method="torch.profiler", roofline=False)
    assert "torch.profiler" in other.method
    assert other.memory.allocated_bytes_by_layer
    assert other.layers.query("layer == 'blocks.0.mlp.fc1'")["latency_ms"].iloc[0] > 0
    with pytest.raises(InputError, match="unknown layer method"):
        profile_layers(session, inputs, end_to_end, 1, method="nsight")


def test_leaves_view_gives_containers_their_own_code() -> None:
    p = _profile(wb.samples.load("digits-transformer"), "torch")
    rows = p.layers.set_index("layer")
    # the attention module's own matmuls: a row of its own, costed from the ONNX graph
    assert "own code" in rows.loc["blocks.0.attn", "note"]
    assert rows.loc["blocks.0.attn", "flops"] > 0
    assert "blocks" not in rows.index  # a ModuleList has no code of its own


class _NoProfiler:
    """A session whose backend has no per-layer profiler, and one whose profiler fails."""

    backend, device = "plain", "cpu"

    def __init__(self, model, fail: bool | str = False) -> None:
        self.model = model
        if fail == "empty":
            self.run_layers = lambda inputs, repeats=10: []
        elif fail:
            self.run_layers = self._fail

    def run(self, inputs):
        return [np.zeros(1)]

    def _fail(self, inputs, repeats=10) -> list[LayerTiming]:
        raise BackendError("the device profiler is not installed")


@pytest.mark.parametrize(
    "fail", [False, True, "empty"], ids=["no-profiler", "profiler-fails", "no-timings"]
)
def test_missing_profiler_gives_a_partial_profile_that_says_so(fail: bool | str) -> None:
    model = toy_cnn()
    found = profile_layers(_NoProfiler(model, fail), model.example_inputs(4), 1.0, repeats=2)
    assert found.layers.empty and found.method == "failed"
    assert any("per-layer timing failed" in n for n in found.notes)
    expected = {False: "no per-layer profiler", True: "not installed", "empty": "no per-layer"}
    assert expected[fail] in found.notes[-1]
    assert found.memory.process_rss_bytes  # the memory measured before it stays


def test_ratio_of_layers_to_end_to_end_is_reported() -> None:
    p = _profile(toy_cnn(), "onnxruntime", batch_size=8)
    numbers = attribution(p)
    assert numbers["end_to_end_ms"] == p.latency.median
    assert numbers["ratio"] == pytest.approx(numbers["layers_sum_ms"] / p.latency.median)
    # no bounds here: overhead is a benchmark's claim (benchmarks/layer_overhead.py), and a
    # busy CI machine can make either pass arbitrarily slow
    assert numbers["ratio"] > 0


def test_onnxruntime_transformer_fusions_go_to_the_layer_they_implement() -> None:
    p = _profile(wb.samples.load("digits-transformer"), "onnxruntime")
    rows = p.layers.set_index("layer")
    # MatMul + bias Add + Gelu: the BiasGelu kernel's time is the Gelu layer's
    assert rows.loc["blocks.0.mlp.act", "latency_ms"] > 0
    assert "blocks.0.mlp.fc1" in rows.loc["blocks.0.mlp.act", "note"]
    assert rows.loc["blocks.0.mlp.fc1", "latency_ms"] > 0  # its MatMul still runs alone
    # residual Add + LayerNorm: the fused kernel's time is the norm's
    assert rows.loc["norm", "latency_ms"] > 0


def _cuda_devices(backend: str) -> list[str]:
    return [d for d in wb.backend(backend).devices() if d.startswith("cuda")]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_per_layer_profile_on_a_gpu(backend: str) -> None:
    devices = _cuda_devices(backend)
    if not devices:
        pytest.skip(f"no CUDA device for {backend}")
    model = wb.samples.load("digits-resnet")
    p = _profile(model, backend, device=devices[0], batch_size=32)
    rows = p.layers[p.layers["layer"] != UNATTRIBUTED]
    assert rows["share"].sum() == pytest.approx(1.0)
    assert (rows.set_index("layer").loc[["stem.0", "fc"], "latency_ms"] > 0).all()
    if backend == "torch":
        assert p.memory.model_peak_bytes > 0
        session = wb.backend("torch").compile(model, devices[0])
        other = profile_layers(
            session, model.example_inputs(8), p.latency.median, 3, method="torch.profiler"
        )
        assert other.layers.set_index("layer").loc["stem.0", "latency_ms"] > 0


def test_torchscript_and_exported_programs_say_what_is_missing(tmp_path) -> None:
    import torch

    module, x = toy_cnn().module, torch.rand(2, 1, 8, 8)
    torch.jit.save(torch.jit.trace(module, x), tmp_path / "m.ts")
    torch.export.save(torch.export.export(module, (x,)), tmp_path / "m.pt2")
    # TorchScript is code: this test wrote the file itself, so it trusts it
    scripted_model = wb.load(tmp_path / "m.ts", example_inputs=(x,), trust=True)
    scripted = _profile(scripted_model, "torch", batch_size=2)
    assert scripted.layer_method == "failed" and scripted.latency.n > 0
    assert "eager nn.Module" in scripted.notes[-1]
    exported = _profile(wb.load(tmp_path / "m.pt2"), "torch", batch_size=2)
    rows = exported.layers.set_index("layer")
    assert "traced graph" in rows.iloc[0]["note"]
    assert rows.loc["features.0", "note"] == "never called"
