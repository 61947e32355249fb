"""Clocks for serving scenarios: the real one, and a simulated one that makes tests exact.

A scenario reads time only through a `Clock`. The real clock is ``time.perf_counter``
and sleeps for real; a `VirtualClock` only moves when something advances it (a sleep
or a fake session's run), so a whole server run, queueing and batching included, is
simulated exactly and instantly.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from workbench.errors import InvalidArgumentError


class Clock(Protocol):
    """What a scenario needs of time (seconds, any fixed origin).

    Attributes:
        simulated: True when time only moves when advanced; arrivals are then issued
            on the calling thread in simulated time instead of by a load-generator thread.
    """

    simulated: bool

    def now(self) -> float:
        """The current time in seconds."""
        ...

    def sleep_until(self, t: float) -> None:
        """Return at (or just after) time ``t``; at once when ``t`` has passed."""
        ...


class RealClock:
    """``time.perf_counter`` and ``time.sleep``."""

    simulated = False

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        remaining = t - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)


class VirtualClock:
    """Simulated time: `sleep_until` and `advance` move it, nothing ever waits.

    A fake session advances it by its latency model on each run, so a scenario on a
    `VirtualClock` gives exact, repeatable latencies.

    Example:
        >>> clock = VirtualClock()
        >>> clock.advance(0.002)
        >>> clock.now()
        0.002
    """

    simulated = True

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = start_s
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def sleep_until(self, t: float) -> None:
        with self._lock:
            self._now = max(self._now, t)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (what a fake inference of that length does)."""
        if seconds < 0:
            raise InvalidArgumentError(
                f"time cannot go back: advance by 0 s or more, got {seconds} s"
            )
        with self._lock:
            self._now += seconds
