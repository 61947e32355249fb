"""The four LoadGen scenarios, run against one compiled session.

`scenario` compiles the model, warms it up and runs one scenario; the runners below
take a `SystemUnderTest` so that `workbench.scenarios.slo` can run many server points
on one session.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, cast

import numpy as np
import pandas as pd

from workbench.argtypes import MAX_SECONDS, check_input_bytes, number, whole
from workbench.argtypes import batch_size as checked_batch
from workbench.backends.base import Session
from workbench.errors import InputError
from workbench.model import Model
from workbench.profiling.measure import TimingOptions, timing_of, warm_up
from workbench.scenarios.clock import Clock, RealClock
from workbench.scenarios.energy import EnergyMeter, cost_per_million
from workbench.scenarios.loadgen import arrivals_for, poisson_arrivals
from workbench.scenarios.ranking import ranking_settings, request_inputs
from workbench.scenarios.result import (
    KINDS,
    MINIMUMS,
    Minimums,
    ScenarioResult,
    machine_record,
    query_frame,
)
from workbench.units import format_number

#: a multi-stream query starting more than this late missed its interval; a server's load
#: generator whose median lag is over this (or one mean inter-arrival gap) fell behind
ISSUE_TOLERANCE_MS = 2.0
#: share of late multi-stream queries above which the run is invalid
LATE_ISSUE_SHARE = 0.01
#: a server's load generator that issued under this share of the scheduled rate fell behind
ISSUED_RATE_SHARE = 0.95
#: the first arrival is scheduled this long after the start, so the generator thread is up
LEAD_S = 0.005
#: highest offered rate a server run may ask for (its arrival schedule is made up front)
MAX_RATE_PER_S = 1e6
#: most queries a run's minimum may ask for
MAX_QUERIES = 10**8


class SystemUnderTest:
    """A session with one staged runner per batch size, timed on a `Clock`.

    Attributes:
        session: the compiled session (closed by whoever compiled it).
        model: the model it runs.
        clock: the clock every time is read from.
        inputs: the samples batches are cut from (`workbench.data.input_pool`), or None
            for the model's generated inputs.
        ranking: `workbench.scenarios.ranking.ranking_settings` (a batch of ``b`` is then
            ``b`` requests of ``candidates`` rows each), or None.
    """

    def __init__(
        self,
        session: Session,
        model: Model,
        clock: Clock,
        inputs: Mapping[str, np.ndarray] | None = None,
        ranking: Mapping[str, Any] | None = None,
    ) -> None:
        self.session, self.model, self.clock, self.inputs = session, model, clock, inputs
        self.ranking = ranking
        self._runners: dict[int, Callable[[], Any]] = {}

    def runner(self, batch: int) -> Callable[[], Any]:
        """The staged runner for ``batch`` samples (inputs staged once, on first use)."""
        from workbench.data import batch_inputs

        if batch not in self._runners:
            if self.ranking:
                staged = request_inputs(
                    self.model, self.inputs, batch, self.ranking["candidates"],
                    self.ranking["user_inputs"],
                )  # fmt: skip
            else:
                staged = batch_inputs(self.model, self.inputs, batch)
            self._runners[batch] = self.session.runner(staged)
        return self._runners[batch]

    def run(self, batch: int) -> tuple[float, float]:
        """Run one batch; return its start and completion times (seconds, synchronised)."""
        run = self.runner(batch)
        start = self.clock.now()
        run()
        return start, self.clock.now()

    def warm(self, batches: range | list[int], calls: int) -> None:
        """Run each batch size ``calls`` times, untimed (first-call allocation, caches)."""
        for batch in batches:
            warm_up(self.runner(batch), calls)


class Run(NamedTuple):
    """What a runner hands back: the query table, the run's length and failed checks."""

    queries: pd.DataFrame
    duration_s: float
    reasons: tuple[str, ...]


