"""Peak memory: the background RSS sampler sees a run's allocations."""

from __future__ import annotations

import numpy as np

from workbench.profiling.memory import RssSampler, peak_memory
from workbench.testing import toy_cnn


def test_sampler_sees_a_transient_allocation() -> None:
    with RssSampler(interval_s=0.0005) as rss:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched so it is resident
        block[::512] += 1
        del block
    assert rss.peak_bytes - rss.before_bytes > 32 * 2**20


class _Failing:
    device = "cpu"

    def run(self, inputs):
        raise RuntimeError("boom")


def test_peak_memory_of_a_run_and_of_a_failing_run() -> None:
    import workbench as wb

    model = toy_cnn()
    session = wb.backend("onnxruntime").compile(model, "cpu")
    report = peak_memory(session, model.example_inputs(4))
    assert report["peak_bytes"] >= report["rss_before_bytes"] > 0
    assert report["run_delta_bytes"] == report["peak_bytes"] - report["rss_before_bytes"]
    assert "boom" in peak_memory(_Failing(), {})["error"]
