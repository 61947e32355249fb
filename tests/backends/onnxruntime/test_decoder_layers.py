"""The ORT decoder's per-layer pass: sampled decode steps on a profiling copy that shares
the bound cache, and the node profiler's own per-kernel cost taken off each kernel."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.onnxruntime.decoder import exported_decoder, profiled_steps
from workbench.backends.onnxruntime.trace import TraceRun, less_overhead, profiler_overhead
from workbench.testing import tiny_llama

pytest.importorskip("transformers")


def test_profiled_steps_are_one_in_every_consecutive_in_the_middle() -> None:
    assert profiled_steps(31, 8) == [14, 15, 16, 17]
    assert profiled_steps(16, 8) == [8, 9]
    assert profiled_steps(7, 8) == [4]  # fewer steps than the stride: one, the middle
    assert profiled_steps(2, 8) == [1]
    assert profiled_steps(0, 8) == []  # no decode step (N = 1)


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


def test_sampled_steps_share_the_cache_and_record_the_calibration() -> None:
    llama = tiny_llama(vocab_size=100, context=16)
    decoder = exported_decoder(llama, threads=1)
    decoder.profile_every = 3
    ids = np.arange(4, dtype=np.int64).reshape(1, 4)
    output, runs = 8, 2
    try:
        token = decoder.prefill(ids)
        for _ in range(output - 1):
            token = decoder.step(token)
        plain_cache = [value.numpy() for value in decoder._past]
        prefill, decode = decoder.phase_layer_timings(ids, output, None, runs)
        # the cache went from session to session and the same tokens were fed back: the
        # last sampled generation leaves the plain generation's cache
        sampled_cache = [value.numpy() for value in decoder._past]
        assert plain_cache[0].shape[2] == 4 + output - 1
        for plain, sampled in zip(plain_cache, sampled_cache, strict=True):
            np.testing.assert_allclose(sampled, plain, rtol=1e-5, atol=1e-6)
    finally:
        decoder.close()
    head = {t.layer: t for t in decode}["lm_head"]
    assert len(head.samples_ms) == runs * 3  # steps 3, 4 and 5 of 7, in each recorded run
    assert len({t.layer: t for t in prefill}["lm_head"].samples_ms) == runs
    assert [len(t) for t in decoder.layer_times] == [output] * runs  # every call timed
    method = decoder.layers_method
    assert method["profiled_steps"] == [3, 4, 5] and method["decode_steps"] == output - 1
    assert method["decode"]["calls"] == runs * 3 and method["prefill"]["calls"] == runs
    for phase in ("prefill", "decode"):
        facts = method[phase]
        taken = facts["raw_sum_ms"] - facts["net_sum_ms"]
        # at most the calibrated cost on every kernel (less where a kernel was shorter)
        assert 0 <= taken <= facts["kernels_per_call"] * method["profiler_overhead_ms"] + 1e-9
    assert "3 of 7 decode steps profiled (one in 3, steps 3-5)" in decoder.notes[-1]
