"""Honest timing: warm-up, adaptive repeats, kept samples, lazy statistics, noise verdict.

The pieces of one timed stretch live here (`Measurement`, `Timer`, `gc_paused`, `Watch`);
the lifecycle around them (compile, thread settings, the first inference, re-measuring
while noisy) is `workbench.profiling.measure`.

`Timer.clock` is a class attribute so tests can swap in a fake clock
(`workbench.testing.FakeClock`) and check the statistics exactly; `Timer.probe` likewise
reads the CPU counters around each measurement (tests: a fake ``/proc`` tree).

The verdict (`Measurement.noise_reasons`) joins what the samples say (their spread) to
what the machine said while they were taken (`workbench.backends.cpus.Contention`: other
processes on our CPUs, the load, steal, quota throttling, more threads than CPUs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import html
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from workbench.backends.cpus import Contention, CpuSample, contention_between, cpu_budget
from workbench.backends.cpus import read_sample as read_cpu_sample
from workbench.errors import InvalidArgumentError
from workbench.profiling.results import dump_json, load_json

#: IQR / median above which a run is flagged noisy (torch.utils.benchmark uses the same).
NOISE_THRESHOLD = 0.10


@dataclass(frozen=True)
class Measurement:
    """Raw timing samples (milliseconds) and their statistics.

    Statistics are computed lazily from ``samples_ms``; warm-up samples are kept apart
    so a chart can show them greyed out but they never enter a statistic.

    Attributes:
        samples_ms: one duration per timed call, in milliseconds.
        warmup_ms: durations of the warm-up calls, in milliseconds.
        label: what was timed (e.g. ``"digits-cnn onnxruntime cpu bs=32"``).
        contention: how busy the machine was while the samples were taken (None: not
            watched, e.g. a measurement rebuilt from samples alone).
        attempts: how many times it was measured (a noisy one is measured again, bounded;
            see `workbench.profiling.measure.remeasure`): this is the last or the least noisy.
    """

    samples_ms: tuple[float, ...]
    warmup_ms: tuple[float, ...] = ()
    label: str = ""
    contention: Contention | None = None
    attempts: int = 1
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise InvalidArgumentError(
                "a Measurement needs at least one sample; time at least one call"
            )
        object.__setattr__(self, "_sorted", np.sort(np.asarray(self.samples_ms, dtype=float)))

    @property
    def n(self) -> int:
        """Number of timed samples (warm-up excluded)."""
        return len(self.samples_ms)

    @cached_property
    def mean(self) -> float:
        return float(self._sorted.mean())

    @cached_property
    def median(self) -> float:
        return float(np.median(self._sorted))

    @cached_property
    def p90(self) -> float:
        return float(np.percentile(self._sorted, 90))

    @cached_property
    def p99(self) -> float:
        return float(np.percentile(self._sorted, 99))

    @cached_property
    def std(self) -> float:
        return float(self._sorted.std(ddof=1)) if self.n > 1 else 0.0

    @property
    def min(self) -> float:
        return float(self._sorted[0])

    @property
    def max(self) -> float:
        return float(self._sorted[-1])

    @cached_property
    def iqr(self) -> float:
        """Interquartile range in ms."""
        q1, q3 = np.percentile(self._sorted, [25, 75])
        return float(q3 - q1)

    @cached_property
    def median_ci(self) -> tuple[float, float]:
        """A distribution-free 95% confidence interval of the median (order statistics)."""
        n = self.n
        half_width = 1.96 * math.sqrt(n) / 2
        lo = max(0, math.floor(n / 2 - half_width) - 1)
        hi = min(n - 1, math.ceil(n / 2 + half_width))
        return float(self._sorted[lo]), float(self._sorted[hi])

    @property
    def relative_ci(self) -> float:
        """Half-width of the median's CI as a fraction of the median."""
        lo, hi = self.median_ci
        return (hi - lo) / 2 / self.median if self.median > 0 else math.inf

    @cached_property
    def noise_reasons(self) -> tuple[str, ...]:
        """Why this measurement cannot be trusted, one phrase each (empty: it can).

        The spread of the samples (IQR above `NOISE_THRESHOLD` of the median), and what
        the machine did meanwhile (`Contention.reasons`: ``"load 3.8 on 2 CPUs"``...).
        """
        reasons = []
        if self.median > 0 and self.iqr / self.median > NOISE_THRESHOLD:
            reasons.append(f"spread (IQR) {self.iqr / self.median:.0%} of the median")
        if self.contention is not None:
            reasons.extend(self.contention.reasons)
        return tuple(reasons)

    @property
    def noisy(self) -> bool:
        """True when the samples spread too much or the machine was contended."""
        return bool(self.noise_reasons)

    @property
    def verdict(self) -> str:
        """A short text for tables: ``"noisy: load 3.8 on 2 CPUs"``, or "" when clean."""
        if not self.noisy:
            return ""
        tried = f" (measured {self.attempts} times)" if self.attempts > 1 else ""
        return f"noisy: {'; '.join(self.noise_reasons)}{tried}"

    def throughput(self, batch_size: int) -> float:
        """Items per second at the median latency."""
        return batch_size * 1000.0 / self.median if self.median > 0 else math.inf

    def stats(self) -> dict[str, Any]:
        """The statistics as plain data (milliseconds)."""
        lo, hi = self.median_ci
        return {
            "median": self.median,
            "mean": self.mean,
            "p90": self.p90,
            "p99": self.p99,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "iqr": self.iqr,
            "n": self.n,
            "ci_low": lo,
            "ci_high": hi,
            "noisy": self.noisy,
            "verdict": self.verdict,
        }

    def to_dict(self) -> dict[str, Any]:
        """Statistics plus the raw samples and the machine's contention, for JSON."""
        return {
            **self.stats(),
            "samples_ms": list(self.samples_ms),
            "warmup_ms": list(self.warmup_ms),
            "label": self.label,
            "contention": self.contention.to_dict() if self.contention else None,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Rebuild from `to_dict` output (statistics are recomputed from the samples)."""
        contention = data.get("contention")
        return cls(
            tuple(data["samples_ms"]),
            tuple(data.get("warmup_ms", ())),
            data.get("label", ""),
            Contention.from_dict(contention) if contention else None,
            int(data.get("attempts", 1)),
        )

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The measurement, samples included, as JSON; also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Measurement:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "a measurement"))

    def with_attempts(self, attempts: int) -> Measurement:
        """The same measurement, saying it was measured ``attempts`` times."""
        return dataclasses.replace(self, attempts=attempts)

    def __repr__(self) -> str:
        from workbench.units import format_ms

        flag = f"  ({self.verdict})" if self.noisy else ""
        return (
            f"Measurement({self.label + ': ' if self.label else ''}"
            f"median {format_ms(self.median)}, p90 {format_ms(self.p90)}, "
            f"IQR {format_ms(self.iqr)}, n={self.n:,}){flag}"
        )

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import summary_html
        from workbench.profiling.results import figure_html
        from workbench.units import format_ms

        lo, hi = self.median_ci
        facts = [
            ("median", format_ms(self.median)),
            ("95% CI", f"{format_ms(lo)} – {format_ms(hi)}"),
        ]
        facts += [(k, format_ms(getattr(self, k))) for k in ("mean", "p90", "p99", "std", "min")]
        facts.append(("samples", f"{self.n:,}"))
        warn = f"<i>{html.escape(self.verdict)}</i>" if self.noisy else ""
        return summary_html(self.label or "Measurement", facts, figure_html(self) + warn)


class Timer:
    """Times a zero-argument callable with warm-up and adaptive repeats.

    Repeats continue until the median's 95% CI is within ``target_rel_ci`` of the
    median (after ``min_repeats``), or the time ``budget_s`` is spent, or
    ``max_repeats`` is reached. Garbage collection is paused while timing. On CUDA
    devices, pass ``device="cuda:N"`` to time with CUDA events; the callable must
    still synchronise, as `Session.runner` callables do. The CPU counters are read
    before and after the timed runs, and the `Measurement` carries the `Contention`
    they show; ``threads`` (the runtime's thread count, when known) is checked against
    the CPUs available.

    Example:
        >>> Timer(session.runner(x), budget_s=1.0).measure().median
    """

    clock: ClassVar[Callable[[], float]] = time.perf_counter
    #: reads the CPU counters before and after the timed runs (tests swap in a fake)
    probe: ClassVar[Callable[[], CpuSample]] = read_cpu_sample
    #: the CPUs the process may use (tests swap in a fake)
    budget: ClassVar[Callable[[], Any]] = cpu_budget

    def __init__(
        self,
        fn: Callable[[], Any],
        *,
        warmup: int = 3,
        warmup_s: float = 0.1,
        min_repeats: int = 10,
        max_repeats: int = 2000,
        budget_s: float = 2.0,
        target_rel_ci: float = 0.02,
        device: str = "cpu",
        label: str = "",
        threads: int | None = None,
    ) -> None:
        self.fn = fn
        self.threads = threads
        self.warmup, self.warmup_s = warmup, warmup_s
        self.min_repeats, self.max_repeats = min_repeats, max_repeats
        self.budget_s, self.target_rel_ci = budget_s, target_rel_ci
        self.device, self.label = device, label

    def _time_once(self) -> float:
        clock = type(self).clock
        start = clock()
        self.fn()
        return (clock() - start) * 1000.0

    def _sampler(self) -> Callable[[], float]:
        if not self.device.startswith("cuda") or not _torch_has_cuda():
            # without a CUDA torch (numba's CUDA simulator, a CPU build) the callable's own
            # synchronisation makes the wall clock right
            return self._time_once
        import torch

        def with_events() -> float:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            self.fn()
            end.record()
            end.synchronize()
            return float(begin.elapsed_time(end))

        return with_events

    def measure(self) -> Measurement:
        """Warm up, then time repeatedly; return the `Measurement`."""
        clock = type(self).clock
        sample = self._sampler()
        with gc_paused():
            warm: list[float] = []
            start = clock()
            while len(warm) < self.warmup or (clock() - start) < self.warmup_s:
                warm.append(sample())
                if len(warm) >= 100 * max(1, self.warmup):
                    break
            samples: list[float] = []
            with Watch(self.threads) as watch:
                start = clock()
                while len(samples) < self.max_repeats:
                    samples.append(sample())
                    if len(samples) < self.min_repeats:
                        continue
                    if (clock() - start) >= self.budget_s:
                        break
                    if (
                        len(samples) % 5 == 0
                        and Measurement(tuple(samples)).relative_ci <= self.target_rel_ci
                    ):
                        break
        return Measurement(tuple(samples), tuple(warm), self.label, watch.contention)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Garbage collection paused while inside (a collection in the middle of a timed run
    would be timed with it), after collecting the young generations; re-enabled after if it
    was on. Only the young ones: with torch and onnx loaded a full collection takes 0.4-1.4 s
    on this project's 2-core machine, paid by every measurement, and the old generation's
    garbage does not change what is timed (no collection runs inside either way)."""
    was_enabled = gc.isenabled()
    gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Watch:
    """How busy the machine was while the work inside ran: ``contention``, set on exit.

    Reads `Timer.probe` before and after (so tests swap in fake counters for every
    measurement at once) and checks ``threads`` against `Timer.budget`.

    Example:
        >>> with Watch(threads=4) as watch:
        ...     run_queries()
        >>> watch.contention.reasons
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self.contention: Contention | None = None
        self._before: CpuSample | None = None

    def __enter__(self) -> Watch:
        self._before = Timer.probe()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._before is not None
        self.contention = contention_between(
            self._before, Timer.probe(), Timer.budget(), self.threads
        )


def _torch_has_cuda() -> bool:
    """Whether torch is installed with a usable CUDA device (CUDA events need one)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class Ratio:
    """A ratio of two medians (a speed-up, or one runtime's latency over another's) with
    the interval the two medians' confidence intervals allow.

    Attributes:
        value: the ratio of the medians.
        low: the smallest ratio the two 95% CIs of the medians allow.
        high: the largest.
        uncertain: either side was noisy (its spread or a contended machine): the ratio
            must be read with its interval, never alone.
    """

    value: float
    low: float
    high: float
    uncertain: bool = False

    @classmethod
    def of(cls, numerator: Measurement, denominator: Measurement) -> Ratio:
        """``numerator.median / denominator.median`` with its interval.

        Example:
            >>> Ratio.of(baseline.latency, variant.latency).text()  # a speed-up
            '1.31×'
        """
        n_lo, n_hi = numerator.median_ci
        d_lo, d_hi = denominator.median_ci
        return cls.between(
            (numerator.median, n_lo, n_hi),
            (denominator.median, d_lo, d_hi),
            numerator.noisy or denominator.noisy,
        )

    @classmethod
    def between(
        cls,
        numerator: tuple[float, float, float],
        denominator: tuple[float, float, float],
        uncertain: bool,
    ) -> Ratio:
        """From (median, CI low, CI high) of each side, e.g. as stored in a table row."""

        def divide(a: float, b: float) -> float:
            return a / b if b > 0 else math.nan

        return cls(
            divide(numerator[0], denominator[0]),
            divide(numerator[1], denominator[2]),
            divide(numerator[2], denominator[1]),
            uncertain,
        )

    def text(self) -> str:
        """``"1.31×"``, or for an uncertain ratio ``"~98× (uncertain: 3.1×–410×)"``."""
        from workbench.units import format_ratio

        if not self.uncertain:
            return format_ratio(self.value)
        return (
            f"~{format_ratio(self.value)} (uncertain: {format_ratio(self.low)}–"
            f"{format_ratio(self.high)})"
        )
