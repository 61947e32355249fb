"""What-if tables of a `Plan`: its cost against traffic, and the choice against the
electricity price and against a cap on how busy a machine may be at peak. Each replays
the plan's arithmetic on the rates it already holds; nothing is measured again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from workbench.argtypes import number
from workbench.planning.fleet import Plan, candidate_label, candidate_row


def _candidates(plan: Plan) -> list[tuple[Any, dict[str, Any]]]:
    """(machine, measured row) of every candidate that sustained a rate."""
    machines = {m.name: m for m in plan.machines}
    return [
        (
            machines[row["machine"]],
            {
                "variant": row["variant"],
                "backend": row["backend"],
                "device": row["device"],
                "max_rate_per_s": row["rate_per_s"],
                "unit": row["unit"],
                "limited_by": row["why_not"],
            },
        )
        for _, row in plan.table.iterrows()
        if row["rate_per_s"] > 0
    ]


def cost_against_traffic(plan: Plan, rates: Sequence[float] | None = None) -> pd.DataFrame:
    """Machines and cost over the plan's horizon at other average rates.

    Args:
        plan: a `Plan`; every other setting of its workload is kept.
        rates: average predictions per second to cost (default: 24 rates spaced
            evenly on a log scale from a tenth of the plan's target to ten times it).

    Returns:
        One row per candidate and rate: ``candidate``, ``target_rate_per_s``,
        ``machines``, ``tco_horizon``, ``cost_per_million`` and ``meets`` (False past
        the plan's ``max_machines``).
    """
    target = plan.workload.target_rate_per_s
    grid = np.geomspace(target / 10, target * 10, 24) if rates is None else rates
    rows = []
    for machine, measured in _candidates(plan):
        label = candidate_label(measured | {"machine": machine.name})
        for rate in grid:
            workload = replace(plan.workload, target_rate_per_s=number("rate", rate, above=0.0))
            row = candidate_row(machine, measured, workload)
            rows.append(
                {"candidate": label, "target_rate_per_s": workload.target_rate_per_s}
                | {k: row[k] for k in ("machines", "tco_horizon", "cost_per_million", "meets")}
            )
    return pd.DataFrame(
        rows,
        columns=[
            "candidate", "target_rate_per_s", "machines", "tco_horizon", "cost_per_million",
            "meets",
        ],
    )  # fmt: skip


def utilization_sensitivity(
    plan: Plan, caps: Sequence[float] = (0.5, 0.7, 0.9, 1.0)
) -> pd.DataFrame:
    """The cheapest candidate when no machine may be busier than ``cap`` at peak.

    A cap sizes each machine for ``cap`` x its measured rate (headroom for noisy
    neighbours, failover, a measured rate that is optimistic); 1.0 is the plan itself.

    Returns:
        One row per cap: ``cap``, ``cheapest``, ``machines``, ``tco_horizon`` and
        ``runner_up_margin``.
    """
    rows = []
    for cap in caps:
        cap = number("cap", cap, above=0.0, maximum=1.0)
        costed = []
        for machine, measured in _candidates(plan):
            capped = measured | {"max_rate_per_s": measured["max_rate_per_s"] * cap}
            row = candidate_row(machine, capped, plan.workload)
            if row["meets"]:
                costed.append((row["tco_horizon"], candidate_label(row), row["machines"]))
        rows.append(_cheapest(costed) | {"cap": cap})
    return pd.DataFrame(
        rows, columns=["cap", "cheapest", "machines", "tco_horizon", "runner_up_margin"]
    )


def _cheapest(costed: list[tuple[float, str, int]]) -> dict[str, Any]:
    """The cheapest of (cost, label, machines), and how much more the next one costs."""
    if not costed:
        return {"cheapest": "none meets the workload", "machines": math.nan,
                "tco_horizon": math.nan, "runner_up_margin": math.nan}  # fmt: skip
    costed.sort()
    margin = costed[1][0] / costed[0][0] - 1 if len(costed) > 1 else math.nan
    return {"cheapest": costed[0][1], "machines": costed[0][2], "tco_horizon": costed[0][0],
            "runner_up_margin": margin}  # fmt: skip


def electricity_sensitivity(
    plan: Plan, factors: Sequence[float] = (0.5, 1.0, 2.0, 4.0)
) -> pd.DataFrame:
    """The cheapest candidate when every electricity price is scaled by each factor.

    Machines without an electricity price (or without power) keep their cost: their
    energy is not in the plan at all, which the plan's notes already say.

    Returns:
        One row per factor: ``factor``, ``cheapest``, ``machines``, ``tco_horizon`` and
        ``runner_up_margin`` (how much more the next candidate costs, as a fraction).
    """
    rows = []
    candidates = _candidates(plan)
    for factor in factors:
        factor = number("factor", factor, minimum=0.0)
        costed = []
        for machine, measured in candidates:
            if machine.electricity_per_kwh is not None:
                machine = replace(machine, electricity_per_kwh=machine.electricity_per_kwh * factor)
            row = candidate_row(machine, measured, plan.workload)
            if row["meets"]:
                costed.append((row["tco_horizon"], candidate_label(row), row["machines"]))
        rows.append(_cheapest(costed) | {"factor": factor})
    return pd.DataFrame(
        rows, columns=["factor", "cheapest", "machines", "tco_horizon", "runner_up_margin"]
    )
