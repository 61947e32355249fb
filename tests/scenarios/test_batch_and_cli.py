"""Batch-size sweep with its knee, the serving figures, and the two commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.errors import InputError
from workbench.scenarios import ScenarioResult, VirtualClock, batch_sweep, knee, scenario
from workbench.testing import toy_mlp
from workbench.viz.serving import batch_sweep_figure, scenario_figure


def test_the_knee_is_the_smallest_batch_near_the_best_throughput() -> None:
    assert knee([1, 2, 4, 8, 16], [100.0, 190.0, 330.0, 360.0, 365.0]) == 4
    assert knee([1, 2], [50.0, 40.0]) == 1  # batching only hurts: the knee is batch 1
    with pytest.raises(InputError):
        knee([1, 2], [1.0])


def test_batch_sweep_on_onnxruntime() -> None:
    sweep = batch_sweep("digits-cnn", "onnxruntime", batch_sizes=[4, 1], budget_s=0.02)
    assert list(sweep.table["batch_size"]) == [1, 4]
    assert (sweep.table["throughput_per_s"] > 0).all() and (sweep.table["n"] >= 10).all()
    assert sweep.knee_batch_size in (1, 4) and "knee at batch" in sweep.summary()
    fig = batch_sweep_figure(sweep)
    assert [t.name for t in fig.data] == [
        "latency p50 (ms)",
        "latency p99 (ms)",
        "throughput (samples/s)",
    ]
    assert fig.layout.shapes[0].x0 == sweep.knee_batch_size
    # on the log axis the label sits at log10(knee); at the knee itself plotly would put
    # it at 10**knee and stretch the axis out to there
    (label,) = fig.layout.annotations
    assert label.text.startswith("knee") and label.x == pytest.approx(
        math.log10(sweep.knee_batch_size)
    )
    with pytest.raises(InputError, match="at least 1"):
        batch_sweep("digits-cnn", batch_sizes=[0])


def test_scenario_figure_marks_dropped_queries(clock: VirtualClock) -> None:
    result = scenario(
        toy_mlp(), "server", "latency-model", rate_per_s=2000.0, target_latency_ms=5.0,
        drop_after_ms=20.0, min_duration_s=0.2, clock=clock, warmup=1,
    )  # fmt: skip
    fig = scenario_figure(result)
    assert fig.data[1].name == f"dropped ({result.dropped})" and result.dropped > 0
    assert "INVALID" in fig.layout.title.text


def test_workbench_scenario_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "offline.json"
    args = ["scenario", "digits-cnn", "--kind", "offline", "--batch-size", "8"]
    code = main([*args, "--min-queries", "32", "--min-duration", "0.02", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "offline: VALID" in printed and "energy:" in printed
    result = ScenarioResult.from_json(out)
    assert result.kind == "offline" and result.samples >= 32
    assert json.loads(out.read_text())["metrics"]["valid"] is True


def test_workbench_slo_prints_a_table_per_backend(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["slo", "digits-cnn", "--p99-ms", "5", "--steps", "1", "--min-queries", "16",
         "--min-duration", "0.02", "--price-per-hour", "1.5"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "highest sustained server rate with p99 <= 5 ms" in printed
    assert "onnxruntime" in printed and "max rate /s" in printed  # the header as printed
    assert "cost at 1.5 per hour" in printed


def test_workbench_scenario_refuses_a_server_without_rate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["scenario", "digits-cnn", "--kind", "server"]) == 2
    assert "needs rate_per_s" in capsys.readouterr().err


def test_a_scenario_records_the_cpus_and_how_busy_they_were(clock: VirtualClock) -> None:
    result = scenario(
        toy_mlp(), "single-stream", "latency-model", min_queries=8, min_duration_s=0.01,
        clock=clock, warmup=1,
    )  # fmt: skip
    env = result.environment
    assert env["cpus"]["available"] >= 1 and len(env["load"]) == 3
    assert {"others_cpus", "load", "steal", "reasons"} <= set(env["contention"])
    again = ScenarioResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.environment["contention"] == env["contention"]
