"""The SLO search on a known latency model: verified points, batching found, honest rows."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from workbench.backends import base
from workbench.errors import InputError
from workbench.scenarios import Batching, SloResult, VirtualClock, slo
from workbench.testing import toy_mlp
from workbench.testing.serving import LatencyModelBackend
from workbench.units import format_number
from workbench.viz.serving import slo_figure

BUDGET_MS = 5.0
SHORT = {"min_queries": 200, "min_duration_s": 0.5, "steps": 6, "warmup": 1}


@pytest.fixture
def result(clock: VirtualClock) -> SloResult:
    return slo(
        toy_mlp(),
        BUDGET_MS,
        ["latency-model"],
        batching=[Batching(1, 0.0), Batching(8, 1.25)],
        price_per_hour=3.6,
        clock=clock,
        **SHORT,  # type: ignore[arg-type]
    )


def test_the_rate_found_is_a_verified_point_within_the_budget(result: SloResult) -> None:
    row = result.best()
    assert row["backend"] == "latency-model" and row["variant"] == "baseline"
    points = result.points
    at_best = points[(points["rate_per_s"] == row["max_rate_per_s"]) & points["passed"]]
    assert len(at_best) == 1 and at_best["p99_ms"].iloc[0] <= BUDGET_MS
    assert row["p99_ms"] == at_best["p99_ms"].iloc[0]
    # every point above the answer, in the winning configuration, failed with its reason
    same = points[points["max_batch"] == row["max_batch"]]
    above = same[same["rate_per_s"] > row["max_rate_per_s"]]
    assert len(above) > 0 and not above["passed"].any() and above["reasons"].str.len().gt(0).all()
    lowest_failure = above.loc[above["rate_per_s"].idxmin()]
    assert (
        row["limited_by"]
        == f"at {format_number(lowest_failure['rate_per_s'])}/s: {lowest_failure['reasons']}"
    )


def test_batching_beats_one_at_a_time_past_the_single_query_capacity(result: SloResult) -> None:
    points = result.points
    # alone, a query takes 1.25 ms: no rate at or above 800/s can pass without batching
    alone = points[points["max_batch"] == 1]
    assert alone.loc[alone["passed"], "rate_per_s"].max() < 800.0
    row = result.best()
    assert row["max_batch"] == 8 and row["batch_window_ms"] == 1.25
    assert row["max_rate_per_s"] > 800.0
    assert row["capacity_per_s"] == pytest.approx(8 / 3e-3)  # 8 samples in 1 + 8 x 0.25 ms
    assert row["points"] == 2 * SHORT["steps"]


def test_cost_per_million_at_the_sustained_rate(result: SloResult) -> None:
    row = result.best()
    assert row["cost_per_million"] == pytest.approx(3.6 / 3600 / row["max_rate_per_s"] * 1e6)


def test_each_variant_gets_its_own_row(clock: VirtualClock) -> None:
    base.register("latency-model")(lambda: LatencyModelBackend(clock, 1.0, 0.25, {"fast": 2.0}))
    model = toy_mlp()
    fast = dataclasses.replace(model, recipe={"name": "fast"})
    result = slo(
        model,
        BUDGET_MS,
        ["latency-model"],
        [model, fast],
        clock=clock,
        batching=[Batching()],
        **SHORT,
    )  # type: ignore[arg-type]
    rates = result.table.set_index("variant")["max_rate_per_s"]
    assert list(rates.index) == ["baseline", "fast"]
    assert rates["fast"] > 1.5 * rates["baseline"]  # twice as fast: well over 1.5x the rate
    assert result.table.set_index("variant").loc["fast", "capacity_per_s"] == pytest.approx(1600.0)


def test_a_configuration_that_cannot_run_gets_a_row_saying_why(clock: VirtualClock) -> None:
    result = slo(toy_mlp(), BUDGET_MS, ["latency-model", "no-such-backend"], clock=clock, **SHORT)  # type: ignore[arg-type]
    rows = result.table.set_index("backend")
    assert rows.loc["latency-model", "max_rate_per_s"] > 0
    assert math.isnan(rows.loc["no-such-backend", "max_rate_per_s"])
    assert "unknown backend 'no-such-backend'" in rows.loc["no-such-backend", "limited_by"]


def test_a_budget_below_one_query_finds_no_rate(clock: VirtualClock) -> None:
    result = slo(toy_mlp(), 1.0, ["latency-model"], batching=[Batching()], clock=clock, **SHORT)  # type: ignore[arg-type]
    row = result.best()
    assert row["max_rate_per_s"] == 0.0 and row["points"] == 0  # no server run was needed
    assert row["limited_by"] == "a batch of 1 takes 1.25 ms (median of 20), over the 1 ms budget"
    assert result.points.empty
    assert "no configuration met the budget" in result._repr_html_()


def test_round_trip_summary_and_figure(result: SloResult, tmp_path: Path) -> None:
    result.to_json(tmp_path / "slo.json")
    back = SloResult.from_json(tmp_path / "slo.json")
    assert back.table.equals(result.table) and back.points.equals(result.points)
    text = result.summary()
    assert "p99 <= 5 ms" in text and "limited by" in text and "cost at 3.6 per hour" in text
    assert "<table" in result._repr_html_()
    fig = slo_figure(result)
    assert [trace.name for trace in fig.data] == [
        "baseline latency-model cpu no batching",
        "baseline latency-model cpu batch<=8, 1.25 ms",
    ]
    assert fig.layout.shapes[0].y0 == BUDGET_MS == fig.layout.shapes[0].y1
    assert list(fig.data[0].x) == sorted(fig.data[0].x)


@pytest.mark.parametrize(("budget", "steps"), [(0.0, 3), (float("nan"), 3), (5.0, 0)])
def test_bad_budget_or_steps_is_refused(clock: VirtualClock, budget: float, steps: int) -> None:
    with pytest.raises(InputError):
        slo(toy_mlp(), budget, ["latency-model"], steps=steps, clock=clock)
