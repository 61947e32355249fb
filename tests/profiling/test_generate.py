"""Generation profiles: token-by-token timing of a tiny random Llama on torch and ORT."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.base import generation_backends, register
from workbench.backends.torch.decoder import TorchDecoder, causal_lm
from workbench.errors import (
    InputError,
    ParameterError,
    UnknownBackendError,
    UnsupportedModelError,
)
from workbench.profiling import generate
from workbench.profiling.generate import (
    GenerationProfile,
    depth_sweep,
    first_divergence,
    generate_profile,
    generation_table,
)
from workbench.testing import FakeBackend, FakeClock, tiny_llama

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

PROMPT, OUTPUT = 8, 4


@pytest.fixture(scope="module")
def llama() -> object:
    return tiny_llama(vocab_size=100, context=16)


def test_torch_tokens_are_transformers_greedy_and_cache_matches_config(llama: object) -> None:
    g = generate_profile(llama, prompt_length=PROMPT, output_length=OUTPUT, batch_size=2, runs=1)
    ids = generate.prompt_ids(causal_lm(llama), None, PROMPT, 2, 0)
    expected = llama.generate(  # type: ignore[attr-defined]
        torch.from_numpy(ids), max_new_tokens=OUTPUT, do_sample=False, min_new_tokens=OUTPUT
    )[:, PROMPT:]
    assert g.tokens == tuple(tuple(row) for row in expected.tolist())
    # K and V, 2 layers, 2 kv heads of 8, fp32: per token of one sequence
    assert g.kv_bytes_per_token == 2 * 2 * 2 * 8 * 4
    assert g.kv_cache_bytes == g.kv_bytes_per_token * 2 * (PROMPT + OUTPUT - 1)
    assert g.kv_cache_bytes_measured == g.kv_cache_bytes
    assert g.weights_bytes == sum(p.numel() * 4 for p in llama.parameters())  # type: ignore[attr-defined]
    # untied: a step looks up rows of the 100 x 32 input embedding, never reads it whole
    assert g.step_weights_bytes == g.weights_bytes - 100 * 32 * 4
    assert g.ttft.n == 1 and g.inter_token is not None and g.inter_token.n == OUTPUT - 1


def test_onnxruntime_keeps_the_cache_and_matches_torch_tokens(llama: object) -> None:
    prompt = np.arange(2 * PROMPT).reshape(2, PROMPT) % 100
    g = generate_profile(
        llama, backend="onnxruntime", prompt=prompt, output_length=OUTPUT, runs=1, warmup=0
    )
    reference = generate_profile(llama, prompt=prompt, output_length=OUTPUT, runs=1, warmup=0)
    assert g.reference_backend == "torch" and g.diverges_at is None
    assert g.tokens == reference.tokens
    assert g.kv_cache_bytes_measured == reference.kv_cache_bytes_measured == g.kv_cache_bytes


def test_timing_arithmetic_on_a_fake_clock(llama: object, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock([0.010, 0.002, 0.004, 0.006])  # prefill, then three decode steps

    class Ticking:
        def prefill(self, ids: np.ndarray) -> np.ndarray:
            clock.tick()
            return np.zeros(len(ids), np.int64)

        def step(self, tokens: np.ndarray) -> np.ndarray:
            clock.tick()
            return tokens + 1

        def cache_bytes(self) -> int:
            return 7

        def close(self) -> None:
            pass

    class TickingBackend(FakeBackend):
        name = "fake-ticking"

        def decoder(self, model: object, device: str = "cpu", *, threads: object = None) -> Ticking:
            return Ticking()

    from workbench.profiling.ceilings import Ceilings

    register("fake-ticking")(TickingBackend)
    monkeypatch.setattr(
        "workbench.profiling.ceilings.machine_ceilings",
        lambda device: Ceilings(device, peak_flops_per_s=1e10, bandwidth_bytes_per_s=1e9),
    )
    with clock.installed():
        g = generate_profile(
            llama,
            backend="fake-ticking",
            prompt_length=PROMPT,
            output_length=OUTPUT,
            runs=2,
            roofline=True,
            check_tokens=False,
        )
    assert g.ttft.samples_ms == pytest.approx((10.0, 10.0))
    assert g.inter_token is not None and g.tpot is not None
    assert g.inter_token.samples_ms == pytest.approx((2.0, 4.0, 6.0) * 2)
    assert g.e2e.median == pytest.approx(22.0)
    assert g.tpot.median == pytest.approx((22.0 - 10.0) / (OUTPUT - 1))
    assert g.prefill_tokens_per_s == pytest.approx(PROMPT * 1000 / 10.0)
    assert g.decode_tokens_per_s == pytest.approx(1000 / 4.0)
    assert g.tokens == ((0, 1, 2, 3),)
    assert g.kv_cache_bytes_measured == 7
    # decode roofline: weights once per step, the cache over P + N/2 tokens on average
    per_step = g.step_weights_bytes + g.kv_bytes_per_token * (PROMPT + OUTPUT / 2)
    assert g.decode_bytes_per_step == pytest.approx(per_step)
    assert g.bandwidth_fraction == pytest.approx(per_step / 0.004 / 1e9)
    assert "of 954 MiB/s" in g.summary()


def test_one_output_token_has_no_decode_phase(llama: object) -> None:
    g = generate_profile(llama, prompt_length=PROMPT, output_length=1, runs=1, warmup=0)
    assert g.inter_token is None and g.tpot is None and g.decode_tokens_per_s is None
    assert g.decode_bytes_per_step is None and g.bandwidth_fraction is None
    assert "unavailable" in g.summary()


def test_json_round_trip(llama: object, tmp_path: object) -> None:
    g = generate_profile(llama, prompt_length=PROMPT, output_length=OUTPUT, runs=2, warmup=0)
    path = tmp_path / "g.json"  # type: ignore[operator]
    g.to_json(path)
    back = GenerationProfile.from_json(path)
    assert back.tokens == g.tokens and back.kv_cache_bytes == g.kv_cache_bytes
    assert back.ttft.samples_ms == g.ttft.samples_ms
    assert back.tpot is not None and g.tpot is not None and back.tpot.median == g.tpot.median
    assert back.decode_bytes_per_s == g.decode_bytes_per_s and back.bandwidth_fraction is None
    assert "TTFT" in g._repr_html_() and "TPOT" in g.summary()
    with pytest.raises(InputError, match="not a generation profile"):
        GenerationProfile.from_json('{"kind": "profile"}')


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"prompt_length": 14, "output_length": 4}, InputError, "exceed .* context of 16"),
        ({"output_length": 0}, ParameterError, "output_length"),
        ({"depth": 6, "prompt_length": 8, "output_length": 4}, InputError, r"depth \(6\)"),
        ({"prompt": [[1, 2, 3], [1, 2]]}, InputError, "different lengths"),
        ({"prompt": [[1, 200]]}, InputError, r"\[0, 100\)"),
        ({"backend": "nope"}, UnknownBackendError, "unknown backend 'nope'"),
    ],
)
def test_bad_input_is_one_line(
    llama: object, kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words) as caught:
        generate_profile(llama, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_a_model_that_is_not_a_causal_lm_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="not a causal language model"):
        generate_profile(torch.nn.Linear(4, 4))


def test_first_divergence_names_the_step() -> None:
    reference = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    other = reference.copy()
    assert first_divergence(other, reference) is None
    other[1, 2] = 0
    assert first_divergence(other, reference) == 2


def test_depth_prefills_a_context_first_and_onnxruntime_agrees(llama: object) -> None:
    depth = 3
    sweep = depth_sweep(
        llama,
        [0, depth],
        prompt_length=PROMPT,
        output_length=OUTPUT,
        runs=1,
        warmup=0,
        backend="onnxruntime",
    )
    table = generation_table(sweep)
    assert table["depth"].tolist() == [0, depth]
    assert table["diverges_at"].isna().all()  # both depths agree with torch's tokens
    deep = sweep[1]
    per_token = deep.kv_bytes_per_token
    assert deep.kv_cache_bytes_measured == per_token * (depth + PROMPT + OUTPUT - 1)
    # the same tokens as transformers' greedy on the context and the prompt as one
    lm = causal_lm(llama)
    ids = generate.prompt_ids(lm, None, PROMPT, 1, 0)
    context = generate.prompt_ids(lm, None, depth, 1, 1)
    full = torch.from_numpy(np.concatenate([context, ids], axis=1))
    expected = llama.generate(  # type: ignore[attr-defined]
        full, max_new_tokens=OUTPUT, do_sample=False, min_new_tokens=OUTPUT
    )[:, depth + PROMPT :]
    assert deep.tokens == tuple(tuple(row) for row in expected.tolist())


def test_per_layer_tables_of_each_phase(llama: object, tmp_path: object) -> None:
    runs = 2
    g = generate_profile(
        llama, prompt_length=PROMPT, output_length=OUTPUT, runs=runs, warmup=0, layers=True
    )
    assert g.prefill_layers is not None and g.decode_layers is not None
    leaves = {
        name
        for name, module in llama.named_modules()  # type: ignore[attr-defined]
        if name and not list(module.children())
    }
    for table, phase_ms, samples in (
        (g.prefill_layers, g.ttft.median, runs),
        (g.decode_layers, g.inter_token.median, runs * (OUTPUT - 1)),  # type: ignore[union-attr]
    ):
        assert leaves <= set(table["layer"])
        assert (table.loc[table["layer"] == "lm_head", "samples"] == samples).all()
        # each layer's KV write is a row of its own, under the attention that makes it
        updates = table[table["layer"].str.endswith(".self_attn.cache_update")]
        assert len(updates) == 2 and (updates["latency_ms"] > 0).all()
        # the layers and the (unattributed) row add up to the phase's median
        assert table["latency_ms"].sum() == pytest.approx(phase_ms)
    assert "prefill top layers" in g.summary()
    # what the breakdown costs: the instrumented generations' own TPOT, one per run
    assert g.layers_tpot is not None and g.layers_tpot.n == runs
    assert g.profiling_cost == pytest.approx(g.layers_tpot.median / g.tpot.median)  # type: ignore[union-attr]
    assert "TPOT, layers timed" in g.summary()
    path = tmp_path / "layers.json"  # type: ignore[operator]
    back = GenerationProfile.from_json(g.to_json(path))
    assert back.decode_layers["layer"].tolist() == g.decode_layers["layer"].tolist()
    assert back.layers_tpot == g.layers_tpot
    ort = generate_profile(
        llama,
        backend="onnxruntime",
        prompt_length=PROMPT,
        output_length=3,
        runs=runs,
        warmup=0,
        layers=True,
        check_tokens=False,
    )
    assert ort.prefill_layers is not None and ort.decode_layers is not None
    for table, torch_table, samples in (
        (ort.prefill_layers, g.prefill_layers, runs),
        # the inputs of one decode step per generation kept (the middle: step 1 of 2)
        (ort.decode_layers, g.decode_layers, runs),
    ):
        timed = table[table["samples"] > 0]
        # ORT's kernels land on the torch tables' module paths: the projections, the
        # attention's own code (matmuls, cache concat), the norms and the head
        assert {"lm_head", "model.layers.0.self_attn.q_proj", "model.norm"} <= set(timed["layer"])
        # the cache's Concat nodes on the row torch's cache writes take
        assert {f"model.layers.{i}.self_attn.cache_update" for i in (0, 1)} <= set(timed["layer"])
        assert "model.layers.1.self_attn" in set(timed["layer"])
        assert set(table["layer"]) <= set(torch_table["layer"])
        assert (table.loc[table["layer"] == "lm_head", "samples"] == samples).all()
        assert table["latency_ms"].sum() == pytest.approx(
            ort.ttft.median if table is ort.prefill_layers else ort.inter_token.median  # type: ignore[union-attr]
        )
    assert ort.layers_tpot is not None and ort.layers_tpot.n == runs
    method = ort.layers_method
    assert method is not None and method["method"] == "blocks" and method["decode_step"] == 1
    assert method["decode"]["calls"] == runs and method["prefill"]["calls"] == runs
    assert method["decode"]["net_sum_ms"] <= method["decode"]["raw_sum_ms"]
    assert "per kernel (a chain of 200 one-float Neg nodes" in method["calibration"]
    # the layers of each phase add up to its blocks' plain times, whatever the profiler said
    for phase, table in (("prefill", ort.prefill_layers), ("decode", ort.decode_layers)):
        rows = table[table["layer"] != "(unattributed)"]
        blocks = method[phase]["blocks_sum_ms"]
        assert rows["latency_ms"].sum() == pytest.approx(blocks, rel=1e-6)  # 2 runs: means
    summary = ort.summary()
    assert "blocks timed plain" in summary and "decode step 1 of 2" in summary
    assert "rows are scaled per block (prefill " in summary
    assert "the per-layer pass" in summary
    back = GenerationProfile.from_json(ort.to_json())
    assert back.layers_method == method
    assert back.layer_sum_ratio("decode") == pytest.approx(ort.layer_sum_ratio("decode"))


def test_cache_updates_are_taken_out_of_their_callers_own_code() -> None:
    from workbench.backends.base import LayerTiming
    from workbench.backends.torch.decoder import with_cache_updates

    own = LayerTiming("attn", "Attention", (5.0, 3.0), {"scope": "self", "parent": None})
    whole = LayerTiming("attn", "Attention", (9.0, 7.0), {"scope": "container"})
    leaf = LayerTiming("attn.q", "Linear", (4.0, 4.0), {"scope": "leaf", "parent": "attn"})
    rows = with_cache_updates([whole, leaf, own], [{"attn": 1.5}, {"attn": 0.5}])
    by_scope = {(t.layer, t.detail.get("scope")): t.samples_ms for t in rows}
    assert by_scope[("attn", "container")] == (9.0, 7.0)  # the whole call keeps its time
    assert by_scope[("attn", "self")] == (3.5, 2.5)
    assert by_scope[("attn.cache_update", "leaf")] == (1.5, 0.5)
    assert [t.layer for t in rows][-1] == "attn.cache_update"


class _PluginDecoder(TorchDecoder):
    """A plugin's decoder: torch eager underneath, so its tokens are checkable."""

    calls = 0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        type(self).calls += 1
        return super().step(tokens)