def _short_of_minimums(done: int, ends: list[float], origin: float, minimums: Minimums) -> bool:
    """Whether a closed-loop run needs another query. Judged on the last completion, as
    the run's duration is, not on the clock: a check made just after the last completion
    could pass while the duration recorded stays under the minimum."""
    return done < minimums.queries or not ends or ends[-1] - origin < minimums.duration_s


def _too_short(done: int, elapsed_s: float, minimums: Minimums, unit: str) -> list[str]:
    reasons = []
    if done < minimums.queries:
        reasons.append(f"only {done} {unit}, fewer than the minimum {minimums.queries}")
    if elapsed_s < minimums.duration_s:
        reasons.append(f"ran {elapsed_s:.3g} s, shorter than the minimum {minimums.duration_s:g} s")
    return reasons


def single_stream(sut: SystemUnderTest, minimums: Minimums) -> Run:
    """One query of one sample at a time; the next is issued when the last completes."""
    origin = sut.clock.now()
    starts: list[float] = []
    ends: list[float] = []
    while _short_of_minimums(len(ends), ends, origin, minimums):
        start, end = sut.run(1)
        starts.append(start)
        ends.append(end)
    issue, done = np.asarray(starts), np.asarray(ends)
    frame = query_frame(origin, issue, issue, issue, done, samples=1, batch=1)
    duration = float(done[-1] - origin)
    return Run(frame, duration, tuple(_too_short(len(done), duration, minimums, "queries")))


def multi_stream(
    sut: SystemUnderTest, minimums: Minimums, *, samples_per_query: int, interval_s: float
) -> Run:
    """Queries of ``samples_per_query`` samples due every ``interval_s``.

    A query whose interval came while the previous one still ran is issued when it
    finishes and counted late; more than 1% late queries make the run invalid.
    """
    clock = sut.clock
    origin = clock.now() + LEAD_S
    due: list[float] = []
    starts: list[float] = []
    ends: list[float] = []
    while _short_of_minimums(len(ends), ends, origin, minimums):
        tick = origin + len(due) * interval_s
        clock.sleep_until(tick)
        start, end = sut.run(samples_per_query)
        due.append(tick)
        starts.append(start)
        ends.append(end)
    scheduled, issue, done = np.asarray(due), np.asarray(starts), np.asarray(ends)
    late = (issue - scheduled) * 1e3 > ISSUE_TOLERANCE_MS
    frame = query_frame(
        origin,
        scheduled,
        issue,
        issue,
        done,
        samples=samples_per_query,
        batch=samples_per_query,
        late=late,
    )
    duration = float(done[-1] - origin)
    reasons = _too_short(len(done), duration, minimums, "queries")
    if late.mean() > LATE_ISSUE_SHARE:
        reasons.append(
            f"{int(late.sum())} of {late.size} queries missed their {interval_s * 1e3:g} ms "
            "interval (the previous query was still running)"
        )
    return Run(frame, duration, tuple(reasons))


def offline(sut: SystemUnderTest, minimums: Minimums, *, batch_size: int) -> Run:
    """All samples issued at once, run in batches of ``batch_size``; one row per batch."""
    origin = sut.clock.now()
    starts: list[float] = []
    ends: list[float] = []
    while _short_of_minimums(len(ends) * batch_size, ends, origin, minimums):
        start, end = sut.run(batch_size)
        starts.append(start)
        ends.append(end)
    issued = np.full(len(ends), origin)
    frame = query_frame(
        origin,
        issued,
        issued,
        np.asarray(starts),
        np.asarray(ends),
        samples=batch_size,
        batch=batch_size,
    )
    duration = float(ends[-1] - origin)
    samples = len(ends) * batch_size
    return Run(frame, duration, tuple(_too_short(samples, duration, minimums, "samples")))


