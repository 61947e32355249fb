"""Long work off the UI thread: one worker per session, progress, cancel, and outcome.

A `Jobs` object runs one job at a time on its own thread, so the page (and every other
browser session) stays responsive. Submitting a new job cancels the one running, since
a control moved again makes its result stale. Errors become a one-line message, never a
traceback on the page; the traceback goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import param

from workbench.errors import CancelledError, WorkbenchError
from workbench.progress import CancelToken, ProgressCallback

log = logging.getLogger(__name__)
T = TypeVar("T")

#: ``notify(level, message)`` with level ``"success"``, ``"error"`` or ``"info"``
Notify = Callable[[str, str], None]
#: runs a callback where UI updates are safe (a served session's event loop)
Dispatch = Callable[[Callable[[], None]], None]


class Jobs(param.Parameterized):
    """A per-session worker thread with observable progress.

    Example:
        >>> jobs = Jobs()
        >>> jobs.submit("profile", lambda progress, cancel: wb.profile(m, cancel=cancel), show)
        >>> jobs.wait()
    """

    running = param.Boolean(default=False, doc="a job is running")
    progress = param.Integer(default=0, bounds=(0, 100), doc="percent done of the running job")
    message = param.String(default="", doc="what the running (or last) job is doing")
    error = param.String(default="", doc="the last job's error, in one line ('' when none)")

    def __init__(
        self, notify: Notify | None = None, dispatch: Dispatch | None = None, **params: Any
    ) -> None:
        super().__init__(**params)
        self._notify = notify
        # Served, results are applied on the session's event loop (bokeh's thread-safe
        # next-tick callback): updated from the worker thread directly, a page being
        # rendered can miss updates. In a notebook or a test they apply at once.
        self._dispatch: Dispatch = dispatch or (lambda callback: callback())
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-job")
        self._token: CancelToken | None = None
        self._future: Future[None] | None = None
        self._generation = 0

    def submit(
        self,
        description: str,
        work: Callable[[ProgressCallback, CancelToken], T],
        done: Callable[[T], Any],
    ) -> Future[None]:
        """Run ``work(progress, cancel)`` on the worker thread, then ``done(result)``.

        The job running before is cancelled; only the latest job's outcome is applied.

        Args:
            description: what the job does, shown while it runs.
            work: the long function; it receives a progress callback and a `CancelToken`.
            done: applies the result (called on the worker thread; Panel schedules the
                page updates onto the session's event loop).

        Returns:
            The job's future (it never raises: errors land in ``error``).
        """
        if self._token is not None:
            self._token.cancel()
        self._generation += 1
        generation, token = self._generation, CancelToken()
        self._token = token
        self.param.update(running=True, progress=0, message=description, error="")

        def progress(fraction: float, message: str) -> None:
            percent = int(100 * min(max(fraction, 0.0), 1.0))
            if generation == self._generation:
                self._dispatch(lambda: self._progress(generation, percent, description, message))

        def finish(result: T) -> None:
            if generation == self._generation and not token.cancelled:
                done(result)
                self._finish(generation, f"{description}: done", "success")

        def run() -> None:
            try:
                result = work(progress, token)
            except CancelledError:
                self._dispatch(lambda: self._finish(generation, f"{description}: cancelled", None))
            except Exception as exc:  # shown as a message; the traceback goes to the log
                log.warning("job %r failed", description, exc_info=True)
                text = f"{description} failed: {_one_line(exc)}"
                self._dispatch(lambda: self._finish(generation, text, "error"))
            else:
                self._dispatch(lambda: finish(result))

        self._future = self._executor.submit(run)
        return self._future

    def _progress(self, generation: int, percent: int, description: str, message: str) -> None:
        if generation == self._generation:
            self.param.update(progress=percent, message=f"{description}: {message}")

    def _finish(self, generation: int, message: str, level: str | None) -> None:
        if generation != self._generation:
            return  # a newer job owns the indicators
        error = message if level == "error" else ""
        self.param.update(
            running=False, progress=100 if not error else 0, message=message, error=error
        )
        if level and self._notify is not None:
            self._notify(level, message)

    def cancel(self) -> None:
        """Ask the running job to stop at its next checkpoint."""
        if self._token is not None:
            self._token.cancel()

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the latest job has finished (tests and scripts)."""
        if self._future is not None:
            self._future.result(timeout=timeout)

    def close(self) -> None:
        """Cancel the running job and let the worker thread end."""
        self.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, WorkbenchError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
