"""``wb.compare_backends(..., cluster=)``: every fair child a Dask task, rows by host."""

from __future__ import annotations

import platform
from typing import Any

import pytest

from workbench.evaluation.compare_backends import BackendComparison, compare_backends
from workbench.profiling.compare_runtimes import RoundResult, Runtime, RuntimeComparison
from workbench.profiling.timer import Measurement

SETTINGS: dict[str, Any] = {
    "batch_sizes": [2],
    "backends": ["onnxruntime", "torch"],
    "rounds": 1,
    "retries": 0,  # the table's shape is checked, not a settled number
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
    assert set(table["host"]) == {platform.node()} and there.hosts == [platform.node()]
    assert (table["errors"] == "").all() and (table["latency_ms"] > 0).all()
    assert table["best_latency"].sum() == 1  # one host, one batch size: one best
    # each round says where it ran, a row names the workers its rounds ran on (a noisy
    # comparison's extra rounds may land on the other worker of this host), and both
    # survive the JSON round trip
    rounds = [r for c in there.comparisons.values() for r in c.results]
    assert {r.environment["worker"] for r in rounds} <= workers
    for runtime, named in zip(table["runtime"], table["worker"], strict=True):
        ran_on = {r.environment["worker"] for r in rounds if r.runtime == runtime}
        assert ran_on and named == ", ".join(sorted(ran_on))
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


class _DoneFuture:
    def __init__(self, result: dict[str, Any]) -> None:
        self._result = result

    def result(self) -> dict[str, Any]:
        return self._result

    def done(self) -> bool:
        return True


class _FakeClient:
    """Runs each child at once; the torch children's medians alternate 1 ms and 3 ms,
    so the comparison's rounds disagree and it asks for its extra rounds."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    def submit(self, function: Any, spec: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.submitted.append(spec)
        torch_runs = sum(s["runtime"]["backend"] == "torch" for s in self.submitted)
        ms = 1.0 if spec["runtime"]["backend"] == "onnxruntime" else 1.0 + 2.0 * (torch_runs % 2)
        sample = Measurement((ms, ms, ms)).to_dict()
        return _DoneFuture({"measurement": sample, "machine": "box: a machine"})


def test_the_extra_rounds_of_a_noisy_comparison_are_submitted_when_collected() -> None:
    from workbench.cluster.compare_backends import FanOutLauncher
    from workbench.cluster.placement import plan
    from workbench.profiling.compare_runtimes import compare_runtimes

    client = _FakeClient()
    launcher = FanOutLauncher(client, plan({"tcp://a:1": {"host": "a", "resources": {}}}), 60.0)
    settings: dict[str, Any] = {"rounds": 2, "retries": 2, "launcher": launcher.submit}
    compare_runtimes("digits-mlp", ["onnxruntime", "torch"], **settings)
    assert len(client.submitted) == 4  # the first pass has no numbers: no extra rounds

    comparison = compare_runtimes(
        "digits-mlp", ["onnxruntime", "torch"], **{**settings, "launcher": launcher.collect}
    )
    assert comparison.rounds_run == 4 and len(comparison.results) == 8
    assert len(client.submitted) == 8  # each extra child submitted once, when asked for
    assert all(r.error == "" and r.measurement is not None for r in comparison.results)
    assert "after 2 extra round(s)" in comparison.verdict("torch")
    assert launcher.machines == {"box: a machine"}


def test_launcher_and_cluster_together_are_refused() -> None:
    from workbench.errors import InputError

    with pytest.raises(InputError, match="not both"):
        compare_backends("digits-mlp", [1], cluster="tcp://127.0.0.1:1", launcher=dict)
