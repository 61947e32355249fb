"""``workbench sweep --cluster`` and ``workbench devices --cluster`` against the dask CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

DASK = [sys.executable, "-m", "dask"]


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[str]:
    """A ``dask scheduler`` and one ``dask worker --resources timing=1``, on loopback."""
    info = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    common = ["--scheduler-file", str(info), "--host", "127.0.0.1"]
    start = [*DASK, "scheduler", *common, "--port", "0", "--dashboard-address", ":0"]
    processes = [subprocess.Popen(start, **quiet)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = [*DASK, "worker", *common, "--nthreads", "1", "--resources", "timing=1"]
        processes.append(subprocess.Popen([*worker, "--no-dashboard"], **quiet))
        yield json.loads(info.read_text())["address"]
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.slow
def test_cli_sweep_and_devices_on_a_dask_scheduler(scheduler: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    workbench = [sys.executable, "-m", "workbench.cli"]
    sweep = [
        *workbench,
        "sweep",
        "digits-mlp",
        "--cluster",
        scheduler,
        "--json",
        str(out),
        "--variants",
        "baseline",
        "--backends",
        "onnxruntime",
        "--budget-s",
        "0.02",
        "--store",
        str(tmp_path / "runs.sqlite"),
    ]
    done = subprocess.run(sweep, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Dask dashboard:" in done.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert row["error"] is None and row["latency_ms"] > 0
    assert row["worker"].startswith("tcp://127.0.0.1:") and row["host"] and row["machine"]
    assert row["host"] in done.stdout  # the printed table says where each row ran
    listed = subprocess.run(
        [*workbench, "devices", "--cluster", scheduler], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert row["worker"] in listed.stdout and "timing=1" in listed.stdout
