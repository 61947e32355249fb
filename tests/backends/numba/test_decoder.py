"""The numba backend's decoder: the exported decoder on the Numba executor, its KV cache
preallocated and written in place (llama-tiny, random weights: tokens, not accuracy)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.base import Decoder, get_backend
from workbench.errors import InputError

pytest.importorskip("numba")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def llama() -> object:
    from workbench.loaders.language import random_llama

    return random_llama("llama-tiny")


@pytest.fixture(scope="module")
def decoder(llama: object) -> object:
    made = get_backend("numba").decoder(llama)  # type: ignore[attr-defined]
    yield made
    made.close()


def _greedy(
    decoder: object, ids: np.ndarray, n: int, context: np.ndarray | None = None
) -> np.ndarray:
    if context is not None:
        decoder.prefill(context)  # type: ignore[attr-defined]
        token = decoder.extend(ids)  # type: ignore[attr-defined]
    else:
        token = decoder.prefill(ids)  # type: ignore[attr-defined]
    tokens = [token]
    for _ in range(n - 1):
        token = decoder.step(token)  # type: ignore[attr-defined]
        tokens.append(token)
    return np.stack(tokens, axis=1)


def test_tokens_equal_torch_greedy_with_and_without_a_context(
    llama: object, decoder: object
) -> None:
    assert isinstance(decoder, Decoder)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, (2, 12), dtype=np.int64)
    context = rng.integers(0, 256, (2, 5), dtype=np.int64)
    reference = get_backend("torch").decoder(llama)  # type: ignore[attr-defined]
    try:
        with decoder.settings():  # type: ignore[attr-defined]
            for ctx in (None, context):
                expected = _greedy(reference, ids, 10, ctx)
                np.testing.assert_array_equal(_greedy(decoder, ids, 10, ctx), expected)
    finally:
        reference.close()
    # K and V of 2 layers, 2 KV heads of 16, fp32, over context + prompt + 9 fed tokens
    assert decoder.cache_bytes() == 2 * 2 * 2 * 16 * 4 * 2 * (5 + 12 + 9)  # type: ignore[attr-defined]


def test_the_cache_is_written_in_place_and_plans_are_reused(decoder: object) -> None:
    ids = np.arange(6, dtype=np.int64)[None]
    with decoder.settings():  # type: ignore[attr-defined]
        token = decoder.prefill(ids)  # type: ignore[attr-defined]
        arrays = decoder.cache.arrays(1)  # type: ignore[attr-defined]
        pointers = [a.ctypes.data for a in arrays]
        prompt_part = [a[:, :, :6].copy() for a in arrays]
        plans = decoder.plans  # type: ignore[attr-defined]
        for _ in range(4):
            token = decoder.step(token)  # type: ignore[attr-defined]
        assert decoder.plans == plans + 4  # type: ignore[attr-defined]
        # the same arrays, the prompt's positions untouched: each step wrote its own token
        after = decoder.cache.arrays(1)  # type: ignore[attr-defined]
        assert [a.ctypes.data for a in after] == pointers
        for before, array in zip(prompt_part, after, strict=True):
            np.testing.assert_array_equal(array[:, :, :6], before)
            assert np.any(array[:, :, 6:10])
        # what the attention reads is a view of the cache, not a copy of it
        plan = decoder.executor.plans[-1]  # type: ignore[attr-defined]
        appends = [s for s in plan.steps if s.node.op_type == "KvAppend"]
        assert len(appends) == 4 and all(s.node.layer.endswith("cache_update") for s in appends)
        assert all(np.shares_memory(s.outs[0], arrays[s.node.attrs["slot"]]) for s in appends)
        # a second generation of the same lengths plans nothing new
        token = decoder.prefill(ids)  # type: ignore[attr-defined]
        for _ in range(4):
            token = decoder.step(token)  # type: ignore[attr-defined]
        assert decoder.plans == plans + 4  # type: ignore[attr-defined]


def test_more_tokens_than_the_context_is_one_line(decoder: object) -> None:
    with pytest.raises(InputError) as caught:
        decoder.prefill(np.zeros((1, 257), np.int64))  # type: ignore[attr-defined]
    message = str(caught.value)
    assert "\n" not in message and "257 tokens exceed" in message and "context of 256" in message


def test_generate_profile_on_numba_checks_tokens_and_times_layers(llama: object) -> None:
    from workbench.profiling.generate import generate_profile

    g = generate_profile(
        llama, backend="numba", prompt_length=8, output_length=4, runs=1, warmup=0, layers=True
    )
    assert g.reference_backend == "torch" and g.diverges_at is None
    assert g.kv_cache_bytes_measured == g.kv_cache_bytes
    assert g.compile_s is not None and g.compile_s > 0
    assert g.prefill_layers is not None and g.decode_layers is not None
    # what the breakdown costs: the instrumented generations' own TPOT, as torch and ORT
    assert g.layers_tpot is not None and g.layers_tpot.n == 1
    assert g.profiling_cost == pytest.approx(g.layers_tpot.median / g.tpot.median)  # type: ignore[union-attr]
    layers = set(g.decode_layers["layer"])
    assert {
        "lm_head",
        "model.layers.0.mlp.down_proj",
        "model.layers.1.self_attn.cache_update",
    } <= layers
