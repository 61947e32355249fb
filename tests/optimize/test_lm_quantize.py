"""Language-model variants (`lm_quantize`): new objects with recipes, run by generate_profile."""

from __future__ import annotations

import onnx
import pytest
import torch

import workbench as wb
from workbench.errors import InvalidArgumentError, TransformError, UnsupportedModelError
from workbench.loaders.language import language_model
from workbench.optimize.base import config_to_dict
from workbench.optimize.lm_quantize import (
    Cast,
    DynamicInt8,
    ExportOnly,
    WeightOnly,
    lm_config_from_recipe,
    lm_quantize,
)

FAST = {"prompt_length": 4, "output_length": 3, "runs": 1, "warmup": 0}


@pytest.fixture(scope="module")
def sample():
    return language_model("llama-stdlib")


@pytest.fixture(scope="module")
def int4(sample):
    return lm_quantize(sample, WeightOnly(bits=4, block_size=16, accuracy_level=4))


def test_int4_is_a_new_model_with_its_recipe_and_the_input_untouched(sample):
    before = {k: v.clone() for k, v in sample.state_dict().items()}
    q = lm_quantize(sample, WeightOnly(bits=4, block_size=16, accuracy_level=4))
    assert q.reference is sample and q.recipe["name"] == "weight-only"
    assert q.recipe["config"] == {
        "bits": 4,
        "block_size": 16,
        "symmetric": True,
        "accuracy_level": 4,
        "exclude": [],
    }
    nodes = [n for n in onnx.load(str(q.onnx_decoder)).graph.node if n.op_type == "MatMulNBits"]
    # 3 layers x 7 projections + lm_head, each with the block size and accuracy level asked for
    assert len(nodes) == 22
    attributes = {a.name: a.i for a in nodes[0].attribute}
    assert attributes["block_size"] == 16 and attributes["accuracy_level"] == 4
    assert attributes["bits"] == 4
    after = sample.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert next(sample.parameters()).dtype == torch.float32


def test_weights_shrink_with_the_bits(sample, int4):
    fp32 = lm_quantize(sample, "fp32")
    int8 = lm_quantize(sample, "int8")
    sizes = [v.stored_weights_bytes[0] for v in (fp32, int8, int4)]
    assert sizes[0] > sizes[1] > sizes[2]
    assert fp32.size_bytes > int8.size_bytes > int4.size_bytes


def test_generate_profile_times_the_variant_on_onnxruntime(int4):
    g = wb.generate_profile(int4, backend="onnxruntime", **FAST)
    assert g.model == "LlamaForCausalLM int4(block 16, acc 4)"
    assert g.weights_bytes == int4.stored_weights_bytes[0]
    assert g.reference_backend == "torch" and len(g.tokens[0]) == 3


def test_a_variant_refuses_a_runtime_that_would_time_something_else(int4):
    with pytest.raises(UnsupportedModelError, match="runs on onnxruntime, not torch"):
        wb.generate_profile(int4, backend="torch", **FAST)
    with pytest.raises(UnsupportedModelError, match="not in torch"):
        int4(input_ids=torch.zeros(1, 2, dtype=torch.long))


def test_bf16_copy_runs_on_torch_and_is_checked_against_fp32(sample, monkeypatch):
    monkeypatch.setattr("workbench.machine.cpu_info", lambda: {"flags": ["avx512_bf16"]})
    q = lm_quantize(sample, "bf16")
    assert next(q.torch_model.parameters()).dtype == torch.bfloat16
    assert q.stored_weights_bytes[0] * 2 == sum(p.numel() * 4 for p in sample.parameters())
    g = wb.generate_profile(q, backend="torch", **FAST)
    assert g.reference_backend == "torch" and g.model.endswith("bf16")


def test_a_dtype_without_the_cpu_instructions_says_why(sample, monkeypatch):
    monkeypatch.setattr("workbench.machine.cpu_info", lambda: {"flags": ["avx2"]})
    assert "avx512_fp16" in (Cast("fp16").unavailable() or "")
    with pytest.raises(TransformError, match="avx512_bf16"):
        lm_quantize(sample, "bf16")
    monkeypatch.setattr("workbench.machine.cpu_info", lambda: {"flags": ["avx512_fp16"]})
    assert Cast("fp16").unavailable() is None


@pytest.mark.parametrize(
    "config",
    [
        WeightOnly(bits=8, block_size=64, symmetric=False, accuracy_level=1),
        DynamicInt8(True),
        ExportOnly(),
        Cast("bf16"),
    ],
    ids=["weight-only", "int8-dynamic", "fp32", "bf16"],
)
def test_config_round_trips_through_its_recipe(config):
    import json

    recipe = json.loads(json.dumps(config_to_dict(config)))
    assert lm_config_from_recipe(recipe) == config


def test_bad_input_is_one_line(sample):
    with pytest.raises(InvalidArgumentError, match="no language-model variant named 'int3'"):
        lm_quantize(sample, "int3")
    with pytest.raises(InvalidArgumentError, match="power of two"):
        lm_quantize(sample, WeightOnly(block_size=24))
    with pytest.raises(UnsupportedModelError, match="not a causal language model"):
        lm_quantize(torch.nn.Linear(2, 2), "int4")
    with pytest.raises(TransformError, match="not a language-model variant's recipe"):
        lm_config_from_recipe({"name": "int8-static"})


def test_torchao_int8_where_installed(sample):
    pytest.importorskip("torchao")
    q = lm_quantize(sample, "torchao-int8")
    assert q.stored_weights_bytes[0] < sum(p.numel() * 4 for p in sample.parameters()) / 2
    g = wb.generate_profile(q, backend="torch", **FAST)
    assert g.weights_bytes == q.stored_weights_bytes[0]


def test_per_layer_tables_of_a_variant_use_the_reference_module_paths(int4):
    g = wb.generate_profile(int4, backend="onnxruntime", layers=True, **FAST)
    ops = dict(zip(g.decode_layers["layer"], g.decode_layers["op_type"], strict=False))
    assert ops["model.layers.0.self_attn.q_proj"] == "MatMulNBits"
    assert "LlamaForCausalLM" in ops and "LMVariant" not in ops


def test_layers_kept_in_fp32_stay_matmuls(sample):
    q = lm_quantize(sample, WeightOnly(bits=4, exclude=("lm_head", "model.layers.2.mlp")))
    graph = onnx.load(str(q.onnx_decoder)).graph
    quantized = [n.name for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(quantized) == 22 - 1 - 3
    assert not any("lm_head" in n or "layers.2/mlp" in n for n in quantized)
    assert q.label == "int4(block 32, acc 4, 2 kept fp32)"
    with pytest.raises(InvalidArgumentError, match="no module 'lm_heads'"):
        lm_quantize(sample, WeightOnly(exclude=("lm_heads",)))
