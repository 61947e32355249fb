"""Every scenario on digits-cnn with onnxruntime and torch: short runs that check themselves.

Timing on a shared machine is noisy, so the checks are the ones a run must pass anyway:
far below capacity a server query waits for nothing (its p99 is close to a query run
alone), far above capacity queries are late or dropped and the result says so.
"""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.scenarios import ScenarioResult, scenario

BACKENDS = ["onnxruntime", "torch"]
# One intra-op thread: on a busy shared test machine a runtime's thread team waits for
# descheduled workers (hundreds of ms per inference); these tests check the scenario
# machinery, not the runtimes' speed.
TINY = {"min_queries": 16, "min_duration_s": 0.05, "warmup": 1, "options": {"threads": 1}}


@pytest.fixture(scope="module")
def model() -> wb.Model:
    return wb.samples.load("digits-cnn")


def _times_are_ordered(result: ScenarioResult) -> None:
    ran = result.completed
    assert (ran["issue_s"] >= ran["scheduled_s"] - 1e-9).all()
    assert (ran["start_s"] >= ran["issue_s"]).all() and (ran["completion_s"] > ran["start_s"]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_stream_multi_stream_and_offline(model: wb.Model, backend: str) -> None:
    single = scenario(model, "single-stream", backend, **TINY)  # type: ignore[arg-type]
    multi = scenario(model, "multi-stream", backend, samples_per_query=2, interval_ms=5.0, **TINY)  # type: ignore[arg-type]
    bulk = scenario(model, "offline", backend, batch_size=4, **TINY)  # type: ignore[arg-type]
    for result in (single, multi, bulk):
        _times_are_ordered(result)
        assert len(result.queries) * (4 if result is bulk else 1) >= 16
        assert result.duration_s >= 0.05 and result.throughput_per_s > 0
        assert result.backend == backend and "digits-cnn" in result.model
    assert single.valid and bulk.valid  # they check only their minimums, which they meet
    assert (multi.queries["samples"] == 2).all() and bulk.samples % 4 == 0
    assert multi.valid == (multi.late <= 0.01 * len(multi.queries))


@pytest.mark.parametrize("backend", BACKENDS)
def test_server_below_and_above_capacity(model: wb.Model, backend: str) -> None:
    single = scenario(model, "single-stream", backend, **TINY)  # type: ignore[arg-type]
    capacity = 1e3 / single.p50_ms
    calm = scenario(model, "server", backend, rate_per_s=min(capacity / 20, 200.0), **TINY)  # type: ignore[arg-type]
    _times_are_ordered(calm)
    assert calm.dropped == 0
    # no queueing at a twentieth of capacity: a typical query takes what it takes alone
    assert calm.p50_ms <= 3 * single.p99_ms + 1.0
    target = 2 * single.p50_ms
    flooded = scenario(
        model,
        "server",
        backend,
        rate_per_s=20 * capacity,
        target_latency_ms=target,
        drop_after_ms=5 * target,
        **TINY,  # type: ignore[arg-type]
    )
    assert not flooded.valid and flooded.late + flooded.dropped > 0
    assert any(
        "dropped" in r or "over the target" in r or "fell behind" in r for r in flooded.reasons
    )
    assert "INVALID" in flooded.summary()
