"""A deterministic clock for testing `workbench.profiling.timer.Timer`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import cycle


class FakeClock:
    """A clock that advances only when told, by durations taken from a sequence.

    Use it as ``Timer.clock`` and make the timed callable call `tick`: each call adds
    the next duration (seconds) from ``durations_s`` (cycled).

    Example:
        >>> clock = FakeClock([0.001, 0.002])
        >>> with clock.installed():
        ...     m = Timer(clock.tick, warmup=0, warmup_s=0, min_repeats=4).measure()
    """

    def __init__(self, durations_s: Iterable[float]):
        self.now = 0.0
        self._durations: Iterator[float] = cycle(list(durations_s))

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += next(self._durations)

    def installed(self):
        import contextlib

        from workbench.profiling.timer import Timer

        @contextlib.contextmanager
        def swap():
            previous = Timer.__dict__["clock"]
            Timer.clock = self  # type: ignore[assignment]
            try:
                yield self
            finally:
                Timer.clock = previous

        return swap()
