"""Cost model: hand-computed FLOPs, agreement with torch's flop counter, unknown ops, ceilings."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.profiling.cost import onnx_costs, torch_costs
from workbench.testing import toy_cnn


def _graph(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _value(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_conv_and_gemm_flops_match_hand_computed_values() -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.random((16, 3, 3, 3), dtype=np.float32), "w")
    fc = numpy_helper.from_array(rng.random((10, 16 * 30 * 30), dtype=np.float32), "fc")
    model = _graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),  # no padding: 30x30
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Flatten", ["r"], ["f"], name="flat"),
            helper.make_node("Gemm", ["f", "fc"], ["y"], name="gemm", transB=1),
        ],
        [_value("x", ["n", 3, 32, 32])],
        [_value("y", ["n", 10])],
        [w, fc],
    )
    costs, notes = onnx_costs(model, {"x": np.zeros((2, 3, 32, 32), np.float32)})
    # conv: 2 FLOPs per multiply-add, N*Cout*H*W outputs, Cin*kh*kw each
    assert costs.loc["conv", "flops"] == 2 * (2 * 16 * 30 * 30) * (3 * 3 * 3)
    # gemm: 2 * M * N * K
    assert costs.loc["gemm", "flops"] == 2 * 2 * 10 * (16 * 30 * 30)
    assert costs.loc["relu", "flops"] == 2 * 16 * 30 * 30
    assert costs.loc["flat", "flops"] == 0
    # bytes: what the op reads (activations and weights) plus what it writes
    assert costs.loc["conv", "bytes"] == 4 * (2 * 3 * 32 * 32 + 16 * 27 + 2 * 16 * 30 * 30)
    assert costs.loc["conv", "params_bytes"] == 16 * 27 * 4
    assert costs.loc["gemm", "activation_bytes"] == 2 * 10 * 4
    assert not notes


def test_unknown_ops_are_nan_with_a_note_and_einsum_is_counted() -> None:
    model = _graph(
        [
            helper.make_node("Einsum", ["a", "b"], ["e"], name="mm", equation="bij,bjk->bik"),
            helper.make_node("CumSum", ["e", "axis"], ["c"], name="cum"),
            helper.make_node("TopK", ["c", "k"], ["v", "i"], name="top", axis=-1),
        ],
        [_value("a", [2, 3, 4]), _value("b", [2, 4, 5])],
        [_value("v", [2, 3, 2])],
        [numpy_helper.from_array(np.array(1), "axis"), numpy_helper.from_array(np.array([2]), "k")],
    )
    inputs = {"a": np.zeros((2, 3, 4), np.float32), "b": np.zeros((2, 4, 5), np.float32)}
    costs, notes = onnx_costs(model, inputs)
    assert costs.loc["mm", "flops"] == 2 * 2 * 3 * 4 * 5
    assert math.isnan(costs.loc["top", "flops"]) and math.isnan(costs.loc["cum", "flops"])
    assert any("TopK" in n and "top" in n for n in notes)
    assert costs.loc["top", "bytes"] > 0  # bytes stay known from the shapes


def test_torch_costs_agree_with_torch_flop_counter() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, groups=1),
        torch.nn.Conv2d(8, 8, 3, stride=2, groups=4),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 7 * 7, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 5),
    )
    model = wb.load(module, example_inputs=(torch.rand(1, 3, 16, 16),))
    x = {"input": np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)}
    x = dict(zip([s.name for s in model.inputs], x.values(), strict=True))
    ours, _ = torch_costs(model, x)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.module(torch.from_numpy(next(iter(x.values()))))
    theirs = {k.split(".", 1)[1]: sum(v.values()) for k, v in counter.get_flop_counts().items()
              if "." in k}  # fmt: skip
    for layer in ("0", "1", "3", "5"):
        assert ours.loc[layer, "flops"] == theirs[layer], layer
    assert ours.loc["4", "flops"] == 3 * 32  # elementwise: one per output element


def test_torch_and_onnx_costs_agree_on_a_sample() -> None:
    model = wb.samples.load("digits-cnn")
    x = model.example_inputs(3)
    torch_side, _ = torch_costs(model, x)
    onnx_side, _ = onnx_costs(model.to_onnx().proto, x)
    for layer in ("features.0", "features.3", "features.7", "classifier.1"):
        assert torch_side.loc[layer, "flops"] == onnx_side.loc[layer, "flops"], layer
        assert torch_side.loc[layer, "activation_bytes"] == onnx_side.loc[layer, "activation_bytes"]


def test_roofline_columns(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    p = wb.profile(toy_cnn(), "onnxruntime", batch_size=8, budget_s=0.05, layer_repeats=3)
    conv = p.layers.set_index("layer").loc["features.0"]
    assert conv["achieved_flops_per_s"] == pytest.approx(conv["flops"] / (conv["latency_ms"] / 1e3))
    assert conv["bound"] in ("compute", "memory") and conv["roof_fraction"] > 0
    from workbench.profiling.ceilings import Ceilings

    ceilings = Ceilings.from_dict(p.environment["machine_ceilings"])
    # the ridge of the roof for this layer's bytes (a cache's bandwidth when they fit one)
    ridge = ceilings.peak_flops_per_s / float(ceilings.bandwidth_for(conv["bytes"]))
    assert conv["bound"] == ("compute" if conv["intensity"] >= ridge else "memory")


def test_the_cost_model_estimates_a_variant_from_each_layers_bounding_resource() -> None:
    import pandas as pd

    from workbench.profiling.cost import estimate_latency_ms
    from workbench.profiling.profile import Profile
    from workbench.profiling.timer import Measurement

    layers = pd.DataFrame(
        {
            "layer": ["conv", "bn", "fc", "(unattributed)"],
            "latency_ms": [3.0, 0.0, 1.0, -0.5],
            "bound": ["compute", "memory", "memory", None],
            "fused_into": [None, "conv", None, None],
        }
    )
    profile = Profile(
        latency=Measurement(samples_ms=(3.5, 3.5)), layers=layers, model="m",
        backend="onnxruntime", device="cpu", batch_size=1,
    )  # fmt: skip
    assert estimate_latency_ms(profile) == pytest.approx(3.5)
    # conv is compute-bound: its FLOPs ratio counts, not its bytes; fc is memory-bound
    halved = estimate_latency_ms(profile, {"conv": 0.5, "fc": 0.1}, {"conv": 0.9, "fc": 0.5})
    # attributed 4 ms -> 1.5 + 0.5 = 2 ms: the end-to-end median scales by the same half
    assert halved == pytest.approx(3.5 * 2.0 / 4.0)
