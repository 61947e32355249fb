"""Measurement statistics checked exactly with a fake clock."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from workbench.backends.cpus import Contention, CpuBudget, CpuSample
from workbench.errors import InvalidArgumentError
from workbench.profiling.measure import remeasure
from workbench.profiling.timer import Measurement, Ratio, Timer
from workbench.testing import FakeClock

QUIET = (CpuSample({0: (0, 0, 0), 1: (0, 0, 0)}, 0, (0.2,)),) * 2
#: one second of two CPUs fully busy, 0.6 CPU of it ours; load 3.8
BUSY = (
    CpuSample({0: (0, 0, 0), 1: (0, 0, 0)}, 0, (3.5,)),
    CpuSample({0: (100, 100, 0), 1: (100, 100, 0)}, 60, (3.8,)),
)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Install fake CPU counters: ``machine(before, after)`` for the next measurements."""

    def install(samples: tuple[CpuSample, CpuSample]) -> None:
        readings = iter(samples * 10)
        monkeypatch.setattr(Timer, "probe", staticmethod(lambda: next(readings)))
        monkeypatch.setattr(Timer, "budget", staticmethod(lambda: CpuBudget(2, None, 2)))

    return install


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


def test_gc_is_paused_while_timing_and_restored(monkeypatch) -> None:
    seen = []
    clock = FakeClock([0.001])
    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: collected.append(generation) or 0)

    def body() -> None:
        seen.append(gc.isenabled())
        clock.tick()

    with clock.installed():
        Timer(body, warmup=1, warmup_s=0, min_repeats=3, max_repeats=3).measure()
    assert seen and not any(seen)
    assert gc.isenabled()
    # the young generations only: a full collection costs every measurement up to a second
    assert collected == [1]


def test_round_trip_keeps_samples() -> None:
    m = Measurement((1.0, 2.0, 3.0), (9.0,), "x")
    again = Measurement.from_dict(m.to_dict())
    assert again.samples_ms == m.samples_ms and again.warmup_ms == (9.0,)
    assert again.median == 2.0
    assert "median" in m._repr_html_()


def test_empty_measurement_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="at least one sample"):
        Measurement(())


def steady(**options: object) -> Measurement:
    clock = FakeClock([0.002])
    with clock.installed():
        return Timer(clock.tick, warmup=0, warmup_s=0, min_repeats=10, **options).measure()


def test_a_contended_machine_makes_steady_samples_noisy(machine) -> None:
    machine(BUSY)
    m = steady()
    assert m.iqr == 0 and m.contention is not None
    assert m.contention.others_cpus == pytest.approx(1.4)
    assert m.noisy
    assert m.verdict == "noisy: other work took 1.4 of 2 CPUs; load 3.8 on 2 CPUs"
    assert "load 3.8 on 2 CPUs" in repr(m)


def test_a_quiet_machine_leaves_the_verdict_to_the_samples(machine) -> None:
    machine(QUIET)
    assert steady().verdict == ""
    spread = Measurement((1.0, 1.5, 0.6, 1.3, 0.8), contention=Contention(2, 2))
    assert spread.verdict == "noisy: spread (IQR) 50% of the median"


def test_more_threads_than_cpus_is_in_the_verdict(machine) -> None:
    machine(QUIET)
    assert steady(threads=8).verdict == "noisy: 8 threads on 2 CPUs (oversubscribed)"
    assert steady(threads=2).verdict == ""


def test_the_verdict_survives_json(machine) -> None:
    machine(BUSY)
    m = steady().with_attempts(3)
    again = Measurement.from_dict(m.to_dict())
    assert again.contention == m.contention
    assert again.verdict == m.verdict and again.verdict.endswith("(measured 3 times)")
    assert m.stats()["verdict"] == m.verdict


def test_remeasure_stops_at_the_first_clean_measurement() -> None:
    noisy, clean = Measurement((1.0, 1.5, 0.6, 1.3, 0.8)), Measurement((1.0, 1.0, 1.01))
    results = iter([noisy, clean, noisy])
    m = remeasure(lambda: next(results), attempts=3)
    assert m.samples_ms == clean.samples_ms and m.attempts == 2 and not m.noisy


def test_remeasure_gives_up_bounded_and_keeps_the_least_noisy() -> None:
    wide = Measurement((1.0, 3.0, 0.2, 2.5, 0.5, 4.0, 0.1))
    narrower = Measurement((1.0, 1.5, 0.6, 1.3, 0.8, 1.1, 0.9))
    calls = []

    def measure() -> Measurement:
        calls.append(1)
        return [wide, narrower, wide][len(calls) - 1]

    m = remeasure(measure, attempts=3)
    assert len(calls) == 3
    assert m.samples_ms == narrower.samples_ms and m.attempts == 3 and m.noisy
    assert m.verdict.endswith("(measured 3 times)")


def test_a_ratio_of_noisy_medians_carries_its_interval() -> None:
    base = Measurement((10.0, 10.1, 9.9, 10.0, 10.05))
    assert Ratio.of(base, Measurement((2.0, 2.0, 2.01, 1.99, 2.0))).text() == "5×"
    noisy = Measurement((0.1, 5.0, 0.2, 10.0, 3.0))
    ratio = Ratio.of(base, noisy)
    lo, hi = noisy.median_ci
    assert ratio.uncertain
    assert (ratio.low, ratio.high) == pytest.approx((9.9 / hi, 10.1 / lo))
    assert ratio.text().startswith("~3.33× (uncertain: ")
