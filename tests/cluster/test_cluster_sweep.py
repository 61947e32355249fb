"""Sweeps on a loopback Dask cluster: spread, killed workers, resume, resources, worker rows."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.errors import CancelledError
from workbench.machine import describe_machine
from workbench.progress import CancelToken
from workbench.store import Store

FAST = {"budget_s": 0.02, "options": {"threads": 1}, "batch_size": 8}


def _sweep(client: Any, store: Path, variants: list[str], **kwargs: Any) -> wb.TradeoffTable:
    settings = {
        "backends": ["onnxruntime", "torch"],
        "data": wb.samples.dataset("digits").take(64),
        "store": store,
        **FAST,
        **kwargs,
    }
    return wb.sweep(wb.samples.load("digits-mlp"), variants, cluster=client, **settings)


def _assert_each_point_once(table: wb.TradeoffTable, store: Path, expected: int) -> None:
    """Every point stored once, and exactly one profile per measured point."""
    keys = Counter(table.df["key"])
    assert len(keys) == expected and set(keys.values()) == {1}
    runs = Store(store).runs()
    profiles = runs[(runs["kind"] == "profile") & (runs["sweep_id"] == table.sweep_id)]
    assert sorted(profiles["run_id"]) == sorted(table.df["run_id"].dropna())


def test_points_spread_over_both_workers_and_rows_say_where(client, store_path) -> None:
    table = _sweep(client, store_path, ["baseline", "int8-dynamic"])
    _assert_each_point_once(table, store_path, expected=4)
    workers = set(client.scheduler_info()["workers"])
    assert set(table.df["worker"]) == workers  # both workers measured points
    # both workers run on this machine, so each row's description is this machine's
    assert table.df["host"].notna().all() and (table.df["machine"] == describe_machine()).all()
    measured = table.df[table.df["error"].isna()]
    assert len(measured) >= 3 and (measured["latency_ms"] > 0).all()
    # two workers on one host share no resources: the per-host lock keeps timings apart
    assert any("per-host lock" in note for note in table.notes)


def test_an_interrupted_client_resumes_from_the_store(client, store_path) -> None:
    token = CancelToken()

    def cancel_after_first(fraction: float, message: str) -> None:
        if fraction > 0:
            token.cancel()

    variants = ["baseline", "int8-dynamic"]
    with pytest.raises(CancelledError):
        _sweep(
            client, store_path, variants, sweep_id="s", progress=cancel_after_first, cancel=token
        )
    stored = Store(store_path).points("s")
    first = dict(zip(stored["key"], stored["run_id"], strict=True))
    assert 1 <= len(first) < 4
    table = _sweep(client, store_path, variants, sweep_id="s")
    _assert_each_point_once(table, store_path, expected=4)
    resumed = dict(zip(table.df["key"], table.df["run_id"], strict=True))
    assert all(resumed[key] == run_id for key, run_id in first.items())  # not measured again


def test_an_accelerator_point_runs_only_on_the_worker_that_has_it(client, store_path) -> None:
    gpu_worker = sorted(client.scheduler_info()["workers"])[0]

    async def declare_gpu(dask_worker: Any) -> None:
        await dask_worker.set_resources(GPU=1)

    client.run(declare_gpu, workers=[gpu_worker])
    table = _sweep(
        client,
        store_path,
        ["baseline", "int8-dynamic"],
        backends=["onnxruntime"],
        devices=["cpu", "cuda:0"],
    )
    on_gpu = table.df[table.df["device"] == "cuda:0"]
    assert len(on_gpu) == 2 and set(on_gpu["worker"]) == {gpu_worker}


def test_per_host_measures_every_point_on_every_host(client, store_path, monkeypatch) -> None:
    import workbench.cluster.runner as runner

    workers = sorted(client.scheduler_info()["workers"])
    # both workers share the loopback host: let each stand for a machine of its own
    monkeypatch.setattr(runner, "hosts_of", lambda found: sorted(found))
    table = _sweep(client, store_path, ["baseline"], per_host=True, sweep_id="boxes")
    assert len(table) == 4 and table.sweep_id == "boxes"
    for worker in workers:
        mine = table.df[table.df["worker"] == worker]
        assert sorted(mine["backend"]) == ["onnxruntime", "torch"]
        assert list(Store(store_path).points(f"boxes@{worker}")["worker"]) == [worker] * 2
    assert (table.df["speedup"].dropna() == 1.0).all()  # each host's baseline is its own


def test_a_killed_workers_point_runs_elsewhere_and_is_stored_once(client, store_path) -> None:
    killed: list[str] = []

    def kill_a_busy_worker(fraction: float, message: str) -> None:
        if killed or fraction == 0:
            return  # after the first point arrived, while others are in flight
        busy = [address for address, keys in client.processing().items() if keys]
        if busy:
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(busy[0])

    # last in this module: the killed worker's restart would slow the tests after it
    table = _sweep(client, store_path, ["baseline", "int8-dynamic"], progress=kill_a_busy_worker)
    assert killed, "no worker was busy to kill"
    _assert_each_point_once(table, store_path, expected=4)
    assert not table.df["error"].fillna("").str.contains("KilledWorker").any()
