"""The server scenario's load generator: a seeded Poisson schedule and who issues it.

Arrival times are drawn once, before the run (exponential gaps of mean ``1 / rate``), so
the schedule is reproducible and nothing random happens in the timed path. A
`LoadGenerator` thread issues each query at its scheduled time into a queue the system
under test reads; on a simulated clock `ScheduledArrivals` issues them on the calling
thread instead. Both record when each query was really issued, so a generator that fell
behind is seen, not hidden.
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Protocol

import numpy as np

from workbench.errors import InputError
from workbench.scenarios.clock import Clock

#: longest the generator thread sleeps before looking whether the run was stopped
STOP_CHECK_S = 0.05


def poisson_arrivals(
    rate_per_s: float, *, min_queries: int, min_duration_s: float, seed: int = 0
) -> np.ndarray:
    """Arrival offsets (seconds from the start) of a Poisson process of ``rate_per_s``.

    Draws until there are at least ``min_queries`` arrivals and the last one is at or
    after ``min_duration_s``, as LoadGen sizes a server run.

    Args:
        rate_per_s: mean arrivals per second (> 0).
        min_queries: fewest arrivals.
        min_duration_s: the schedule spans at least this many seconds.
        seed: seed of the generator (the same seed gives the same schedule).

    Returns:
        A sorted float array of offsets in seconds, the first one gap after zero.

    Raises:
        InputError: the rate is not a positive finite number.

    Example:
        >>> poisson_arrivals(100.0, min_queries=10, min_duration_s=1.0).size >= 10
        True
    """
    if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
        raise InputError(
            f"the offered rate must be a positive number of queries/s, got {rate_per_s}"
        )
    rng = np.random.default_rng(seed)
    expected = max(min_queries, math.ceil(rate_per_s * min_duration_s))
    gaps = rng.exponential(1.0 / rate_per_s, size=expected)
    arrivals = np.cumsum(gaps)
    while arrivals.size < min_queries or arrivals[-1] < min_duration_s:
        more = np.cumsum(rng.exponential(1.0 / rate_per_s, size=max(16, expected // 8)))
        arrivals = np.concatenate([arrivals, arrivals[-1] + more])
    last = max(min_queries, int(np.searchsorted(arrivals, min_duration_s)) + 1)
    return arrivals[:last]


class Arrivals(Protocol):
    """Where the system under test takes its next query from.

    Attributes:
        issue_s: when each query was actually issued (NaN until it is).
        exhausted: every query has been issued and taken.
    """

    issue_s: np.ndarray
    exhausted: bool

    def next_query(self, deadline: float | None) -> int | None:
        """The next issued query's index, waiting until ``deadline`` (None: until one comes).

        Returns None when the deadline passed first or when no query is left.
        """
        ...


class LoadGenerator:
    """A thread that issues queries at their scheduled times into a queue.

    Issuing costs the system under test nothing but the queue hand-over: the thread
    sleeps between arrivals and records the real issue time of each query, so lag of
    the generator itself (a busy interpreter, a slow wake-up) shows in ``issue_s``.

    Use it as a context manager: the thread starts on enter and is joined on exit.
    """

    exhausted = False

    def __init__(self, schedule_s: np.ndarray, clock: Clock) -> None:
        self.schedule_s = schedule_s
        self.issue_s = np.full(schedule_s.shape, np.nan)
        self._clock = clock
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._issue, name="workbench-loadgen", daemon=True)

    def _issue(self) -> None:
        try:
            for index, due in enumerate(self.schedule_s):
                # sleep in short steps so that a run ended early (an error, a cancel) is not
                # kept waiting for the next arrival of a slow schedule
                while self._clock.now() < due and not self._stop.is_set():
                    self._clock.sleep_until(min(float(due), self._clock.now() + STOP_CHECK_S))
                if self._stop.is_set():
                    break
                self.issue_s[index] = self._clock.now()
                self._queue.put(index)
        finally:
            self._queue.put(None)

    def __enter__(self) -> LoadGenerator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def next_query(self, deadline: float | None) -> int | None:
        if self.exhausted:
            return None
        try:
            if deadline is None:
                item = self._queue.get()
            else:
                timeout = deadline - self._clock.now()
                item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is None:
            self.exhausted = True
        return item


class ScheduledArrivals:
    """Issues the schedule in simulated time on the calling thread (a `VirtualClock`).

    Waiting for a query moves the clock to its arrival; each query is issued exactly on
    time, so a simulated run measures the system under test and nothing else.
    """

    exhausted = False

    def __init__(self, schedule_s: np.ndarray, clock: Clock) -> None:
        self.schedule_s = schedule_s
        self.issue_s = np.full(schedule_s.shape, np.nan)
        self._clock = clock
        self._next = 0

    def __enter__(self) -> ScheduledArrivals:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def next_query(self, deadline: float | None) -> int | None:
        if self._next >= self.schedule_s.size:
            self.exhausted = True
            return None
        due = float(self.schedule_s[self._next])
        if due > self._clock.now():
            if deadline is not None and due > deadline:
                self._clock.sleep_until(deadline)
                return None
            self._clock.sleep_until(due)
        index = self._next
        self.issue_s[index] = due
        self._next += 1
        return index


def arrivals_for(schedule_s: np.ndarray, clock: Clock) -> LoadGenerator | ScheduledArrivals:
    """A generator thread on a real clock, in-line issuing on a simulated one."""
    return (
        ScheduledArrivals(schedule_s, clock)
        if clock.simulated
        else LoadGenerator(schedule_s, clock)
    )
