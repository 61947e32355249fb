"""The load generator: a Poisson schedule of the stated rate, issued on time (or seen late)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.scenarios.clock import VirtualClock
from workbench.scenarios.loadgen import LoadGenerator, ScheduledArrivals, poisson_arrivals
from workbench.scenarios.result import MINIMUMS, ScenarioResult, query_frame
from workbench.scenarios.run import ServerLoad, server_checks

RATE = 250.0


def test_arrivals_are_a_poisson_process_of_the_stated_rate() -> None:
    arrivals = poisson_arrivals(RATE, min_queries=20_000, min_duration_s=1.0, seed=7)
    gaps = np.diff(arrivals, prepend=0.0)
    n = gaps.size
    # mean gap 1/rate, within 4 standard errors (the gaps' sd is also 1/rate)
    assert abs(gaps.mean() - 1 / RATE) < 4 * (1 / RATE) / np.sqrt(n)
    # exponential gaps: coefficient of variation 1
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)
    # counts in fixed windows are Poisson: variance over mean (index of dispersion) is 1
    counts = np.histogram(arrivals, bins=np.arange(0.0, arrivals[-1], 0.04))[0]
    assert counts.mean() == pytest.approx(RATE * 0.04, rel=0.03)
    assert counts.var(ddof=1) / counts.mean() == pytest.approx(1.0, abs=0.1)


def test_the_schedule_is_seeded_and_meets_both_minimums() -> None:
    first = poisson_arrivals(RATE, min_queries=50, min_duration_s=2.0, seed=1)
    assert np.array_equal(first, poisson_arrivals(RATE, min_queries=50, min_duration_s=2.0, seed=1))
    assert not np.array_equal(
        first, poisson_arrivals(RATE, min_queries=50, min_duration_s=2.0, seed=2)
    )
    assert np.all(np.diff(first) > 0) and first[-1] >= 2.0 and first[-2] < 2.0
    many = poisson_arrivals(RATE, min_queries=1000, min_duration_s=0.1, seed=1)
    assert many.size == 1000


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_rate_is_refused(rate: float) -> None:
    with pytest.raises(InputError, match="positive"):
        poisson_arrivals(rate, min_queries=1, min_duration_s=0.0)


def _drain(source: LoadGenerator | ScheduledArrivals) -> list[int]:
    taken = []
    while (index := source.next_query(None)) is not None:
        taken.append(index)
    return taken


def test_the_generator_thread_issues_every_query_at_its_scheduled_time() -> None:
    clock = VirtualClock()  # only the generator thread moves it
    schedule = poisson_arrivals(RATE, min_queries=200, min_duration_s=0.0, seed=3)
    with LoadGenerator(schedule, clock) as generator:
        taken = _drain(generator)
    assert taken == list(range(schedule.size)) and generator.exhausted
    np.testing.assert_array_equal(generator.issue_s, schedule)


class LaggingClock(VirtualClock):
    """Every wake-up comes ``lag_s`` late, like a generator starved of CPU."""

    def __init__(self, lag_s: float) -> None:
        super().__init__()
        self.lag_s = lag_s

    def sleep_until(self, t: float) -> None:
        super().sleep_until(t + self.lag_s)


def test_a_late_generator_is_seen_and_makes_the_run_invalid() -> None:
    schedule = poisson_arrivals(RATE, min_queries=300, min_duration_s=0.0, seed=4)
    with LoadGenerator(schedule, LaggingClock(0.010)) as generator:
        _drain(generator)
    lag_ms = (generator.issue_s - schedule) * 1e3
    assert lag_ms.min() >= 0.0 and np.median(lag_ms) >= 5.0  # tolerance here: 1/rate = 4 ms
    done = generator.issue_s + 0.001
    frame = query_frame(
        0.0, schedule, generator.issue_s, generator.issue_s, done, samples=1, batch=1
    )
    minimums = MINIMUMS["server"]
    reasons = server_checks(frame, 2.0, minimums, ServerLoad(RATE))
    share = (schedule[-1] - schedule[0]) / (generator.issue_s[-1] - generator.issue_s[0])
    assert reasons == [
        f"the load generator fell behind: median lag {np.median(lag_ms):.3g} ms "
        f"(allowed 4 ms), issued {share:.1%} of the scheduled rate"
    ]
    on_time = query_frame(0.0, schedule, schedule, schedule, schedule + 0.001, samples=1, batch=1)
    assert server_checks(on_time, 2.0, minimums, ServerLoad(RATE)) == []


def test_a_stall_the_generator_caught_up_from_is_shown_but_keeps_the_run_valid() -> None:
    schedule = poisson_arrivals(RATE, min_queries=300, min_duration_s=0.0, seed=4)
    issue = schedule.copy()
    issue[100:110] = schedule[110]  # stalled for ten arrivals, then issued them at once
    frame = query_frame(0.0, schedule, issue, issue, issue + 0.001, samples=1, batch=1)
    assert server_checks(frame, 2.0, MINIMUMS["server"], ServerLoad(RATE)) == []
    stalled_ms = (issue - schedule).max() * 1e3
    result = ScenarioResult("server", "m", "b", "cpu", {}, MINIMUMS["server"], frame, 2.0)
    assert f"max {stalled_ms:.3g} ms" in result.summary()


def test_simulated_arrivals_wait_for_the_clock_and_honour_deadlines() -> None:
    clock = VirtualClock()
    source = ScheduledArrivals(np.array([0.010, 0.020]), clock)
    assert source.next_query(0.005) is None and clock.now() == 0.005
    assert source.next_query(None) == 0 and clock.now() == 0.010
    clock.advance(0.050)  # busy past the second arrival: it is taken at once, issued on time
    assert source.next_query(0.0) == 1 and source.issue_s[1] == 0.020
    assert source.next_query(None) is None and source.exhausted
