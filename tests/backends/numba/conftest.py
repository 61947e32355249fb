"""Queues the CUDA-simulator child run on the background lane when collection ends, and moves
`test_cuda_kernels_in_the_simulator` (which waits for it and checks its report) to the end of
the session, so the child's minutes (the simulator executes every kernel thread as Python)
overlap the rest of the suite instead of adding to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import background_lane
import pytest

SIMULATOR_TESTS = Path(__file__).with_name("sim_numba_cuda.py")
_CHECK = "test_cuda_kernels_in_the_simulator"


class SimulatorRun:
    """The child pytest over `SIMULATOR_TESTS` with NUMBA_ENABLE_CUDASIM=1."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="wb-cudasim-"))
        self.report = self.folder / "simulator.xml"
        self.process: subprocess.Popen[str] | None = None
        self.stopped = False

    def __call__(self) -> tuple[int, str]:
        """Runs the child to its end: its exit status and the tail of its output."""
        command = [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *(f"--junitxml={self.report}", str(SIMULATOR_TESTS)),
        ]
        with (self.folder / "output.txt").open("w+") as log:
            if self.stopped:
                return -1, "stopped before it started"
            self.process = subprocess.Popen(
                command,
                env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=Path(__file__).parents[3],
            )
            returncode = self.process.wait(timeout=900)
            log.seek(0)
            return returncode, log.read()[-9000:]

    def stop(self) -> None:
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


_run = SimulatorRun()


def _queued() -> Future[tuple[int, str]]:
    return background_lane.queue(_CHECK, _run)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    checks = [item for item in items if item.name == _CHECK]
    for item in checks:
        items.remove(item)
        items.append(item)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    if any(item.name == _CHECK for item in session.items):
        _queued()


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    _run.stop()


@pytest.fixture
def simulator_run() -> tuple[Future[tuple[int, str]], Path]:
    """The child run queued when collection ended (or now, where it was not), and the path of
    its JUnit report."""
    return _queued(), _run.report


@pytest.fixture(autouse=True, scope="session")
def _strategy_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The convolution strategies these tests measure go to a temporary cache, not the
    user's (`workbench.backends.numba.strategy`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("wb-cache")))
        yield
