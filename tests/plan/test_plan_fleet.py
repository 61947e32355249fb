"""Plans from SLO results: sizing and totals by hand, the choice, refusals, JSON round trip."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from workbench.backends import base
from workbench.errors import ParameterError
from workbench.planning import Machine, Plan, PlanError, UnreachableError, plan
from workbench.profiling.generate import GenerationProfile
from workbench.profiling.timer import Measurement
from workbench.scenarios import Batching, SloResult, VirtualClock, slo
from workbench.scenarios.result import Minimums
from workbench.scenarios.slo import TABLE_COLUMNS
from workbench.testing.serving import LatencyModelBackend

MINIMUMS = Minimums(200, 0.5, 270336, 600.0)
RENTED = Machine("rented", "USD", rental_per_hour=3.6, power_watts=200.0, power_basis="declared")
OWNED = Machine(
    "owned", "USD", purchase=20000.0, lifetime_years=4.0, upkeep_per_year=1000.0,
    power_watts=700.0, power_basis="measured", pue=1.5, electricity_per_kwh=0.1,
)  # fmt: skip


def measured(p99_ms: float, *rows: tuple[str, float], **settings: str) -> SloResult:
    """An SLO result with one row per (variant, max rate) on onnxruntime/cpu."""
    table = pd.DataFrame(
        [
            {c: math.nan for c in TABLE_COLUMNS}
            | {"variant": v, "backend": "onnxruntime", "device": "cpu", "max_rate_per_s": r,
               "limited_by": "at 900/s: p99 over the budget", "points": 5}
            for v, r in rows
        ],
        columns=TABLE_COLUMNS,
    )  # fmt: skip
    return SloResult(p99_ms, table, pd.DataFrame(), MINIMUMS, settings=dict(settings))


def test_a_worked_plan_adds_up_by_hand() -> None:
    p = plan(
        [(RENTED, measured(5.0, ("baseline", 500.0))), (OWNED, measured(5.0, ("int8", 2000.0)))],
        target_rate_per_s=1000.0, p99_ms=5.0, peak_to_average=2.0, growth_per_year=0.5,
        redundancy=1, years=2,
    )  # fmt: skip
    # design peak: 1000 x 2 x 1.5^2 = 4500/s
    rows = p.table.set_index("machine")
    # rented: ceil(4500 / 500) + 1 = 10 machines at 3.6/h for 2 years = 630,720
    assert rows.at["rented", "machines"] == 10
    assert rows.at["rented", "tco_horizon"] == pytest.approx(10 * 3.6 * 8760 * 2)
    assert rows.at["rented", "tco_1y"] == pytest.approx(10 * 3.6 * 8760)
    assert rows.at["rented", "utilization"] == pytest.approx(1000 / 5000)
    assert rows.at["rented", "peak_utilization"] == pytest.approx(4500 / 5000)
    assert rows.at["rented", "energy_j_per_prediction"] == pytest.approx(200 / 500)
    assert math.isnan(rows.at["rented", "energy_cost_horizon"])  # no tariff: not invented
    # owned: ceil(4500 / 2000) + 1 = 4 machines; 2 years: 4 x 20000 + 4 x 1000 x 2
    # + 4 x 0.7 kW x 17520 h x 1.5 x 0.1 = 80000 + 8000 + 7358.4
    assert rows.at["owned", "machines"] == 4
    assert rows.at["owned", "energy_cost_horizon"] == pytest.approx(7358.4)
    assert rows.at["owned", "tco_horizon"] == pytest.approx(95358.4)
    # 3 years still within the 4-year lifetime: no second purchase
    assert rows.at["owned", "tco_3y"] == pytest.approx(80000 + 12000 + 4 * 0.7 * 26280 * 0.15)
    # predictions over 2 years: 1000/s in year one, 1500/s in year two
    served = (1000 + 1500) * 3600 * 8760
    assert rows.at["owned", "cost_per_million"] == pytest.approx(95358.4 / served * 1e6)
    assert rows.at["owned", "predictions_per_joule"] == pytest.approx(2000 / 700)
    assert rows.at["owned", "power_basis"] == "measured 700 W"
    assert p.choice["machine"] == "owned"
    assert "costs 535,362 USD more over 2 years (+561%) than owned" in rows.at["rented", "why_not"]


def test_a_one_machine_plan_equals_the_measured_run(clock: VirtualClock) -> None:
    run = slo(
        relu_model(), 5.0, ["latency-model"], batching=[Batching(1, 0.0)], price_per_hour=3.6,
        clock=clock, min_queries=20, min_duration_s=0.05, steps=3, warmup=1,
    )  # fmt: skip
    row = run.best()
    assert row["max_rate_per_s"] > 0
    rented = Machine("here", "USD", rental_per_hour=3.6)
    p = plan([(rented, run)], target_rate_per_s=float(row["max_rate_per_s"]), p99_ms=5.0, years=1)
    assert p.choice["machines"] == 1 and p.choice["utilization"] == pytest.approx(1.0)
    assert p.choice["rate_per_s"] == row["max_rate_per_s"]
    assert p.choice["cost_per_million"] == pytest.approx(row["cost_per_million"], rel=1e-9)


def relu_model() -> object:
    """A one-node ONNX model (the latency-model backend never runs it; no torch import)."""
    from onnx import TensorProto, helper

    spec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in "xy"]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", spec[:1], spec[1:])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def clock() -> Iterator[VirtualClock]:
    virtual = VirtualClock()
    base.register("latency-model")(lambda: LatencyModelBackend(virtual, 1.0, 0.25))
    yield virtual
    base._FACTORIES.pop("latency-model", None)
    base._INSTANCES.pop("latency-model", None)


def test_a_candidate_that_met_no_rate_loses_and_says_why() -> None:
    p = plan(
        [(RENTED, measured(5.0, ("baseline", 500.0), ("pruned", 0.0)))],
        target_rate_per_s=100.0, p99_ms=5.0,
    )  # fmt: skip
    assert list(p.table["variant"]) == ["baseline", "pruned"]
    assert p.table.iloc[1]["why_not"].startswith("no rate met p99 <= 5 ms: at 900/s")


def test_an_unreachable_target_names_the_nearest_and_what_it_takes() -> None:
    pairs = [(RENTED, measured(5.0, ("baseline", 500.0))), (OWNED, measured(5.0, ("a", 800.0)))]
    with pytest.raises(UnreachableError) as caught:
        plan(pairs, target_rate_per_s=10_000.0, p99_ms=5.0, redundancy=1, max_machines=5)
    text = str(caught.value)
    assert "nearest: owned a onnxruntime/cpu serves 3,200/s" in text
    assert "it would take 14 machines of it, or 2,500/s per machine" in text
    with pytest.raises(UnreachableError, match="no candidate sustains any rate"):
        plan([(RENTED, measured(5.0, ("baseline", 0.0)))], target_rate_per_s=1.0, p99_ms=5.0)


def test_mismatched_records_are_refused_with_the_reason() -> None:
    with pytest.raises(PlanError, match="measured at p99 <= 10 ms, looser than the 5 ms"):
        plan([(RENTED, measured(10.0, ("baseline", 500.0)))], target_rate_per_s=1.0, p99_ms=5.0)
    two = [
        (RENTED, measured(5.0, ("baseline", 500.0), model="resnet")),
        (OWNED, measured(5.0, ("baseline", 900.0), model="bert")),
    ]
    with pytest.raises(PlanError, match=r"different models \['bert', 'resnet'\]"):
        plan(two, target_rate_per_s=1.0, p99_ms=5.0)
    euro = Machine("euro", "EUR", rental_per_hour=1.0)
    with pytest.raises(PlanError, match="different currencies"):
        plan([(RENTED, measured(5.0, ("b", 5.0))), (euro, measured(5.0, ("b", 5.0)))], 1.0, 5.0)
    with pytest.raises(ParameterError, match="peak_to_average"):
        plan([(RENTED, measured(5.0, ("b", 5.0)))], 1.0, 5.0, peak_to_average=0.5)
    # a tighter measured budget is a valid, conservative rate for a looser objective
    assert plan([(RENTED, measured(4.0, ("b", 5.0)))], 1.0, 5.0).choice["machines"] == 1


def test_the_plan_round_trips_through_json(tmp_path: Path) -> None:
    p = plan(
        [(RENTED, measured(5.0, ("baseline", 500.0))), (OWNED, measured(5.0, ("int8", 0.0)))],
        target_rate_per_s=700.0, p99_ms=5.0, redundancy=1,
    )  # fmt: skip
    text = p.to_json(tmp_path / "plan.json")
    back = Plan.from_json(tmp_path / "plan.json")
    assert Plan.from_json(text).workload == back.workload == p.workload
    pd.testing.assert_frame_equal(back.table, p.table, check_dtype=False)
    assert back.machines == p.machines and back.notes == p.notes
    assert "cheapest: rented baseline onnxruntime/cpu: 3 machine(s)" in p.summary()
    assert any("DECLARED power 200 W" in n for n in p.notes)


def generation(tpot_ms: float, step_ms: tuple[float, ...], batch: int = 4) -> GenerationProfile:
    """A generation profile of 3 runs x 5 tokens: the TPOTs and inter-token steps given."""
    once = Measurement((10.0, 10.0, 10.0))
    return GenerationProfile(
        "tiny-lm", "onnxruntime", "cpu", batch, 8, 5, 0, ((1, 2, 3, 4, 5),) * batch, once,
        Measurement(step_ms), Measurement((tpot_ms,) * 3), once, 64, 4096, 4096, 10**6, 10**6,
    )  # fmt: skip


def test_a_generative_candidate_is_costed_per_million_tokens(tmp_path: Path) -> None:
    # batch 4 at a median TPOT of 20 ms: 200 tokens/s; every step within 25 ms
    fast = generation(20.0, (20.0,) * 11 + (25.0,))
    p = plan([(RENTED, fast)], target_rate_per_s=500.0, p99_ms=30.0, years=1)
    best = p.choice
    assert best["unit"] == "tokens" and best["rate_per_s"] == pytest.approx(200.0)
    assert best["machines"] == 3  # ceil(500 / 200)
    served = 500 * 3600 * 8760  # tokens in one year
    assert best["cost_per_million"] == pytest.approx(3 * 3.6 * 8760 / served * 1e6)
    assert best["energy_j_per_prediction"] == pytest.approx(200 / 200.0)  # joules per token
    assert "per 1M tokens" in p.summary() and "500 tokens/s average" in p.summary()
    assert any("decode rate of one generation profile (batch 4" in n for n in p.notes)
    # the JSON of a generation profile is a candidate too, and the plan round-trips
    fast.to_json(tmp_path / "gen.json")
    again = plan([(RENTED, tmp_path / "gen.json")], 500.0, 30.0, years=1)
    assert Plan.from_json(again.to_json()).unit == "tokens"
    # a step over the objective: no rate within it, said with the measured p99
    slow = generation(20.0, (20.0,) * 11 + (40.0,))
    with pytest.raises(UnreachableError, match=r"inter-token p99 .* ms is over the objective"):
        plan([(RENTED, slow)], target_rate_per_s=500.0, p99_ms=30.0)
    with pytest.raises(PlanError, match=r"count different things \(predictions/s and tokens/s\)"):
        plan([(RENTED, fast), (OWNED, measured(30.0, ("b", 500.0)))], 500.0, 30.0)
