"""``workbench sweep --cluster`` and ``workbench devices --cluster`` against the dask CLI."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

DASK = [sys.executable, "-m", "dask"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"dask scheduler did not listen on port {port}")


@pytest.fixture
def scheduler() -> Iterator[str]:
    """``dask scheduler --port P`` and one ``dask worker tcp://...`` as docs/cluster.md says."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    start = [*DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    processes = [subprocess.Popen([*start, "--dashboard-address", ":0"], **quiet)]
    try:
        _wait_for_port(port, processes[0])
        worker = [*DASK, "worker", address, "--host", "127.0.0.1", "--nworkers", "1"]
        worker += ["--nthreads", "1", "--resources", "timing=1", "--no-dashboard"]
        processes.append(subprocess.Popen(worker, **quiet))
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a stuck shutdown must not outlive the test
                process.kill()
                process.wait()


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
        "torch",
        "--budget-s",
        "0.02",
        "--store",
        str(tmp_path / "runs.sqlite"),
    ]
    done = subprocess.run(sweep, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Dask dashboard:" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert sorted(row["backend"] for row in rows) == ["onnxruntime", "torch"]
    for row in rows:
        assert row["error"] is None and row["latency_ms"] > 0
        assert row["worker"].startswith("tcp://127.0.0.1:") and row["host"] and row["machine"]
        assert row["host"] in done.stdout  # the printed table says where each row ran
    listed = subprocess.run(
        [*workbench, "devices", "--cluster", scheduler], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert row["worker"] in listed.stdout and "timing=1" in listed.stdout
