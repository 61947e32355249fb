"""One background lane for the suite's long child runs (the CUDA simulator's own pytest, the
notebooks' kernels): they are queued when collection ends and run one after another beside
the main run, whose tests then only wait for and check their results. On CI's two cores the
main run mostly keeps one busy, so the lane's minutes overlap it instead of adding to it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_executor: ThreadPoolExecutor | None = None
_jobs: dict[str, Future[Any]] = {}


def queue(key: str, job: Callable[[], Any]) -> Future[Any]:
    """The future of ``job`` under ``key``, queued on the lane the first time it is asked."""
    global _executor
    if key not in _jobs:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="tests-background")
        _jobs[key] = _executor.submit(job)
    return _jobs[key]


def close() -> None:
    """Drop what has not started; a job already running ends on its own (the simulator's
    child is killed by its conftest; a notebook finishes its cell)."""
    global _executor
    if _executor is not None:
        _executor.shutdown(wait=False, cancel_futures=True)
    _executor = None
    _jobs.clear()
