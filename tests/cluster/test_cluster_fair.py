"""The fair runtime comparison on one worker of a Dask cluster."""

from __future__ import annotations

import platform

import pytest

import workbench as wb
from workbench.cluster.compare_runtimes import _worker_for
from workbench.errors import InputError


def test_compare_runtimes_runs_every_child_on_the_chosen_worker(client) -> None:
    worker = sorted(client.scheduler_info()["workers"])[-1]
    comparison = wb.compare_runtimes(
        "digits-mlp",
        ["onnxruntime"],  # one child process: the protocol itself is tested in tests/profiling
        rounds=1,
        retries=0,  # a noisy round would otherwise run up to two more children
        budget_s=0.05,
        warmup_s=0.01,
        cluster=client,
        worker=worker,
    )
    assert [r.error for r in comparison.results] == [""]
    assert [r.environment["worker"] for r in comparison.results] == [worker]
    assert all(r.measurement is not None and r.measurement.n > 0 for r in comparison.results)
    assert comparison.machine.startswith(f"{platform.node()}: ")


def test_a_gpu_runtime_needs_a_worker_that_declares_a_gpu() -> None:
    workers = {"tcp://a:1": {"resources": {"timing": 1}}, "tcp://b:1": {"resources": {"GPU": 1}}}
    assert _worker_for(workers, ["onnxruntime", ("torch", "cuda:0")]) == "tcp://b:1"
    with pytest.raises(InputError, match='--resources "GPU=1'):
        _worker_for({"tcp://a:1": {"resources": {}}}, [("torch", "cuda:0")])
