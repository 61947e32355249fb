"""Run records from several machines: every result says where it ran and what it measured,
imports into the store, compares with the local ones, plans, and is refused when it
measures something else."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from workbench.backends import base
from workbench.cli import main
from workbench.planning import Machine, PlanError, plan
from workbench.planning import records as rec
from workbench.planning.records import RecordError
from workbench.scenarios import ScenarioResult, SloResult, VirtualClock, scenario, slo
from workbench.scenarios.result import (
    MACHINE_ENV,
    Minimums,
    machine_record,
    machine_text,
    query_frame,
)
from workbench.scenarios.result import MINIMUMS as SCENARIO_MINIMUMS
from workbench.scenarios.slo import TABLE_COLUMNS
from workbench.store import STORE_ENV, Store
from workbench.testing import toy_mlp
from workbench.testing.serving import LatencyModelBackend

MINIMUMS = Minimums(200, 0.5, 270336, 600.0)
GPU_BOX = {"name": "gpu-box", "id": "0123456789ab", "cpu": "Xeon", "arch": "x86_64",
           "cores": 32, "usable_cores": 32, "memory_bytes": 2**37, "gpus": ["H100"]}  # fmt: skip
RENTED = Machine("rented", "USD", rental_per_hour=3.6)


@pytest.fixture
def clock() -> Iterator[VirtualClock]:
    virtual = VirtualClock()
    base.register("latency-model")(lambda: LatencyModelBackend(virtual, 1.0, 0.25))
    yield virtual
    base._FACTORIES.pop("latency-model", None)
    base._INSTANCES.pop("latency-model", None)


def measured(
    machine: dict[str, object], rate: float, model: str = "digits-cnn", p99_ms: float = 5.0
) -> SloResult:
    """An SLO result of ``model`` measured on ``machine`` at ``rate`` per second."""
    row = {c: math.nan for c in TABLE_COLUMNS} | {
        "variant": "baseline", "backend": "onnxruntime", "device": "cpu",
        "max_rate_per_s": rate, "limited_by": "p99 over the budget", "points": 5,
    }  # fmt: skip
    table = pd.DataFrame([row], columns=TABLE_COLUMNS)
    return SloResult(p99_ms, table, pd.DataFrame(), MINIMUMS, settings={"model": model},
                     machine=dict(machine))  # fmt: skip


def test_every_slo_and_scenario_result_records_its_machine_and_model(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MACHINE_ENV, "bench-1")
    found = slo(toy_mlp(), 5.0, ["latency-model"], clock=clock, min_queries=20,
                min_duration_s=0.05, steps=2, warmup=1)  # fmt: skip
    run = scenario(toy_mlp(), "single-stream", "latency-model", clock=clock, warmup=1)
    here = machine_record()
    assert here["name"] == "bench-1" and len(here["id"]) == 12 and here["cores"] >= 1
    for result in (found, run):
        assert result.machine == here
        back = type(result).from_json(result.to_json())
        assert back.machine == here and back.model == result.model
    assert found.model == "toy-mlp" and SloResult.from_json(found.to_json()).model == "toy-mlp"
    assert "measured on bench-1 (" in found.summary() and "measured on bench-1" in run.summary()
    monkeypatch.delenv(MACHINE_ENV)
    assert machine_record()["id"] == here["id"]  # a label renames, the machine stays the same
    assert machine_text({}) == "an unrecorded machine"


def test_a_gpu_box_serving_without_torch_names_its_gpus_from_nvml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu_only = machine_record()
    nvml = SimpleNamespace(
        NVMLError=RuntimeError,
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetName=lambda handle: [b"NVIDIA H100", "NVIDIA L4"][handle],
    )
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    boxed = machine_record()
    assert boxed["gpus"] == ["NVIDIA H100", "NVIDIA L4"] and boxed["id"] != cpu_only["id"]
    assert machine_text(boxed).endswith("cores, NVIDIA H100, NVIDIA L4)")


def test_results_from_another_machine_import_and_compare_with_local_ones(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "runs.sqlite")
    local = measured(machine_record(), 800.0)
    local.to_json(tmp_path / "here.json")
    measured(GPU_BOX, 5000.0).to_json(tmp_path / "gpu-box.json")
    imported = rec.import_results([tmp_path / "gpu-box.json", tmp_path / "here.json"], store)
    assert sorted(imported["where"]) == ["elsewhere", "here"]
    assert set(imported["source"]) == {"imported from gpu-box.json", "imported from here.json"}
    again = rec.import_results(tmp_path / "gpu-box.json", store)  # the same record, replaced
    assert len(store.records()) == 2 and list(again["record_id"]) == [
        imported.loc[imported["measured_on"] == "gpu-box", "record_id"].item()
    ]
    table = rec.compare(model="digits-cnn", p99_ms=5.0, store=store)
    assert list(table["measured_on"]) == ["gpu-box", machine_record()["name"]]
    assert list(table["where"]) == ["elsewhere", "here"] and list(table["rate_per_s"]) == [
        5000.0, 800.0,
    ]  # fmt: skip
    assert table.loc[0, "gpus"] == "H100" and table.loc[0, "cpu"] == "Xeon"
    # a tighter objective's rate holds at a looser one; a looser one is not taken
    assert len(rec.compare(model="digits-cnn", p99_ms=10.0, store=store)) == 2
    with pytest.raises(rec.NotFoundError, match=r"no SLO record of digits-cnn at p99 <= 2 ms"):
        rec.compare(model="digits-cnn", p99_ms=2.0, store=store)


def test_records_measuring_other_things_are_refused_with_the_reason(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    cnn = rec.save_result(measured(GPU_BOX, 5000.0), store)
    mlp = rec.save_result(measured(machine_record(), 900.0, model="digits-mlp"), store)
    loose = rec.save_result(measured(machine_record(), 900.0, p99_ms=20.0), store)
    with pytest.raises(RecordError, match=r"different models \(digits-cnn: .*; digits-mlp: "):
        rec.compare([cnn, mlp], store=store)
    with pytest.raises(RecordError, match=r"different p99 objectives \(5 ms, 20 ms\)"):
        rec.compare([cnn, loose], store=store)
    with pytest.raises(RecordError, match=rf"record {loose} .* p99 <= 20 ms, looser than the 5"):
        rec.compare([cnn, loose], p99_ms=5.0, store=store)
    # a result from before machines were recorded, or not a result: nothing is imported
    old = measured({}, 100.0).to_dict()
    del old["machine"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "other.json").write_text('{"hello": 1}')
    measured(GPU_BOX, 1.0, model="x").to_json(tmp_path / "fine.json")
    with pytest.raises(RecordError, match=r"^old.json does not record the machine it was"):
        rec.import_results([tmp_path / "fine.json", tmp_path / "old.json"], store)
    with pytest.raises(RecordError, match=r"other.json: not a result written by `workbench slo"):
        rec.import_results(tmp_path / "other.json", store)
    assert len(store.records()) == 3  # fine.json was not imported either


def test_a_plan_takes_imported_records_as_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "runs.sqlite"))  # the default store
    store = Store()
    far = rec.save_result(measured(GPU_BOX, 1000.0), store)
    near = rec.save_result(measured(machine_record(), 400.0), store)
    other = rec.save_result(measured(GPU_BOX, 400.0, model="digits-mlp"), store)
    candidates = [(RENTED, rec.load_record(r, store)) for r in (far, near)]
    p = plan(candidates, target_rate_per_s=900.0, p99_ms=5.0, years=1)
    assert int(p.choice["machines"]) == 1 and p.choice["rate_per_s"] == 1000.0
    with pytest.raises(PlanError, match="different models"):
        plan([(RENTED, rec.load_record(r, store)) for r in (far, other)], 900.0, 5.0)
    with pytest.raises(rec.NotFoundError, match="no record 'nope'"):
        rec.load_record("nope", store)
    # by id, from Python and from the command line
    by_id = plan([(RENTED, far), (RENTED, near)], target_rate_per_s=900.0, p99_ms=5.0, years=1)
    assert by_id.table.equals(p.table)
    toml = str(Path(__file__).parents[2] / "docs" / "machines" / "example-rented-cpu.toml")
    assert main(["plan", "--candidate", far, toml, "--rate", "900", "--p99-ms", "5"]) == 0
    assert "cheapest: " in capsys.readouterr().out


def test_workbench_import_prints_where_each_row_was_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "runs.sqlite")
    measured(GPU_BOX, 5000.0).to_json(tmp_path / "gpu-box.json")
    measured(machine_record(), 800.0).to_json(tmp_path / "here.json")
    files = [str(tmp_path / "gpu-box.json"), str(tmp_path / "here.json")]
    assert main(["import", *files, "--store", db]) == 0
    out = capsys.readouterr().out
    assert "imported 2 record(s)" in out and "digits-cnn within p99 <= 5 ms" in out
    assert "elsewhere" in out and "here" in out and "gpu-box" in out
    assert main(["import", "--store", db, "--model", "digits-mlp"]) == 0
    assert "none" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("[1]")
    assert main(["import", str(tmp_path / "bad.json"), "--store", db]) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error: bad.json: not a result") and err.count("\n") == 1


def test_a_scenario_result_is_recorded_with_its_throughput(tmp_path: Path) -> None:
    times = np.array([0.0, 0.001])
    frame = query_frame(0.0, times, times, times, times + 0.0005, samples=1, batch=1)
    bulk = SCENARIO_MINIMUMS["offline"]
    run = ScenarioResult("offline", "digits-cnn (int8)", "onnxruntime", "cpu", {}, bulk, frame,
                         0.002, machine=dict(GPU_BOX))  # fmt: skip
    store = Store(tmp_path / "runs.sqlite")
    record = rec.save_result(run, store)
    row = rec.records(store).iloc[0]
    assert row["model"] == "digits-cnn" and row["variant"] == "int8" and row["kind"] == "offline"
    assert row["rate_per_s"] == pytest.approx(1000.0) and row["where"] == "elsewhere"
    with pytest.raises(RecordError, match=r"is a scenario run \(offline\), not an SLO search"):
        rec.compare([record], store=store)
