"""The ORT decoder's per-layer pass: the decoder cut into blocks timed in plain sessions on
the kept inputs of a generation's calls, each block's time split among its modules by the
node profiler (its own per-kernel cost taken off), the generations themselves plain."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from workbench.backends.base import LayerTiming
from workbench.backends.onnxruntime.decoder import (
    block_scaled,
    exported_decoder,
    middle_step,
    run_bound,
)
from workbench.backends.onnxruntime.decoder_blocks import BlockChain, block_of, time_blocks
from workbench.backends.onnxruntime.trace import (
    NodeMap,
    TraceRun,
    less_overhead,
    profiler_overhead,
)
from workbench.errors import BackendError
from workbench.loaders.causal_lm import label_modules
from workbench.testing import tiny_llama

pytest.importorskip("transformers")


def test_block_of_cuts_a_path_after_its_first_number() -> None:
    assert block_of("model.layers.3.mlp.up_proj") == "model.layers.3"
    assert block_of("model.layers.0.self_attn.cache_update") == "model.layers.0"
    assert block_of("model.layers.11") == "model.layers.11"
    assert block_of("lm_head") == "lm_head"
    assert block_of("LlamaForCausalLM") == "LlamaForCausalLM"


def test_middle_step_is_the_decode_s_middle() -> None:
    assert middle_step(31) == 16
    assert middle_step(7) == 4
    assert middle_step(1) == 1
    assert middle_step(0) is None  # no decode step (N = 1)


def test_less_overhead_takes_the_cost_off_every_kernel_floored_at_zero() -> None:
    run = TraceRun([("a", "MatMul", "CPU", 0.010), ("b", "Shape", "CPU", 0.001)], 0.02, 7)
    (net,) = less_overhead([run], 0.002)
    assert [e[3] for e in net.events] == pytest.approx([0.008, 0.0])
    assert (net.total_ms, net.peak_bytes) == (0.02, 7)
    assert run.events[0][3] == 0.010  # the parsed trace is not changed


def test_profiler_overhead_is_reported_less_plain_per_node() -> None:
    o = profiler_overhead(1, nodes=20, runs=3)
    assert (o.nodes, o.runs, o.threads) == (20, 3, 1)
    assert o.reported_ms > 0 and o.plain_ms > 0
    assert o.kernel_ms == pytest.approx(max(0.0, o.reported_ms - o.plain_ms))
    assert "20 one-float Neg nodes at 1 thread(s)" in o.describe()


def test_block_scaled_splits_each_block_s_time_by_its_kernels() -> None:
    node_map = NodeMap(
        [
            ("q", "MatMul", ["model.layers.0.self_attn.q_proj"]),
            ("up", "MatMul", ["model.layers.0.mlp.up_proj"]),
            ("tiny", "Shape", ["model.layers.1.mlp.act_fn"]),
            ("head", "MatMul", ["lm_head"]),
        ],
        {},
        {},
        ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"],
    )
    kernels = [("q", "MatMul", 0.4), ("up", "MatMul", 0.8), ("tiny", "Shape", 0.002)]
    raw = TraceRun([(name, op, "", ms) for name, op, ms in [*kernels, ("head", "MatMul", 1.0)]])
    net = less_overhead([raw], 0.002)[0]  # tiny's kernel nets to 0
    blocks = {"model.layers.0": 1.5, "model.layers.1": 0.01}  # lm_head's block not timed
    (timings, factors) = block_scaled([raw], [net], [blocks], node_map)
    ms = {t.layer: t.samples_ms for t in timings}
    # 0.398 and 0.798 net: the block's 1.5 ms split 1 : 2 (about)
    assert ms["model.layers.0.self_attn.q_proj"][0] == pytest.approx(1.5 * 0.398 / 1.196)
    assert ms["model.layers.0.mlp.up_proj"][0] == pytest.approx(1.5 * 0.798 / 1.196)
    assert factors["model.layers.0"] == pytest.approx(1.5 / 1.196)
    # a block whose kernels net to 0 takes the reported shares: all of it here
    assert ms["model.layers.1.mlp.act_fn"][0] == pytest.approx(0.01)
    assert factors["model.layers.1"] == pytest.approx(0.01 / 0.002)
    assert ms["lm_head"][0] == pytest.approx(0.998)  # no block time: its net kernels
    assert factors["lm_head"] == 1.0
    assert all(isinstance(t, LayerTiming) for t in timings)


def test_block_scaled_gives_each_layer_one_share_so_rows_add_up_to_the_block() -> None:
    layers = [f"model.layers.0.mlp.{name}" for name in ("gate_proj", "up_proj", "down_proj")]
    node_map = NodeMap([(n, "MatMul", [layer]) for n, layer in zip("abc", layers, strict=True)],
                       {}, {}, layers)  # fmt: skip
    # the profiler's calls disagree: each makes another kernel slow
    calls = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    runs = [
        TraceRun([(n, "MatMul", "", ms) for n, ms in zip("abc", c, strict=True)]) for c in calls
    ]
    blocks = [{"model.layers.0": ms} for ms in (3.0, 3.3, 3.6)]
    (timings, _) = block_scaled(runs, runs, blocks, node_map)
    medians = [float(np.median(t.samples_ms)) for t in timings]
    # one share each (the median share, 0.1 / 0.3 of the block): a third of each call's
    # time; split call by call, each median would have been 0.1 of a call's, 0.33 in all
    assert medians == pytest.approx([1.1, 1.1, 1.1])
    assert sum(medians) == pytest.approx(float(np.median([3.0, 3.3, 3.6])))


def test_block_chain_computes_what_the_whole_graph_does() -> None:
    llama = tiny_llama(vocab_size=100, context=16)
    decoder = exported_decoder(llama, threads=1)
    try:
        proto = onnx.load(str(decoder.path))
        label_modules(proto, decoder.modules, outer_scopes=decoder.outer_scopes)
        chain = BlockChain(proto, threads=1)
        # one block per decoder layer, the embeddings, the final norm and the head
        assert {"model.layers.0", "model.layers.1", "model.embed_tokens", "lm_head"} <= set(
            chain.blocks
        )
        assert {block_of(b) for b in chain.blocks} == set(chain.blocks)
        decoder.prefill(np.arange(5, dtype=np.int64).reshape(1, 5))
        feeds = decoder.feeds(np.array([[7]], dtype=np.int64))  # a decode step on the cache
        whole = run_bound(decoder.session, feeds)
        values, block_ms = chain.run(feeds)
        names = [o.name for o in decoder.session.get_outputs()]
        for name, expected in zip(names, whole, strict=True):  # logits and every present
            np.testing.assert_allclose(values[name].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        assert set(block_ms) == set(chain.blocks) and all(v > 0 for v in block_ms.values())
        assert set(chain.median_run(feeds, 2)) == set(chain.blocks)
    finally:
        decoder.close()


def test_blocks_are_timed_on_one_shared_pool_in_a_process_of_their_own(tmp_path) -> None:
    llama = tiny_llama(vocab_size=100, context=16)
    decoder = exported_decoder(llama, threads=2)
    try:
        proto = onnx.load(str(decoder.path))
        label_modules(proto, decoder.modules, outer_scopes=decoder.outer_scopes)
        labelled = tmp_path / "layers.onnx"
        onnx.save(proto, str(labelled))
        decoder.prefill(np.arange(5, dtype=np.int64).reshape(1, 5))
        decode = decoder.feeds(np.array([[7]], dtype=np.int64))  # numpy and ORT values
        decoder.start(1)
        prefill = decoder.feeds(np.arange(3, dtype=np.int64).reshape(1, 3))
        blocks, subgraphs, times = time_blocks(labelled, 2, [prefill, decode], 2)
        chain = BlockChain(proto, threads=1)
        assert blocks == chain.blocks and subgraphs == len(chain.graphs)
        assert len(times) == 2  # one per call, every block timed
        assert all(set(t) == set(blocks) and min(t.values()) > 0 for t in times)
        assert list(tmp_path.iterdir()) == [labelled]  # its exchange folder is gone
        with pytest.raises(BackendError, match=r"^timing the decoder's blocks failed: "):
            time_blocks(tmp_path / "missing.onnx", 2, [decode], 1)
    finally:
        decoder.close()


def test_per_layer_pass_keeps_the_generations_plain_and_times_every_block() -> None:
    llama = tiny_llama(vocab_size=100, context=16)
    decoder = exported_decoder(llama, threads=1)
    ids = np.arange(4, dtype=np.int64).reshape(1, 4)
    output, runs = 8, 2
    try:
        token = decoder.prefill(ids)
        for _ in range(output - 1):
            token = decoder.step(token)
        plain_cache = [value.numpy() for value in decoder._past]
        prefill, decode = decoder.phase_layer_timings(ids, output, None, runs)
        # the pass's own calls never touched the cache: the last generation left the
        # plain generation's
        sampled_cache = [value.numpy() for value in decoder._past]
        for plain, sampled in zip(plain_cache, sampled_cache, strict=True):
            np.testing.assert_allclose(sampled, plain, rtol=1e-5, atol=1e-6)
    finally:
        decoder.close()
    method = decoder.layers_method
    assert method["method"] == "blocks" and method["decode_step"] == 4
    assert [len(t) for t in decoder.layer_times] == [output] * runs  # every call timed
    for phase, table in (("prefill", prefill), ("decode", decode)):
        head = {t.layer: t for t in table}["lm_head"]
        assert len(head.samples_ms) == runs  # one kept call per recorded generation
        facts = method[phase]
        assert facts["calls"] == runs
        # every timed block got its time split: the layers of each block add up to it
        per_block: dict[str, float] = {}
        for t in table:
            if t.samples_ms:
                per_block[block_of(t.layer)] = per_block.get(block_of(t.layer), 0.0) + float(
                    np.median(t.samples_ms)
                )
        assert set(method["blocks"]) <= set(per_block)
        assert set(facts["block_scale"]) == set(method["blocks"])
        taken = facts["raw_sum_ms"] - facts["net_sum_ms"]
        assert 0 <= taken <= facts["kernels_per_call"] * method["profiler_overhead_ms"] + 1e-9
    assert method["pass_s"] > 0
    assert "decode step 4 of 7" in decoder.notes[-1]