class _DecodingPlugin(FakeBackend):
    """What a plugin adds to its backend to generate: one ``decoder`` method."""

    name = "fake-decoding"

    def decoder(
        self, model: object, device: str = "cpu", *, threads: int | None = None
    ) -> _PluginDecoder:
        return _PluginDecoder(model)


def test_a_plugin_backend_generates_through_its_decoder(llama: object) -> None:
    register("fake-decoding")(_DecodingPlugin)
    assert "fake-decoding" in generation_backends()
    before = _PluginDecoder.calls
    g = generate_profile(
        llama,
        backend="fake-decoding",
        prompt_length=PROMPT,
        output_length=OUTPUT,
        runs=1,
        warmup=0,
        layers=True,
    )
    assert _PluginDecoder.calls - before >= OUTPUT - 1  # its decoder ran the steps
    reference = generate_profile(llama, prompt_length=PROMPT, output_length=OUTPUT, runs=1)
    assert g.backend == "fake-decoding" and g.tokens == reference.tokens
    assert g.reference_backend == "torch" and g.diverges_at is None
    # a decoder with per-layer timings (this one inherits torch's) gives the tables
    assert g.prefill_layers is not None


def test_a_backend_without_a_decoder_is_one_line_naming_those_that_can(llama: object) -> None:
    class Plain(FakeBackend):  # a plugin without generation
        name = "fake-plain"

    register("fake-plain")(Plain)
    with pytest.raises(UnsupportedModelError) as caught:
        generate_profile(llama, backend="fake-plain")
    message = str(caught.value)
    assert "\n" not in message and "'fake-plain' cannot generate" in message
    can = message.split("can: ")[1].split(", ")
    assert {"torch", "onnxruntime", "torch-compile", "numba"} <= set(can)
    assert "fake-plain" not in can


