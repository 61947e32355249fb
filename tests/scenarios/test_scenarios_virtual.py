"""Each scenario on a known latency model in simulated time: exact numbers, own checks."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends import base
from workbench.errors import InputError, ParameterError
from workbench.profiling.measure import TimingOptions
from workbench.scenarios import ScenarioResult, VirtualClock, scenario, slo
from workbench.testing import toy_mlp
from workbench.testing.serving import LatencyModelBackend

# the conftest's latency model: a batch of b samples takes 1 ms + 0.25 ms * b
BASE_MS, PER_SAMPLE_MS = 1.0, 0.25
ALONE_MS = BASE_MS + PER_SAMPLE_MS  # one sample: 1.25 ms, so 800 queries/s at most


def run(clock: VirtualClock, kind: str, **settings: object) -> ScenarioResult:
    return scenario(toy_mlp(), kind, "latency-model", clock=clock, warmup=1, **settings)  # type: ignore[arg-type]


def test_single_stream_times_every_query(clock: VirtualClock) -> None:
    result = run(clock, "single-stream", min_queries=300, min_duration_s=0.1)
    assert result.valid and len(result.queries) == 300
    np.testing.assert_allclose(result.queries["latency_ms"], ALONE_MS)
    assert result.p50_ms == pytest.approx(ALONE_MS) and result.p99_ms == pytest.approx(ALONE_MS)
    assert result.throughput_per_s == pytest.approx(800.0)
    # the run lasts until both minimums are met: the last query is the first to end after 1 s
    longer = run(clock, "single-stream", min_queries=10, min_duration_s=1.0)
    assert longer.queries["completion_s"].iloc[-2] < 1.0 <= longer.duration_s


def test_server_far_below_capacity_matches_single_stream(clock: VirtualClock) -> None:
    single = run(clock, "single-stream", min_queries=256, min_duration_s=0.1)
    result = run(clock, "server", rate_per_s=2.0, target_latency_ms=5.0, min_duration_s=1.0)
    assert result.valid, result.reasons
    assert result.p50_ms == pytest.approx(single.p50_ms)
    assert result.p99_ms == pytest.approx(single.p99_ms, rel=0.05)
    assert result.late == result.dropped == 0
    queries = result.queries
    assert (queries["issue_s"] == queries["scheduled_s"]).all()
    assert (queries["start_s"] >= queries["issue_s"]).all()
    assert (queries["completion_s"] > queries["start_s"]).all()


def test_server_above_capacity_is_late_drops_and_says_so(clock: VirtualClock) -> None:
    result = run(
        clock,
        "server",
        rate_per_s=2000.0,
        target_latency_ms=5.0,
        drop_after_ms=50.0,
        min_duration_s=0.5,
    )
    assert not result.valid
    assert result.dropped > 0 and result.late > 0
    text = " ".join(result.reasons)
    assert "queries dropped after waiting over 50 ms" in text and "over the target 5 ms" in text
    # the system kept serving at its capacity while dropping the rest
    assert result.samples / result.duration_s == pytest.approx(800.0, rel=0.1)
    assert "INVALID" in result.summary() and "dropped" in result._repr_html_()


def test_dynamic_batching_serves_what_one_at_a_time_cannot(clock: VirtualClock) -> None:
    settings = {"rate_per_s": 2000.0, "target_latency_ms": 10.0, "min_duration_s": 0.5}
    alone = run(clock, "server", **settings)
    batched = run(clock, "server", max_batch=8, batch_window_ms=1.0, **settings)
    assert not alone.valid and batched.valid, batched.reasons
    assert batched.queries["batch"].max() > 1 and batched.queries["batch"].max() <= 8
    # a batch's queries start and finish together, after waiting at most the window
    first = batched.queries[batched.queries["batch"] > 1].iloc[0]
    together = batched.queries[batched.queries["start_s"] == first["start_s"]]
    assert len(together) == first["batch"] and together["completion_s"].nunique() == 1
    assert batched.throughput_per_s == pytest.approx(2000.0, rel=0.1)


def test_multi_stream_keeps_its_interval_or_counts_misses(clock: VirtualClock) -> None:
    kept = run(
        clock,
        "multi-stream",
        samples_per_query=8,
        interval_ms=10.0,
        min_queries=50,
        min_duration_s=0.1,
    )
    assert kept.valid and kept.late == 0 and len(kept.queries) == 50
    np.testing.assert_allclose(kept.queries["latency_ms"], BASE_MS + 8 * PER_SAMPLE_MS)
    np.testing.assert_allclose(np.diff(kept.queries["issue_s"]), 0.010)
    # 3 ms queries every 1.5 ms: query k starts 1.5k ms late, late beyond 2 ms from k = 2
    missed = run(
        clock,
        "multi-stream",
        samples_per_query=8,
        interval_ms=1.5,
        min_queries=50,
        min_duration_s=0.0,
    )
    assert not missed.valid and missed.late == 48
    assert "48 of 50 queries missed their 1.5 ms interval" in missed.reasons[0]


def test_offline_throughput_is_batch_over_batch_time(clock: VirtualClock) -> None:
    result = run(clock, "offline", batch_size=32, min_queries=1000, min_duration_s=0.0)
    assert result.valid and result.samples == 32 * 32  # 32 batches reach 1000 samples
    np.testing.assert_allclose(result.queries["service_ms"], BASE_MS + 32 * PER_SAMPLE_MS)
    assert result.throughput_per_s == pytest.approx(32 / 9e-3)
    assert result.latency is not None and "per batch" in result.latency.label


def test_cost_and_energy_are_reported_not_invented(clock: VirtualClock) -> None:
    plain = run(clock, "offline", min_queries=64, min_duration_s=0.0)
    assert plain.cost_per_million is None
    priced = run(clock, "offline", min_queries=64, min_duration_s=0.0, price_per_hour=3.6)
    # 3.6 per hour is 0.001 per second; a million predictions take 1e6 / throughput seconds
    assert priced.cost_per_million == pytest.approx(0.001 * 1e6 / priced.throughput_per_s)
    assert "cost:" in priced.summary()
    estimated = run(clock, "offline", min_queries=64, min_duration_s=0.0, tdp_watts=100.0)
    assert estimated.energy.estimate_joules == pytest.approx(100.0 * estimated.duration_s)
    assert "ESTIMATE, not measured" in estimated.summary()


def test_result_json_round_trip(clock: VirtualClock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run(clock, "server", rate_per_s=2000.0, drop_after_ms=20.0, min_duration_s=0.2)
    assert result.dropped > 0  # NaN times of dropped queries must survive JSON
    path = tmp_path / "server.json"
    result.to_json(path)
    back = ScenarioResult.from_json(path)
    assert back.reasons == result.reasons and back.settings == result.settings
    assert back.queries.dtypes.equals(result.queries.dtypes)
    assert np.allclose(back.queries["latency_ms"], result.queries["latency_ms"], equal_nan=True)
    assert back.metrics() == pytest.approx(result.metrics(), nan_ok=True)


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        ("server", {}, "needs rate_per_s"),
        ("offline", {"batch_size": 0}, "batch_size must be at least 1"),
        ("bursty", {}, "unknown scenario 'bursty'"),
        ("offline", {"price_per_hour": -1.0}, "price_per_hour must be a positive number"),
    ],
)
def test_bad_settings_say_what_is_wrong(
    clock: VirtualClock, kind: str, settings: dict, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        run(clock, kind, **settings)


class _TickingClock(VirtualClock):
    """Virtual time that also moves 0.4 ms on every read: the gap a real clock shows
    between a query's completion and the loop's next look at the time."""

    def now(self) -> float:
        self.advance(0.0004)
        return super().now()


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("single-stream", {}),
        ("offline", {"batch_size": 4}),
        ("multi-stream", {"samples_per_query": 2, "interval_ms": 5.0}),
    ],
)
def test_a_closed_loop_run_never_stops_short_of_its_minimum_duration(
    clock: VirtualClock, kind: str, settings: dict[str, object]
) -> None:
    # the clock fixture is here for its clean-up of the latency-model registration
    ticking = _TickingClock()
    base.register("latency-model")(lambda: LatencyModelBackend(ticking, BASE_MS, PER_SAMPLE_MS))
    for minimum_ms in np.arange(5.0, 25.0, 0.35):
        result = scenario(
            toy_mlp(), kind, "latency-model", clock=ticking, warmup=1,
            min_queries=1, min_duration_s=minimum_ms / 1e3, **settings,  # type: ignore[arg-type]
        )  # fmt: skip
        assert result.duration_s >= minimum_ms / 1e3 and not any(
            "shorter than the minimum" in r for r in result.reasons
        ), (minimum_ms, result.reasons)


def test_the_warm_up_comes_from_the_shared_timing_options(clock: VirtualClock) -> None:
    quick = TimingOptions(warmup=0, budget_s=5.0)  # a scenario reads the warm-up only
    result = scenario(
        toy_mlp(), "single-stream", "latency-model", clock=clock, timing=quick, min_queries=10
    )
    assert result.valid and len(result.queries) >= 10
    with pytest.raises(ParameterError, match="warmup is given twice"):
        scenario(toy_mlp(), "single-stream", "latency-model", clock=clock, warmup=1, timing=quick)
    with pytest.raises(ParameterError, match="warmup is given twice"):
        slo(toy_mlp(), 5.0, ["latency-model"], clock=clock, warmup=1, timing=quick)
