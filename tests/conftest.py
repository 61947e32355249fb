"""Suite-wide hooks: the guided notebooks are queued on the background lane
(`background_lane`) when collection ends, and the lane is closed when the run ends."""

from __future__ import annotations

from typing import Any

import background_lane
import notebook_runs
import pytest

_NOTEBOOK_TEST = "test_notebook_runs_without_errors_or_stderr"


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    for item in session.items:
        if item.originalname == _NOTEBOOK_TEST:  # type: ignore[attr-defined]
            notebook_runs.queued(item.callspec.params["path"])  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    background_lane.close()
