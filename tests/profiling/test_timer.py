"""Measurement statistics checked exactly with a fake clock."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from workbench.profiling.timer import Measurement, Timer
from workbench.testing import FakeClock


def test_statistics_match_numpy() -> None:
    samples = tuple(float(x) for x in np.random.default_rng(1).gamma(4.0, 1.0, size=101))
    m = Measurement(samples)
    assert m.n == 101
    assert m.median == pytest.approx(np.median(samples))
    assert m.mean == pytest.approx(np.mean(samples))
    assert m.p90 == pytest.approx(np.percentile(samples, 90))
    assert m.p99 == pytest.approx(np.percentile(samples, 99))
    assert m.std == pytest.approx(np.std(samples, ddof=1))
    assert m.min == min(samples)
    lo, hi = m.median_ci
    assert lo <= m.median <= hi
    assert m.throughput(32) == pytest.approx(32_000 / m.median)


def test_median_ci_covers_the_true_median_most_of_the_time() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        lo, hi = Measurement(tuple(rng.exponential(1.0, 41))).median_ci
        covered += lo <= np.log(2) <= hi
    assert 0.9 <= covered / 400 <= 0.995  # a 95% interval, distribution-free


def test_noise_flag_uses_iqr_over_median() -> None:
    assert not Measurement((1.0, 1.01, 0.99, 1.0, 1.02)).noisy
    assert Measurement((1.0, 1.5, 0.6, 1.3, 0.8)).noisy


def test_timer_keeps_warmup_apart_and_counts_exactly() -> None:
    clock = FakeClock([0.001, 0.003])
    with clock.installed():
        m = Timer(clock.tick, warmup=2, warmup_s=0, min_repeats=6, max_repeats=6).measure()
    assert m.warmup_ms == pytest.approx((1.0, 3.0))
    assert m.samples_ms == pytest.approx((1.0, 3.0) * 3)
    assert m.median == pytest.approx(2.0)


def test_timer_stops_early_when_precise_enough() -> None:
    clock = FakeClock([0.002])
    with clock.installed():
        m = Timer(clock.tick, warmup=1, warmup_s=0, min_repeats=10, budget_s=100).measure()
    assert m.n == 10  # constant samples: the CI is zero as soon as min_repeats is reached


def test_timer_respects_the_time_budget() -> None:
    clock = FakeClock([0.010, 0.030, 0.020, 0.050])  # noisy: never precise enough
    with clock.installed():
        m = Timer(
            clock.tick, warmup=0, warmup_s=0, min_repeats=5, budget_s=1.0, target_rel_ci=0.0
        ).measure()
    assert 1.0 <= sum(m.samples_ms) / 1000 < 1.06


def test_gc_is_paused_while_timing_and_restored() -> None:
    seen = []
    clock = FakeClock([0.001])

    def body() -> None:
        seen.append(gc.isenabled())
        clock.tick()

    with clock.installed():
        Timer(body, warmup=1, warmup_s=0, min_repeats=3, max_repeats=3).measure()
    assert seen and not any(seen)
    assert gc.isenabled()


def test_round_trip_keeps_samples() -> None:
    m = Measurement((1.0, 2.0, 3.0), (9.0,), "x")
    again = Measurement.from_dict(m.to_dict())
    assert again.samples_ms == m.samples_ms and again.warmup_ms == (9.0,)
    assert again.median == 2.0
    assert "median" in m._repr_html_()


def test_empty_measurement_is_refused() -> None:
    with pytest.raises(ValueError):
        Measurement(())