@contextlib.contextmanager
def _responsive_threads(clock: Clock) -> Iterator[None]:
    """Let the load-generator thread take the GIL within 0.5 ms, restored afterwards.

    CPython passes the GIL between threads every 5 ms by default, so a generator thread
    could wait that long to issue a query while the system under test runs Python code.
    """
    if clock.simulated:
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, 0.0005))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@dataclass(frozen=True)
class ServerLoad:
    """How a server run offers its queries: the settings that travel together from
    `scenario`, and from every point of `workbench.scenarios.slo`'s search, to `server`.

    Attributes:
        rate_per_s: offered queries per second (Poisson arrivals).
        max_batch: most queries batched together.
        batch_window_ms: the dynamic-batching window, in ms.
        target_latency_ms: a query over it is late (None: no target).
        drop_after_ms: a query waiting longer is dropped unrun.
        seed: seed of the arrival schedule.
    """

    rate_per_s: float
    max_batch: int = 1
    batch_window_ms: float = 0.0
    target_latency_ms: float | None = None
    drop_after_ms: float = 1000.0
    seed: int = 0


def server(sut: SystemUnderTest, minimums: Minimums, load: ServerLoad) -> Run:
    """Poisson arrivals at ``load.rate_per_s`` from a load generator; dynamic batching
    optional.

    The system under test takes the oldest waiting query, then waits until
    ``batch_window_ms`` after that query's arrival (or until ``max_batch`` queries are
    in hand) before running the batch. A query that waited over ``drop_after_ms`` is
    dropped unrun. Latency is completion minus issue time.
    """
    clock = sut.clock
    origin = clock.now() + LEAD_S
    schedule = origin + poisson_arrivals(
        load.rate_per_s,
        min_queries=minimums.queries,
        min_duration_s=minimums.duration_s,
        seed=load.seed,
    )
    n = schedule.size
    start, done = np.full(n, np.nan), np.full(n, np.nan)
    batch_of, dropped = np.zeros(n, np.int64), np.zeros(n, bool)
    with _responsive_threads(clock), arrivals_for(schedule, clock) as source:
        while (first := source.next_query(None)) is not None:
            batch = [first]
            deadline = source.issue_s[first] + load.batch_window_ms / 1e3
            while len(batch) < load.max_batch:
                if (more := source.next_query(deadline)) is None:
                    break
                batch.append(more)
            now = clock.now()
            waited = np.asarray([(now - source.issue_s[q]) * 1e3 for q in batch])
            live = [q for q, wait in zip(batch, waited, strict=True) if wait <= load.drop_after_ms]
            dropped[[q for q in batch if q not in live]] = True
            if live:
                start[live], done[live] = sut.run(len(live))
                batch_of[live] = len(live)
    issue = source.issue_s
    latency_ms = (done - issue) * 1e3
    target = load.target_latency_ms
    late = latency_ms > target if target is not None else None
    frame = query_frame(
        origin, schedule, issue, start, done, samples=1, batch=batch_of, dropped=dropped, late=late
    )
    last = np.nanmax(done) if np.isfinite(done).any() else np.nanmax(issue)
    duration = float(last - origin)
    return Run(frame, duration, tuple(server_checks(frame, duration, minimums, load)))


def issued_rate_share(frame: pd.DataFrame) -> float:
    """Issued over scheduled rate, between the first and last arrival (1.0: on schedule)."""
    if len(frame) < 2:
        return 1.0
    scheduled = frame["scheduled_s"].iloc[-1] - frame["scheduled_s"].iloc[0]
    issued = frame["issue_s"].iloc[-1] - frame["issue_s"].iloc[0]
    return float(scheduled / issued) if issued > 0 else 1.0


