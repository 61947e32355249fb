"""What-if tables and the cost figure replay the plan's own arithmetic at other inputs."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from workbench.planning import Machine, plan
from workbench.planning.what_if import (
    cost_against_traffic,
    electricity_sensitivity,
    utilization_sensitivity,
)
from workbench.scenarios import SloResult
from workbench.scenarios.result import Minimums
from workbench.scenarios.slo import TABLE_COLUMNS

RENTED = Machine("rented", "USD", rental_per_hour=1.0)
OWNED = Machine(
    "owned", "USD", purchase=10000.0, lifetime_years=5.0, power_watts=1000.0,
    power_basis="declared", electricity_per_kwh=0.1,
)  # fmt: skip


def measured(rate: float) -> SloResult:
    row = dict.fromkeys(TABLE_COLUMNS, math.nan) | {
        "variant": "baseline", "backend": "onnxruntime", "device": "cpu",
        "max_rate_per_s": rate, "limited_by": "", "points": 5,
    }  # fmt: skip
    table = pd.DataFrame([row], columns=TABLE_COLUMNS)
    return SloResult(5.0, table, pd.DataFrame(), Minimums(200, 0.5, 270336, 600.0))


def test_cost_against_traffic_steps_by_whole_machines() -> None:
    p = plan([(RENTED, measured(100.0))], target_rate_per_s=250.0, p99_ms=5.0, years=1)
    curve = cost_against_traffic(p, rates=[100.0, 101.0, 250.0])
    assert list(curve["machines"]) == [1, 2, 3]
    assert list(curve["tco_horizon"]) == pytest.approx([8760.0, 17520.0, 26280.0])
    # the plan's own target gives the plan's own row
    assert curve["tco_horizon"].iloc[2] == pytest.approx(p.choice["tco_horizon"])


def test_a_dearer_tariff_can_change_the_choice() -> None:
    # 1 year: rented needs ceil(50 / 12.5) = 4 machines, 35,040; owned needs 1:
    # 10,000 + 1 kW x 8760 h x the price (10,876 at 0.1/kWh, 36,280 at 3/kWh)
    p = plan([(RENTED, measured(12.5)), (OWNED, measured(1000.0))], 50.0, 5.0, years=1)
    table = electricity_sensitivity(p, factors=[1.0, 30.0])
    assert list(table["cheapest"]) == [
        "owned baseline onnxruntime/cpu",
        "rented baseline onnxruntime/cpu",
    ]
    assert list(table["tco_horizon"]) == pytest.approx([10876.0, 35040.0])
    assert table["runner_up_margin"].iloc[1] == pytest.approx(36280 / 35040 - 1)


def test_headroom_sizes_for_a_share_of_the_measured_rate() -> None:
    # rented: 100/s per machine; owned: 1000/s. At 250/s for 1 year: rented 3 (26,280)
    # against owned 1 (10,876). Capped at 50%: rented 5 (43,800), owned still 1
    p = plan([(RENTED, measured(100.0)), (OWNED, measured(1000.0))], 250.0, 5.0, years=1)
    table = utilization_sensitivity(p, caps=[1.0, 0.5])
    assert list(table["machines"]) == [1, 1]
    assert table["runner_up_margin"].iloc[0] == pytest.approx(26280 / 10876 - 1)
    assert table["runner_up_margin"].iloc[1] == pytest.approx(43800 / 10876 - 1)
    # a cap can turn the choice: at 250/s one rented machine at 250/s (8,760) wins until
    # a 90% cap needs two (17,520), when one owned at 600/s (10,876) is cheaper
    p = plan([(RENTED, measured(250.0)), (OWNED, measured(600.0))], 250.0, 5.0, years=1)
    turned = utilization_sensitivity(p, caps=[1.0, 0.9])
    assert [c.split()[0] for c in turned["cheapest"]] == ["rented", "owned"]


def test_the_cost_figure_draws_one_line_per_candidate_with_the_target() -> None:
    from workbench.viz.plan import plan_cost_figure

    p = plan([(RENTED, measured(100.0)), (OWNED, measured(1000.0))], 50.0, 5.0)
    fig = plan_cost_figure(p)
    # cheapest first, as in the plan's table
    assert [t.name for t in fig.data] == [
        "owned baseline onnxruntime/cpu",
        "rented baseline onnxruntime/cpu",
    ]
    first = fig.data[1]
    assert list(first.customdata[:, 0])[:2] == [1, 1]  # 5/s and a bit more: one machine
    assert min(first.x) == pytest.approx(5.0) and max(first.x) == pytest.approx(500.0)
    assert any("target 50/s" in a.text for a in fig.layout.annotations)
