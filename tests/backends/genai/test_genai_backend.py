"""onnxruntime-genai (the ``genai`` extra): folders built offline by its model builder,
generating token by token through the Decoder protocol, tokens checked against torch's.

Each build runs the builder in a child process (seconds on a quiet machine); the fp32
folder is built once for the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workbench.backends.base import generation_backends, get_backend
from workbench.errors import InputError, ParameterError, UnsupportedModelError
from workbench.loaders.genai import genai_build, load_genai
from workbench.profiling.generate import generate_profile, prompt_ids

og = pytest.importorskip("onnxruntime_genai")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

PROMPT, OUTPUT = 8, 6


def _llama(head_dim: int = 16, vocab: int = 256) -> Any:
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=2 * head_dim,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("llama") / "llama"
    _llama().save_pretrained(folder)
    return Path(folder)


@pytest.fixture(scope="module")
def built(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return genai_build(source, tmp_path_factory.mktemp("genai") / "fp32", tokenizer="bytes")


def test_built_folder_generates_torch_greedy_tokens(built: Any, source: Path) -> None:
    assert built.precision == "fp32" and built.reference is not None
    assert (built.folder / "genai_config.json").is_file()
    g = generate_profile(
        built, backend="genai", prompt_length=PROMPT, output_length=OUTPUT, batch_size=2, runs=1
    )
    assert g.reference_backend == "torch" and g.diverges_at is None
    ids = prompt_ids(built.lm_facts, None, PROMPT, 2, 0)
    expected = built.reference.generate(
        torch.from_numpy(ids), max_new_tokens=OUTPUT, do_sample=False, min_new_tokens=OUTPUT
    )[:, PROMPT:]
    assert g.tokens == tuple(tuple(row) for row in expected.tolist())
    # genai allocates the cache for the whole generation (prepare sizes it: P + N)
    assert g.kv_cache_bytes_measured == g.kv_bytes_per_token * 2 * (PROMPT + OUTPUT)
    # the folder's own tokenizer decodes the tokens
    assert g.tokenizer == "fp32" and g.text is not None


def test_depth_and_a_foreign_token_rewind_at_batch_one(built: Any) -> None:
    genai = get_backend("genai").decoder(built)  # type: ignore[attr-defined]
    eager = get_backend("torch").decoder(built.reference)  # type: ignore[attr-defined]
    ids = prompt_ids(built.lm_facts, None, PROMPT, 1, 0)
    context = prompt_ids(built.lm_facts, None, 4, 1, 1)
    try:
        for decoder in (genai, eager):
            decoder.prefill(context)
        assert genai.extend(ids) == eager.extend(ids)
        other = np.array([7])  # not the token it picked: fed by rewinding one
        assert genai.step(other) == eager.step(other)
        two = prompt_ids(built.lm_facts, None, PROMPT, 2, 0)
        genai.prefill(two)
        with pytest.raises(InputError, match="batch 1 only"):
            genai.extend(two)
    finally:
        genai.close()
        eager.close()


def test_genai_is_a_generation_backend_without_forward_sessions(built: Any) -> None:
    assert "genai" in generation_backends()
    backend = get_backend("genai")
    assert backend.devices() == ["cpu"]
    assert "onnxruntime-genai" in backend.availability().version
    with pytest.raises(UnsupportedModelError, match="generate_profile"):
        backend.compile(built)  # type: ignore[arg-type]


def test_load_back_finds_its_reference_and_int4_builds(
    built: Any, source: Path, tmp_path: Path
) -> None:
    again = load_genai(built.folder)
    assert again.reference is not None and again.lm_facts == built.lm_facts
    int4 = genai_build(source, tmp_path / "int4", precision="int4", tokenizer="bytes")
    assert int4.precision == "int4"
    assert int4.lm_facts.weights_bytes < built.lm_facts.weights_bytes
    g = generate_profile(int4, backend="genai", prompt_length=PROMPT, output_length=OUTPUT, runs=1)
    assert g.model.endswith("genai-int4") and len(g.tokens[0]) == OUTPUT


def test_build_refusals(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="fp32, int4"):
        genai_build(source, tmp_path / "x", precision="fp16")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        genai_build(source, tmp_path / "full")
    with pytest.raises(InputError, match="needs a tokenizer"):
        genai_build(source, tmp_path / "y")
    with pytest.raises(UnsupportedModelError, match="multiple of 16"):
        genai_build(_llama(head_dim=24), tmp_path / "z", tokenizer="bytes")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
