"""Hugging Face models built from tiny configs (random weights, no downloads): outputs,
half-precision variants, export, INT8 calibration, pruning and dynamic axes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.errors import ModelLoadError

transformers = pytest.importorskip("transformers")

VOCAB, SEQ = 120, 8


@pytest.fixture(scope="module")
def bert() -> wb.Model:
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    module = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(0, VOCAB, (2, SEQ))
    return wb.load(module, example_inputs=(ids, torch.ones_like(ids), torch.zeros_like(ids)))


def _gpt2(**load: Any) -> wb.Model:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    module = transformers.GPT2LMHeadModel(config).eval()  # use_cache: returns a DynamicCache
    return wb.load(module, example_inputs=(torch.randint(0, VOCAB, (2, SEQ)),), **load)


@pytest.fixture(scope="module")
def gpt2() -> wb.Model:
    return _gpt2(dynamic_axes={"input_ids": {1: "seq"}})


@pytest.fixture(scope="module")
def data() -> wb.Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (24, SEQ))
    return wb.Dataset.from_arrays(
        (x, np.ones_like(x), np.zeros_like(x)), rng.integers(0, 3, 24), batch_size=8
    )


def test_generated_inputs_are_token_ids_masks_and_types(bert: wb.Model) -> None:
    assert bert.index_bounds()["input_ids"] == VOCAB
    x = bert.example_inputs(batch_size=16)
    ids = x["input_ids"]
    assert ids.max() < VOCAB and len(np.unique(ids)) > 50
    assert (x["attention_mask"] == 1).all() and (x["token_type_ids"] == 0).all()


def test_a_model_output_becomes_named_outputs_on_torch_and_onnx(
    bert: wb.Model, data: wb.Dataset
) -> None:
    assert [s.name for s in bert.outputs] == ["logits"]
    (logits,) = wb.backend("torch").compile(bert, "cpu").run(bert.example_inputs(2))
    assert logits.shape == (2, 3) and logits.dtype == np.float32
    on_torch = wb.evaluate(bert, data, backend="torch", bar=False)
    on_ort = wb.evaluate(bert, data, backend="onnxruntime", bar=False)
    assert on_torch.output == on_ort.output == "logits"
    assert on_torch.value == pytest.approx(on_ort.value)


@pytest.mark.parametrize("scheme", ["fp16", "bf16"])
def test_half_precision_torch_variants_evaluate(bert: wb.Model, data: wb.Dataset, scheme) -> None:
    half = wb.quantize(bert, scheme)
    (logits,) = wb.backend("torch").compile(half, "cpu").run(half.example_inputs(4))
    (reference,) = wb.backend("torch").compile(bert, "cpu").run(half.example_inputs(4))
    assert logits.dtype == np.float32 and logits.shape == reference.shape
    np.testing.assert_allclose(logits, reference, atol=0.05)
    result = wb.evaluate(half, data, backend="torch", bar=False)
    assert result.output == "logits" and 0.0 <= result.value <= 1.0


def test_one_load_runs_every_sequence_length(gpt2: wb.Model) -> None:
    assert gpt2.inputs[0].shape == ("batch", "seq")
    exported = gpt2.to_onnx()  # its KV cache output is no obstacle: only tensors export
    assert exported.inputs[0].shape == ("batch", "seq")
    assert [s.name for s in exported.outputs] == ["logits"]
    sessions = [wb.backend(b).compile(gpt2, "cpu") for b in ("torch", "onnxruntime")]
    for length in (3, 13):
        x = gpt2.example_inputs(2, seed=length, sizes={"seq": length})
        assert x["input_ids"].shape == (2, length) and x["input_ids"].max() < VOCAB
        torch_out, ort_out = (s.run(x)[0] for s in sessions)
        assert torch_out.shape == ort_out.shape == (2, length, VOCAB)
        np.testing.assert_allclose(ort_out, torch_out, atol=1e-4)
    p = wb.profile(gpt2, "onnxruntime", inputs=x, layers=False, budget_s=0.05)
    assert p.batch_size == 2 and p.latency.n > 0


def test_dynamic_axes_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ModelLoadError, match=r"names input.*'ids'.*inputs are"):
        _gpt2(dynamic_axes={"ids": {1: "seq"}})
    with pytest.raises(ModelLoadError, match=r"axis 2.*2 axes"):
        _gpt2(dynamic_axes={"input_ids": {2: "seq"}})
    fixed = _gpt2()
    with pytest.raises(wb.errors.InputError, match="axis 1"):
        fixed.check_inputs({"input_ids": np.zeros((2, SEQ + 1), np.int64)})


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_of_gpt2_keeps_its_mask_in_float(gpt2: wb.Model, method: str) -> None:
    """GPT-2's causal mask holds float32's lowest value: a histogram over it overflowed
    ("Too many bins for data range"); its nodes stay float, the rest is calibrated."""
    ids = np.random.default_rng(0).integers(0, VOCAB, (32, SEQ))
    train = wb.Dataset.from_arrays(ids, np.zeros(32, np.int64), batch_size=8)
    q = wb.quantize(gpt2, "int8-static", data=train, method=method)
    test = {"input_ids": np.random.default_rng(1).integers(0, VOCAB, (4, SEQ))}
    (ours,) = wb.backend("onnxruntime").compile(q, "cpu").run(test)
    (reference,) = wb.backend("onnxruntime").compile(gpt2, "cpu").run(test)
    noise = np.mean((ours - reference) ** 2)
    assert 10 * np.log10(np.mean(reference**2) / noise) > 15  # SQNR in dB
    assert (ours.argmax(-1) == reference.argmax(-1)).mean() > 0.8


def test_structured_pruning_shrinks_the_mlp_through_torch_export(
    bert: wb.Model, data: wb.Dataset
) -> None:
    """torch.fx cannot trace BERT; its torch.export graph shows each MLP's hidden layer."""
    small = wb.prune(bert, sparsity=0.5, structured=True, finetune_epochs=1, data=data)
    channels = small.recipe["channels"]
    for block in (0, 1):
        assert channels[f"bert.encoder.layer.{block}.intermediate.dense"] == [64, 32]
        assert (
            small.module.get_submodule(f"bert.encoder.layer.{block}.output.dense").in_features == 32
        )
    notes = small.recipe["notes"]
    assert "bert.encoder.layer.0.attention.output.dense: not pruned, its output feeds add" in notes
    assert small.params < bert.params
    x = bert.example_inputs(4)
    (pruned,) = wb.backend("torch").compile(small, "cpu").run(x)
    (exported,) = wb.backend("onnxruntime").compile(small, "cpu").run(x)
    assert pruned.shape == (4, 3)
    np.testing.assert_allclose(exported, pruned, atol=1e-4)
    assert bert.module.get_submodule("bert.encoder.layer.0.output.dense").in_features == 64
