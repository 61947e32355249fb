"""The one measuring lifecycle: compile, hold the thread settings, time the cold start,
warm up, repeat within a budget, judge the noise and measure again while noisy.

Every timed number in workbench goes through these steps, so how the package measures
is decided once:

1. `compiled`: the CPUs free are looked at, the backend's ``compile`` is timed, and the
   session's process-wide settings (torch's, Numba's threads) hold until it is closed.
2. `first_inference_ms`: the first run (lazy allocation, JIT, cold caches), timed once
   and kept out of the steady state.
3. `measure`: warm-up, adaptive repeats within the budget (`Timer`), the samples and
   their noise verdict (`Measurement`), measured again while noisy (`remeasure`).

`wb.profile`, the fair runtime comparison's child process and the batch sweep use all
three; the load scenarios compile and warm up here (`warm_up`), and they and
token-by-token generation time their own calls inside `gc_paused` and `Watch`, the same
pieces `Timer` is made of.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

from workbench.argtypes import MAX_REPEATS, seconds, whole
from workbench.backends.base import Session, get_backend, settings_of, start_of
from workbench.errors import ParameterError
from workbench.profiling.timer import Measurement, Timer, Watch, gc_paused

__all__ = [
    "NOISY_ATTEMPTS",
    "Compiled",
    "TimingOptions",
    "Watch",
    "compiled",
    "first_inference_ms",
    "gc_paused",
    "measure",
    "remeasure",
    "timing_of",
    "warm_up",
]

#: how many times a sweep measures a noisy point at most before keeping it, noisy
NOISY_ATTEMPTS = 3


@dataclass(frozen=True)
class TimingOptions:
    """How an end-to-end latency is timed; None leaves the call's own default.

    One value travels through `wb.profile`, `wb.sweep`, `wb.scenario` and `wb.slo` as
    ``timing=``, instead of the same keywords repeated on each (which still work).

    Attributes:
        budget_s: time budget of the timed repeats, in seconds.
        warmup: warm-up calls (a scenario's: untimed calls per batch size).
        warmup_s: minimum warm-up time, in seconds.
        attempts: measure up to this many times while the result is noisy.

    Example:
        >>> quick = wb.TimingOptions(budget_s=0.5, warmup=1)
        >>> wb.profile(m, timing=quick); wb.sweep(m, timing=quick)
    """

    budget_s: float | None = None
    warmup: int | None = None
    warmup_s: float | None = None
    attempts: int | None = None

    def checked(self) -> TimingOptions:
        """The same options, a budget or warm-up out of range refused in one line.

        Raises:
            ParameterError: ``budget_s`` not above 0 (or over a day), ``warmup`` below 0.
        """
        budget_s, warmup = self.budget_s, self.warmup
        return replace(
            self,
            budget_s=None if budget_s is None else seconds("budget_s", budget_s),
            warmup=None
            if warmup is None
            else whole("warmup", warmup, minimum=0, maximum=MAX_REPEATS),
        )


def timing_of(
    call: Callable[..., Any], timing: TimingOptions | None, **given: Any
) -> TimingOptions:
    """The timing a call measures with: its keywords, with ``timing=``'s fields over them.

    Only the fields the call takes as keywords are read (a scenario reads ``warmup``:
    its queries are timed by its minimums, not a budget), so one `TimingOptions` serves
    every call.

    Args:
        call: the public function (its signature's defaults tell a keyword left alone).
        timing: the ``timing=`` argument, or None.
        given: the call's timing keywords as received (``budget_s=budget_s, ...``).

    Returns:
        A checked `TimingOptions` with every given keyword filled in.

    Raises:
        ParameterError: a keyword was changed from its default and also set in
            ``timing``, or a value out of range (`TimingOptions.checked`).
    """
    values = dict(given)
    if timing is not None:
        defaults = inspect.signature(call).parameters
        for name in given:
            chosen = getattr(timing, name)
            if chosen is None:
                continue
            if given[name] != defaults[name].default:
                raise ParameterError(
                    f"{name} is given twice ({given[name]!r} and timing.{name}={chosen!r}); "
                    "give it once"
                )
            values[name] = chosen
    return TimingOptions(**values).checked()


class Compiled:
    """A compiled session and what compiling it took; a context manager: the session's
    process-wide settings hold inside, and it is closed on the way out.

    Attributes:
        session: the `Session`.
    """

    def __init__(self, session: Session, compile_s: float, startup_s: float = 0.0) -> None:
        self.session, self._compile_s = session, compile_s
        #: seconds the runtime's one-off start in this process took before the compile
        #: (`start_of`; 0.0 where it had started already), not in `compile_s`
        self.startup_s = startup_s
        self._settings: AbstractContextManager[None] | None = None

    @property
    def compile_s(self) -> float:
        """Seconds the backend's ``compile`` took, plus the planning a session that
        compiles per input shape did since (its ``plan_s``: numba loads or compiles its
        kernels when it plans a new shape, when `runner` is made); no inference."""
        return self._compile_s + float(getattr(self.session, "plan_s", 0.0))

    @property
    def threads(self) -> int | None:
        """The runtime's thread count, when it says (None: unknown)."""
        return getattr(self.session, "threads", None)

    def __enter__(self) -> Compiled:
        self._settings = settings_of(self.session)
        try:
            self._settings.__enter__()
        except BaseException:
            self.session.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._settings is not None:
                self._settings.__exit__(*exc)
        finally:
            self.session.close()


def compiled(
    model: Any, backend: str, device: str, options: dict[str, Any] | None = None
) -> Compiled:
    """Compile ``model`` (timed); use the result in a ``with``: the session's settings hold
    inside, and it is closed after.

    Args:
        model: a loaded `Model` (not changed).
        backend: backend name.
        device: device name.
        options: backend options for ``compile``; process-wide ones (torch's threads)
            apply inside the ``with`` only.

    The session of a model with embedding tables checks its ids (`check_lookups`) once
    per input set given to ``runner``, and on each ``run``.

    Raises:
        UnknownBackendError, BackendOptionError, DeviceUnavailableError,
        UnsupportedModelError: from the backend's ``compile``.

    Example:
        >>> with compiled(m, "onnxruntime", "cpu") as c:
        ...     latency = measure(c.session.runner(x), TimingOptions(budget_s=1.0))
    """
    from workbench.backends.cpus import default_threads
    from workbench.profiling.embedding_checks import lookup_checked

    default_threads()  # the CPUs free are looked at before the compile is timed
    runtime = get_backend(backend)
    startup_s = start_of(runtime)  # the runtime's own start is not the model's compile
    started = time.perf_counter()
    session = runtime.compile(model, device, **(options or {}))
    compile_s = time.perf_counter() - started
    # every runtime gets the same ids check, once per input set and outside the timed
    # calls: a bad id is one line naming the table, never a clamp or a kernel's crash
    return Compiled(lookup_checked(session), compile_s, startup_s)


def warm_up(runner: Callable[[], Any], calls: int) -> None:
    """Run ``runner`` ``calls`` times, untimed: first-call allocation, caches, JIT.

    For work timed call by call outside `Timer` (a scenario's queries, a generation's
    tokens); `measure` warms up inside `Timer`, which also keeps the warm-up samples.
    """
    for _ in range(calls):
        runner()


def first_inference_ms(runner: Callable[[], Any]) -> float:
    """Run ``runner`` once, cold (lazy allocation, JIT, caches), and return its ms."""
    started = time.perf_counter()
    runner()
    return (time.perf_counter() - started) * 1e3


def measure(
    runner: Callable[[], Any],
    timing: TimingOptions,
    *,
    device: str = "cpu",
    label: str = "",
    threads: int | None = None,
) -> Measurement:
    """Warm up, time repeatedly within the budget, and measure again while noisy.

    Args:
        runner: a zero-argument callable that synchronises (`Session.runner`).
        timing: budget, warm-up and attempts (None fields: `Timer`'s defaults, one try).
        device: the device it runs on (CUDA devices are timed with events).
        label: what is timed, for the `Measurement`.
        threads: the runtime's thread count, checked against the CPUs (CPU only).

    Returns:
        The first clean `Measurement`, else the least noisy of ``timing.attempts``.
    """
    given = {
        name: value
        for name in ("budget_s", "warmup", "warmup_s")
        if (value := getattr(timing, name)) is not None
    }
    timer = Timer(
        runner,
        device=device,
        label=label,
        threads=threads if device == "cpu" else None,
        **given,
    )
    return remeasure(timer.measure, timing.attempts or 1)


def remeasure(measure: Callable[[], Measurement], attempts: int = 3) -> Measurement:
    """Measure again while the result is noisy, at most ``attempts`` times in all.

    Returns the first clean measurement, or else the least noisy one (the narrowest
    confidence interval of the median), saying how many times it was measured: a
    noisy result that survives its retries is shown as noisy, never as clean.

    Args:
        measure: takes one measurement (e.g. ``Timer(...).measure``).
        attempts: at most this many measurements (1: no retry).

    Example:
        >>> m = remeasure(Timer(runner, budget_s=1.0).measure)
        >>> m.verdict  # "" or "noisy: ... (measured 3 times)"
    """
    tried: list[Measurement] = []
    for _ in range(max(1, attempts)):
        tried.append(measure())
        if not tried[-1].noisy:
            break
    best = tried[-1] if not tried[-1].noisy else min(tried, key=lambda m: m.relative_ci)
    return best.with_attempts(len(tried))