def server_checks(
    frame: pd.DataFrame, duration_s: float, minimums: Minimums, load: ServerLoad
) -> list[str]:
    """Why a server run is invalid: short of its minimums (completed queries), the load
    generator fell behind, queries dropped, or p99 over the target. Empty when valid.

    The generator fell behind when it under-offered the load: its median lag was over one
    mean gap (at least `ISSUE_TOLERANCE_MS`), or it issued under `ISSUED_RATE_SHARE` of the
    scheduled rate. A short stall it caught up from (the OS preempting the thread) only
    bunches arrivals, which can make latency worse, never better; it is kept in the query
    table and shown by `ScenarioResult.summary` but does not invalidate the run.
    """
    completed = frame.loc[~frame["dropped"], "latency_ms"]
    reasons = _too_short(len(completed), duration_s, minimums, "completed queries")
    lag_ms = (frame["issue_s"] - frame["scheduled_s"]).to_numpy() * 1e3
    tolerance_ms = max(ISSUE_TOLERANCE_MS, 1e3 / load.rate_per_s)
    share = issued_rate_share(frame)
    if np.median(lag_ms) > tolerance_ms or share < ISSUED_RATE_SHARE:
        reasons.append(
            f"the load generator fell behind: median lag {np.median(lag_ms):.3g} ms "
            f"(allowed {tolerance_ms:.3g} ms), issued {share:.1%} of the scheduled rate"
        )
    dropped = int(frame["dropped"].sum())
    if dropped:
        reasons.append(f"{dropped} queries dropped after waiting over {load.drop_after_ms:g} ms")
    if load.target_latency_ms is not None:
        p99 = float(np.percentile(completed, 99)) if len(completed) else math.inf
        if p99 > load.target_latency_ms:
            reasons.append(
                f"p99 latency {format_number(p99)} ms is over the target "
                f"{load.target_latency_ms:g} ms ({int(frame['late'].sum())} queries late)"
            )
    return reasons


def minimums_for(
    kind: str, min_queries: int | None = None, min_duration_s: float | None = None
) -> Minimums:
    """The scenario's notebook minimums, with any override by the user.

    Raises:
        InputError: an unknown scenario kind.
    """
    if kind not in MINIMUMS:
        raise InputError(f"unknown scenario {kind!r}; choose one of {', '.join(KINDS)}")
    base = MINIMUMS[kind]
    return replace(
        base,
        queries=base.queries
        if min_queries is None
        else whole("min_queries", min_queries, maximum=MAX_QUERIES),
        duration_s=base.duration_s
        if min_duration_s is None
        else number("min_duration_s", min_duration_s, minimum=0.0, maximum=MAX_SECONDS),
    )