def test_generation_is_refused_off_the_cpu_in_one_line(llama: object) -> None:
    from workbench.backends.base import get_backend
    from workbench.errors import DeviceUnavailableError

    for name in ("torch", "onnxruntime"):
        backend = get_backend(name)
        with pytest.raises(DeviceUnavailableError, match="CPU only") as caught:
            backend.decoder(llama, "cuda:0")  # type: ignore[attr-defined]
        assert "\n" not in str(caught.value)


def test_the_decoders_settings_hold_while_it_generates(llama: object) -> None:
    import contextlib

    inside: list[bool] = []
    state = {"on": False}

    class Setting(_PluginDecoder):
        @contextlib.contextmanager
        def settings(self):  # type: ignore[no-untyped-def]
            state["on"] = True
            yield
            state["on"] = False

        def step(self, tokens: np.ndarray) -> np.ndarray:
            inside.append(state["on"])
            return super().step(tokens)

    class Plugin(_DecodingPlugin):
        name = "fake-setting"

        def decoder(self, model: object, device: str = "cpu", *, threads: object = None) -> Setting:
            return Setting(model)

    register("fake-setting")(Plugin)
    generate_profile(llama, backend="fake-setting", prompt_length=PROMPT, output_length=3, runs=2)
    assert len(inside) >= 2 * 2 and all(inside) and not state["on"]
    # torch's own: the count applies inside and is restored after
    before = torch.get_num_threads()
    decoder = TorchDecoder(llama, threads=1)
    with decoder.settings():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_builtin_decoders_satisfy_the_protocol(llama: object) -> None:
    from workbench.backends.base import Decoder, GenerativeBackend, get_backend

    for name in ("torch", "onnxruntime"):
        backend = get_backend(name)
        assert isinstance(backend, GenerativeBackend)
        decoder = backend.decoder(llama)  # type: ignore[attr-defined]
        try:
            assert isinstance(decoder, Decoder)
            first = decoder.prefill(np.arange(PROMPT, dtype=np.int64)[None])
            assert first.shape == (1,) and decoder.step(first).shape == (1,)
        finally:
            decoder.close()
    compiled = get_backend("torch-compile")
    assert isinstance(compiled, GenerativeBackend)
    if "cpu" in compiled.devices():  # a C++ compiler is here; its graphs compile on use
        from workbench.backends.torch.compiled import CompiledDecoder

        decoder = compiled.decoder(llama)  # type: ignore[attr-defined]
        assert isinstance(decoder, CompiledDecoder) and isinstance(decoder, Decoder)
        assert decoder.call is not llama and decoder.compiles == 0


def test_the_memory_split_rest_is_measured_or_says_why(llama: object) -> None:
    from workbench.profiling.generate import memory_rest

    # what generating added, less the cache and the runtime's own weight copy
    assert memory_rest(1000, 5000, 700, 2000) == (1300, None)
    rest, why = memory_rest(1000, 1500, 700, 2000)
    assert rest is None and why is not None and "reused memory freed earlier" in why
    rest, why = memory_rest(1000, None, 700, 0)
    assert rest is None and why is not None and "clear_refs" in why
    g = generate_profile(llama, prompt_length=PROMPT, output_length=OUTPUT, runs=1, warmup=0)
    if g.memory_rest_bytes is None:  # a process that reuses freed memory says so
        assert g.memory_rest_unavailable
    else:
        assert g.process_rss_added_bytes is not None
        assert g.memory_rest_bytes == g.process_rss_added_bytes - g.kv_cache_bytes_measured
    assert "rest" in dict(g.facts())
    back = GenerationProfile.from_json(g.to_json())
    assert back.memory_rest_bytes == g.memory_rest_bytes
    assert back.memory_rest_unavailable == g.memory_rest_unavailable
