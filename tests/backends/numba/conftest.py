"""Starts the CUDA-simulator child run as soon as collection ends, and moves
`test_cuda_kernels_in_the_simulator` (which waits for it and checks its report) to the end of
the session, so the child's minutes (the simulator executes every kernel thread as Python)
overlap the rest of the suite instead of adding to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

SIMULATOR_TESTS = Path(__file__).with_name("sim_numba_cuda.py")
_CHECK = "test_cuda_kernels_in_the_simulator"


class SimulatorRun:
    """The child pytest over `SIMULATOR_TESTS` with NUMBA_ENABLE_CUDASIM=1."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="wb-cudasim-"))
        self.report = self.folder / "simulator.xml"
        self._log = (self.folder / "output.txt").open("w+")
        command = [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *(f"--junitxml={self.report}", str(SIMULATOR_TESTS)),
        ]
        self.process = subprocess.Popen(
            command,
            env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=Path(__file__).parents[3],
        )

    def wait(self, timeout: float) -> tuple[int, str]:
        """The child's exit status and the tail of its output."""
        returncode = self.process.wait(timeout=timeout)
        self._log.seek(0)
        return returncode, self._log.read()[-9000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_run: SimulatorRun | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    checks = [item for item in items if item.name == _CHECK]
    for item in checks:
        items.remove(item)
        items.append(item)


def pytest_collection_finish(session: pytest.Session) -> None:
    global _run
    if session.config.option.collectonly or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    if any(item.name == _CHECK for item in session.items):
        _run = SimulatorRun()


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    if _run is not None:
        _run.stop()


@pytest.fixture
def simulator_run() -> SimulatorRun:
    """The child run started at the end of collection (or now, where it was not)."""
    global _run
    if _run is None:
        _run = SimulatorRun()
    return _run