def scenario(
    model: Model | Any,
    kind: str = "single-stream",
    backend: str = "onnxruntime",
    device: str = "cpu",
    *,
    rate_per_s: float | None = None,
    max_batch: int = 1,
    batch_window_ms: float = 0.0,
    target_latency_ms: float | None = None,
    drop_after_ms: float = 1000.0,
    samples_per_query: int = 8,
    interval_ms: float = 10.0,
    batch_size: int = 32,
    min_queries: int | None = None,
    min_duration_s: float | None = None,
    seed: int = 0,
    warmup: int = 10,
    inputs: Any = None,
    options: dict[str, Any] | None = None,
    price_per_hour: float | None = None,
    tdp_watts: float | None = None,
    clock: Clock | None = None,
    timing: TimingOptions | None = None,
    candidates: int | None = None,
    user_inputs: Sequence[str] | None = None,
) -> ScenarioResult:
    """Run one LoadGen scenario on ``model`` and return every query with its verdict.

    - ``single-stream``: one sample per query, the next issued when the last completes;
      p50/p90/p99 latency.
    - ``multi-stream``: ``samples_per_query`` samples per query, one query every
      ``interval_ms``; p99 over queries, late queries counted.
    - ``offline``: all samples at once in batches of ``batch_size``; throughput.
    - ``server``: Poisson arrivals at ``rate_per_s`` from a load-generator thread,
      optional dynamic batching (``max_batch``, ``batch_window_ms``); p99 latency,
      late (over ``target_latency_ms``) and dropped (waited over ``drop_after_ms``)
      queries counted.

    A run is invalid (with reasons) when it misses its minimums (`MINIMUMS`, scaled
    down from LoadGen; override with ``min_queries`` / ``min_duration_s``), when the
    load generator fell behind its schedule, when queries were dropped, or when p99 is
    over ``target_latency_ms``. The model is never changed; the session is warmed up
    (``warmup`` untimed calls per batch size) and closed afterwards.

    With ``candidates=N`` every query is a ranking request: one user's features
    (``user_inputs``) broadcast over ``N`` candidate items, scored in one call
    (`workbench.scenarios.ranking`). Latencies are per request; a query's samples are
    its candidates, so throughput is items per second.

    Args:
        model: a `Model` or anything `workbench.load` accepts (``"digits-cnn"``).
        kind: one of `KINDS`.
        backend: backend name.
        device: device name (``"cpu"``, ``"cuda:0"``).
        rate_per_s: offered queries per second (server; required there).
        max_batch: most queries batched together (server).
        batch_window_ms: dynamic-batching window (server).
        target_latency_ms: latency a server query must meet (late above it).
        drop_after_ms: a server query waiting longer than this is dropped.
        samples_per_query: samples in each multi-stream query.
        interval_ms: multi-stream query interval (LoadGen used 50 ms; scaled to 10).
        batch_size: offline batch size.
        min_queries: override the minimum queries (offline: samples).
        min_duration_s: override the minimum duration, in seconds.
        seed: seed of the server's arrival schedule.
        warmup: untimed calls per batch size before the run.
        inputs: real inputs to run instead of generated ones, as `wb.profile` takes
            them (arrays by name or in input order) or a `Dataset` / iterable of
            ``(inputs, labels)`` batches; a query of ``b`` samples runs the first
            ``b`` (repeated from the start when there are fewer).
        options: backend options for ``compile``.
        price_per_hour: the machine's price per hour, for the cost per million.
        tdp_watts: ask for a labelled TDP x time energy estimate.
        clock: a `Clock`; a `VirtualClock` simulates the run exactly (tests).
        timing: a `TimingOptions` shared with `profile`, `sweep` and `slo`; a scenario
            reads its ``warmup`` (its queries are timed by the minimums, not a budget).
        candidates: items each query (a ranking request) scores; None: one sample a
            query as above.
        user_inputs: the inputs holding the user's features, the same for all of a
            request's candidates (default the float inputs); with ``candidates`` only.

    Returns:
        A `ScenarioResult`.

    Raises:
        InputError: unknown kind, missing or bad rate, bad sizes, or inputs that do
            not fit the model.
        UnknownBackendError, DeviceUnavailableError, UnsupportedModelError.

    Example:
        >>> r = wb.scenario("digits-cnn", "server", rate_per_s=500, target_latency_ms=5)
        >>> r.p99_ms, r.valid, r.reasons
        >>> rank = wb.scenario("dlrm", "server", rate_per_s=50, candidates=500,
        ...                    target_latency_ms=20)
        >>> rank.p99_ms, rank.throughput_per_s  # per request; items per second
    """
    from workbench.data import input_pool
    from workbench.loaders import load
    from workbench.machine import environment
    from workbench.profiling.measure import Watch, compiled

    minimums = minimums_for(kind, min_queries, min_duration_s)
    every = {
        "rate_per_s": rate_per_s,
        "max_batch": max_batch,
        "batch_window_ms": batch_window_ms,
        "target_latency_ms": target_latency_ms,
        "drop_after_ms": drop_after_ms,
        "seed": seed,
        "samples_per_query": samples_per_query,
        "interval_ms": interval_ms,
        "batch_size": batch_size,
    }
    settings = _settings(kind, every)
    warmup = cast(int, timing_of(scenario, timing, warmup=warmup).warmup)
    if price_per_hour is not None:
        cost_per_million(price_per_hour, 1.0)  # checks the price before the run
    if tdp_watts is not None:
        tdp_watts = number("tdp_watts", tdp_watts, above=0.0)
    model = load(model)
    pool = None if inputs is None else input_pool(model, inputs)
    ranking = ranking_settings(model, candidates, user_inputs)
    rows = ranking.get("candidates", 1)
    check_input_bytes(model, max(_batch_sizes(kind, settings)) * rows)
    clock = clock or RealClock()
    # read on the run's clock, so the energy covers the interval the queries are timed over
    meter = EnergyMeter(device, tdp_watts=tdp_watts, clock=clock)
    # the measuring lifecycle: compiled, its thread settings held while the queries run
    with compiled(model, backend, device, options) as compiled_session:
        sut = SystemUnderTest(compiled_session.session, model, clock, pool, ranking)
        sizes = _batch_sizes(kind, settings)
        sut.warm(sorted({sizes[0], sizes[-1]}), warmup)
        sut.warm(sizes, 1)
        threads = compiled_session.threads
        meter.start()
        # how busy the machine was while the queries ran, next to where it ran
        with Watch(threads) as busy:
            run = _dispatch(kind, sut, minimums, settings)
        # a request's samples are its candidates: throughput counts items
        run = run._replace(queries=run.queries.assign(samples=run.queries["samples"] * rows))
        settings = {**settings, **ranking}
        energy = meter.stop(run.duration_s)
    return ScenarioResult(
        kind=kind,
        model=f"{model.name} ({model.recipe_name})",
        backend=backend,
        device=device,
        settings=settings,
        minimums=minimums,
        queries=run.queries,
        duration_s=run.duration_s,
        reasons=run.reasons,
        energy=energy,
        price_per_hour=price_per_hour,
        environment=environment(threads=threads, contention=busy.contention),
        machine=machine_record(),
    )


