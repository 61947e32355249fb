"""``wb.compare_backends(..., cluster=)``: every fair child a Dask task, rows by host."""

from __future__ import annotations

import platform
from typing import Any

import pytest

from workbench.evaluation.backends import BackendComparison, compare_backends
from workbench.profiling.fair import RoundResult, Runtime, RuntimeComparison
from workbench.profiling.timer import Measurement

SETTINGS: dict[str, Any] = {
    "batch_sizes": [2],
    "backends": ["onnxruntime", "torch"],
    "rounds": 1,
    "budget_s": 0.05,
    "warmup_s": 0.02,
}


@pytest.mark.slow
def test_compare_backends_on_two_workers_gives_the_local_table_with_worker_and_host(
    client: Any,
) -> None:
    here = compare_backends("digits-mlp", **SETTINGS)
    there = compare_backends("digits-mlp", cluster=client, **SETTINGS)

    table = there.table
    assert list(table.columns) == [
        *here.table.columns[:3],
        "host",
        "worker",
        *here.table.columns[3:],
    ]
    assert sorted(table["runtime"]) == sorted(here.table["runtime"]) == ["onnxruntime", "torch"]
    workers = set(client.scheduler_info()["workers"])
    assert set(table["worker"]) <= workers and set(table["host"]) == {platform.node()}
    assert there.hosts == [platform.node()]
    assert (table["errors"] == "").all() and (table["latency_ms"] > 0).all()
    assert table["best_latency"].sum() == 1  # one host, one batch size: one best
    # each round says where it ran, and survives the JSON round trip
    rounds = [r for c in there.comparisons.values() for r in c.results]
    assert {r.environment["worker"] for r in rounds} <= workers
    again = BackendComparison.from_dict(there.to_dict())
    assert again.table[["runtime", "host", "worker"]].equals(table[["runtime", "host", "worker"]])
    assert platform.node() in there.comparisons[2].machine


def test_rounds_on_two_hosts_are_two_rows_with_best_flags_per_host() -> None:
    def measured(runtime: str, host: str, round_: int, ms: float) -> RoundResult:
        environment = {"host": host, "worker": f"tcp://{host}:1"}
        sample = Measurement((ms, ms, ms))
        return RoundResult(runtime, round_, 0, sample, environment=environment)

    results = (
        measured("ort", "box-a", 0, 1.0),
        measured("ort", "box-b", 1, 9.0),
        measured("torch", "box-a", 0, 2.0),
        measured("torch", "box-b", 1, 3.0),
    )
    runtimes = (Runtime("onnxruntime", label="ort"), Runtime("torch", label="torch"))
    comparison = RuntimeComparison("digits-mlp", 1, runtimes, "ort", results)
    compared = BackendComparison("digits-mlp", (1,), {1: comparison})
    table = compared.table

    assert list(zip(table["runtime"], table["host"], strict=True)) == [
        ("ort", "box-a"),
        ("ort", "box-b"),
        ("torch", "box-a"),
        ("torch", "box-b"),
    ]
    assert list(table["latency_ms"]) == [1.0, 9.0, 2.0, 3.0]  # never a median across hosts
    best = table[table["best_latency"]]
    assert list(zip(best["runtime"], best["host"], strict=True)) == [
        ("ort", "box-a"),
        ("torch", "box-b"),
    ]
    assert compared.hosts == ["box-a", "box-b"]
    assert compared.best() == compared.best(host="box-a") == "ort"
    assert compared.best(host="box-b") == "torch"


def test_launcher_and_cluster_together_are_refused() -> None:
    from workbench.errors import InputError

    with pytest.raises(InputError, match="not both"):
        compare_backends("digits-mlp", [1], cluster="tcp://127.0.0.1:1", launcher=dict)