def _settings(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """The settings that matter for ``kind``, checked."""
    names = {
        "single-stream": (),
        "multi-stream": ("samples_per_query", "interval_ms"),
        "offline": ("batch_size",),
        "server": (
            "rate_per_s",
            "max_batch",
            "batch_window_ms",
            "target_latency_ms",
            "drop_after_ms",
            "seed",
        ),
    }[kind]
    settings = {name: given[name] for name in names}
    if kind == "server" and settings["rate_per_s"] is None:
        raise InputError("the server scenario needs rate_per_s (queries per second)")
    for name, value in settings.items():
        if name in ("samples_per_query", "batch_size", "max_batch"):
            settings[name] = checked_batch(value, name)
        elif name == "seed":
            settings[name] = whole(name, value, minimum=0)
        elif name == "rate_per_s":
            settings[name] = number(name, value, above=0.0, maximum=MAX_RATE_PER_S)
        elif value is not None:  # milliseconds; the batching window may be 0
            floor = {"minimum": 0.0} if name == "batch_window_ms" else {"above": 0.0}
            settings[name] = number(name, value, maximum=MAX_SECONDS * 1e3, **floor)
    return settings


def _batch_sizes(kind: str, settings: dict[str, Any]) -> list[int]:
    if kind == "multi-stream":
        return [settings["samples_per_query"]]
    if kind == "offline":
        return [settings["batch_size"]]
    if kind == "server":
        return list(range(1, settings["max_batch"] + 1))
    return [1]


def _dispatch(kind: str, sut: SystemUnderTest, minimums: Minimums, settings: dict[str, Any]) -> Run:
    if kind == "single-stream":
        return single_stream(sut, minimums)
    if kind == "multi-stream":
        return multi_stream(
            sut,
            minimums,
            samples_per_query=settings["samples_per_query"],
            interval_s=settings["interval_ms"] / 1e3,
        )
    if kind == "offline":
        return offline(sut, minimums, batch_size=settings["batch_size"])
    return server(sut, minimums, ServerLoad(**settings))
