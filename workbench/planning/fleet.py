"""`plan`: how many of which machine a workload needs, and what it costs over its life.

A plan measures nothing: it combines the highest rate each (machine, variant, backend,
device) sustained within a p99 budget (an `SloResult`, measured on that machine) with the
machine's economics (`Machine`). The arithmetic, per candidate:

- design rate = target x peak-to-average x (1 + growth per year) ** years;
- machines = ceil(design rate / measured rate) + redundancy (the k of N+k);
- utilization = target / (machines x measured rate), at the average of year one;
- total cost over y years = capital (rental, or a purchase per machine per lifetime
  started) + upkeep + energy (power x hours x PUE x electricity price, when all known);
- cost per 1M predictions = total cost over the horizon / predictions served in it;
- energy per prediction = power / measured rate (the machine at its measured rate),
  labelled declared or measured, or unavailable.

A generative model's candidate is measured in tokens/s (a `GenerationProfile`'s decode
rate, or a result whose rows say ``unit = "tokens"``): its workload's rate is tokens/s
and every "per prediction" figure is per token (cost per 1M tokens, joules per token).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.argtypes import number, whole
from workbench.errors import InputError
from workbench.planning.economics import HOURS_PER_YEAR, Machine, load_machine
from workbench.planning.records import is_record_id, load_record
from workbench.profiling.results import dump_json, load_json
from workbench.units import format_number

#: relative slack when comparing a recorded budget with the objective (JSON rounding)
_SAME = 1e-9
#: what a candidate's rate counts: forward models' predictions, generative models' tokens
UNITS = ("predictions", "tokens")

COLUMNS = [
    "machine", "variant", "backend", "device", "rate_per_s", "unit", "machines", "utilization",
    "peak_utilization", "cost_per_million", "tco_1y", "tco_3y", "tco_horizon",
    "capital_horizon", "upkeep_horizon", "energy_cost_horizon", "energy_j_per_prediction",
    "predictions_per_joule", "power_basis", "currency", "meets", "why_not",
]  # fmt: skip


class PlanError(InputError):
    """Candidates that cannot be planned together, or a workload that is out of range."""


class UnreachableError(PlanError):
    """No candidate meets the workload: the message names the nearest and what it takes."""


@dataclass(frozen=True)
class Workload:
    """The traffic to serve and its latency objective.

    Attributes:
        target_rate_per_s: average predictions per second in year one.
        p99_ms: the p99 latency objective, in milliseconds.
        peak_to_average: the peak rate over the average (>= 1).
        growth_per_year: yearly traffic growth as a fraction (0.3 = +30% a year).
        redundancy: spare machines on top of those the peak needs (the k of N+k).
        years: the horizon the fleet is sized for and costed over (1 to 20).
        max_machines: most machines the plan may use (a rack, a quota); None: no limit.
    """

    target_rate_per_s: float
    p99_ms: float
    peak_to_average: float = 1.0
    growth_per_year: float = 0.0
    redundancy: int = 0
    years: int = 3
    max_machines: int | None = None

    def __post_init__(self) -> None:
        number("target_rate_per_s", self.target_rate_per_s, above=0.0)
        number("p99_ms", self.p99_ms, above=0.0)
        number("peak_to_average", self.peak_to_average, minimum=1.0)
        number("growth_per_year", self.growth_per_year, minimum=0.0, maximum=100.0)
        whole("redundancy", self.redundancy, minimum=0, maximum=10_000)
        whole("years", self.years, minimum=1, maximum=20)
        if self.max_machines is not None:
            whole("max_machines", self.max_machines, minimum=1)

    @property
    def design_rate_per_s(self) -> float:
        """The peak rate at the end of the horizon: what the fleet must sustain."""
        growth = (1.0 + self.growth_per_year) ** self.years
        return self.target_rate_per_s * self.peak_to_average * growth

    @property
    def predictions(self) -> float:
        """Predictions served over the horizon (year y at the target x growth ** y)."""
        yearly = self.target_rate_per_s * 3600.0 * HOURS_PER_YEAR
        return sum(yearly * (1.0 + self.growth_per_year) ** y for y in range(self.years))


@dataclass(frozen=True)
class Plan:
    """Every candidate costed for one workload, and the cheapest that meets it.

    Attributes:
        workload: the workload planned for.
        table: one row per candidate (columns `COLUMNS`), cheapest meeting one first.
        machines: the economics every row's costs came from.
        notes: what the figures rest on (example prices, energy not included...).
    """

    workload: Workload
    table: pd.DataFrame
    machines: tuple[Machine, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def unit(self) -> str:
        """What the rates and "per 1M" costs count: ``"predictions"`` or ``"tokens"``."""
        return str(self.table["unit"].iloc[0]) if len(self.table) else "predictions"

    @property
    def choice(self) -> pd.Series:
        """The chosen candidate's row (the cheapest over the horizon that meets it)."""
        return self.table.iloc[0]

    def summary(self) -> str:
        """The choice, the runners-up and why each loses, and what the figures rest on."""
        from workbench.profiling.formatting import frame_text

        best = self.choice
        w = self.workload
        lines = [
            f"plan for {w.target_rate_per_s:g} {self.unit}/s average (peak x{w.peak_to_average:g}, "
            f"+{w.growth_per_year:.0%}/year over {_years(w.years)}: "
            f"{format_number(w.design_rate_per_s)}/s), "
            f"p99 <= {w.p99_ms:g} ms, N+{w.redundancy}",
            f"cheapest: {candidate_label(best)}: {int(best['machines'])} machine(s), "
            f"{best['tco_horizon']:,.0f} {best['currency']} over {_years(w.years)}, "
            f"{format_number(best['cost_per_million'])} {best['currency']} per 1M {self.unit}",
            frame_text(self.table.drop(columns=["why_not"])),
        ]
        losers = self.table.iloc[1:]
        if len(losers):
            lines.append("runners-up:")
            lines += [f"  {candidate_label(row)}: {row['why_not']}" for _, row in losers.iterrows()]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import frame_html

        return (
            "<pre>"
            + html.escape(self.summary().split("\n")[1])
            + "</pre>"
            + frame_html(self.table)
            + "".join(f"<br><small>{html.escape(n)}</small>" for n in self.notes)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        from workbench.scenarios.result import json_rows

        return {
            "workload": asdict(self.workload),
            "table": json_rows(self.table),
            "machines": [m.to_dict() for m in self.machines],
            "notes": list(self.notes),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The plan as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Plan:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        data = load_json(text_or_path, "a plan")
        table = pd.DataFrame(data["table"], columns=COLUMNS)
        numeric = [c for c in COLUMNS if c not in ("machine", "variant", "backend", "device",
                                                     "unit", "machines", "power_basis",
                                                     "currency", "meets", "why_not")]  # fmt: skip
        table["unit"] = table["unit"].fillna("predictions")  # plans written before tokens
        # machine counts stay whole (2, not 2.0) unless one is missing, as when planned
        whole = table["machines"].notna().all()
        types = {**dict.fromkeys(numeric, "float64"), "machines": "int64" if whole else "float64"}
        return cls(
            workload=Workload(**data["workload"]),
            table=table.astype(types),
            machines=tuple(Machine.from_dict(m) for m in data["machines"]),
            notes=tuple(data["notes"]),
        )


def _years(count: int) -> str:
    return f"{count} year" + ("" if count == 1 else "s")


def candidate_label(row: Any) -> str:
    """``machine variant backend/device`` of a table row."""
    return f"{row['machine']} {row['variant']} {row['backend']}/{row['device']}"


Pair = tuple[Machine | str | Path, Any]


def plan(
    candidates: Sequence[Pair],
    target_rate_per_s: float,
    p99_ms: float,
    *,
    peak_to_average: float = 1.0,
    growth_per_year: float = 0.0,
    redundancy: int = 0,
    years: int = 3,
    max_machines: int | None = None,
) -> Plan:
    """Size and cost a fleet for a workload from measured SLO results.

    Args:
        candidates: ``(machine, slo_result)`` pairs: the machine's economics (a `Machine`
            or a TOML path) and the `SloResult` measured on it (or its JSON path, or the
            id of a record in the store: `workbench.planning.records`); every
            row of the result (variant, backend, device) is a candidate. For a generative
            model, a `GenerationProfile` (or its JSON) in place of the SLO result: its
            decode tokens/s is the rate, within the objective when its inter-token p99 is.
        target_rate_per_s: average predictions per second in year one (tokens per
            second when the candidates are generation profiles).
        p99_ms: the p99 objective; each SLO result must have been measured at this
            budget or a tighter one.
        peak_to_average: peak rate over average rate.
        growth_per_year: yearly growth as a fraction (0.3 = +30% a year).
        redundancy: spare machines (N+k).
        years: horizon to size and cost for.
        max_machines: most machines a plan may use.

    Returns:
        A `Plan`; its table's first row is the cheapest candidate over ``years`` that
        meets the workload, the others say why they lose.

    Raises:
        PlanError: no candidates, an SLO result measured at a looser budget, results of
            different models, prices in different currencies, predictions mixed with tokens.
        UnreachableError: no candidate meets the workload (names the nearest and what
            it would take).
        EconomicsError: a machine file that is not valid.

    Example:
        >>> p = wb.plan([("box.toml", "slo.json")], target_rate_per_s=2000, p99_ms=5,
        ...             peak_to_average=2, redundancy=1)
        >>> p.table[["machine", "machines", "tco_3y", "why_not"]]
    """
    workload = Workload(
        target_rate_per_s, p99_ms, peak_to_average, growth_per_year, redundancy, years,
        max_machines,
    )  # fmt: skip
    pairs = [_resolve(machine, result) for machine, result in candidates]
    if not pairs:
        raise PlanError("plan needs at least one (machine, SLO result) candidate")
    _check_comparable(pairs, workload)
    rows = [
        candidate_row(m, row, workload)
        for m, result in pairs
        for row in measured_rows(result, p99_ms)
    ]
    table = pd.DataFrame(rows, columns=COLUMNS)
    meeting = table[table["meets"]]
    if meeting.empty:
        raise UnreachableError(_unreachable(table, workload))
    table = pd.concat(
        [meeting.sort_values(["tco_horizon", "machines"], kind="stable"), table[~table["meets"]]]
    ).reset_index(drop=True)
    best = table.iloc[0]
    for index in table.index[1:]:
        if table.at[index, "meets"]:
            more = table.at[index, "tco_horizon"] - best["tco_horizon"]
            table.at[index, "why_not"] = (
                f"costs {more:,.0f} {best['currency']} more over {_years(years)} "
                f"(+{more / best['tco_horizon']:.0%}) than {candidate_label(best)}"
                if more > 0
                else f"costs the same as {candidate_label(best)} with at least as many machines"
            )
    machines = tuple({m.name: m for m, _ in pairs}.values())
    return Plan(workload, table, machines, _notes(machines) + _token_notes(pairs))


def _resolve(machine: Machine | str | Path, result: Any) -> tuple[Machine, Any]:
    from workbench.profiling.generate import GenerationProfile
    from workbench.scenarios.slo import SloResult

    if not isinstance(machine, Machine):
        machine = load_machine(machine)
    if isinstance(result, str) and is_record_id(result) and not Path(result).exists():
        result = load_record(result)  # a record in the store, imported from any machine
    if isinstance(result, str | Path):
        try:
            data = load_json(result, "an SLO result")
            kind = GenerationProfile if data.get("kind") == "generation" else SloResult
            result = kind.from_dict(data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise PlanError(
                f"{result}: not an SLO result written by `workbench slo --json` "
                f"nor a generation profile ({exc})"
            ) from None
    if not isinstance(result, SloResult | GenerationProfile):
        raise PlanError(
            f"candidate for {machine.name!r}: want an SloResult or a GenerationProfile, "
            f"got {result!r}"
        )
    return machine, result


def rate_unit(measured: Any) -> str:
    """What a measured row's rate counts (``"predictions"`` unless it says ``unit``)."""
    unit = measured.get("unit")
    if not isinstance(unit, str):  # absent, or NaN in a table without the column filled
        return "predictions"
    if unit not in UNITS:
        raise PlanError(f"a measured rate in {unit!r}/s: want one of {list(UNITS)}")
    return unit


def _generation(result: Any) -> bool:
    from workbench.profiling.generate import GenerationProfile

    return isinstance(result, GenerationProfile)


def measured_rows(result: Any, p99_ms: float) -> list[Any]:
    """The measured configurations of a candidate's result, as `candidate_row` takes them.

    An `SloResult` gives its table's rows. A `GenerationProfile` gives one row in tokens/s:
    its decode rate (batch / median TPOT), or 0 when its inter-token p99 is over
    ``p99_ms`` (the objective then holds for every token after the first), NaN without
    a decode step.
    """
    if not _generation(result):
        return [row for _, row in result.table.iterrows()]
    step, rate = result.inter_token, result.decode_tokens_per_s
    if step is None or rate is None:
        rate, why = math.nan, "no decode step (generate at least 2 tokens)"
    elif step.p99 > p99_ms * (1 + _SAME):
        rate = 0.0
        why = f"inter-token p99 {format_number(step.p99)} ms is over the objective"
    else:
        why = f"decode at batch {result.batch_size}, one stream (not a server run under load)"
    return [
        {"variant": result.model, "backend": result.backend, "device": result.device,
         "max_rate_per_s": rate, "limited_by": why, "unit": "tokens"}
    ]  # fmt: skip


def _check_comparable(pairs: list[tuple[Machine, Any]], workload: Workload) -> None:
    units = {rate_unit(row) for _, r in pairs for row in measured_rows(r, workload.p99_ms)}
    if len(units) > 1:
        raise PlanError(
            "the candidates count different things (predictions/s and tokens/s); plan forward "
            "models and generative models separately"
        )
    for machine, result in pairs:
        if _generation(result):  # measured without a budget: its p99 is checked per row
            continue
        if result.p99_ms > workload.p99_ms * (1 + _SAME):
            raise PlanError(
                f"the SLO result for {machine.name!r} was measured at p99 <= {result.p99_ms:g} "
                f"ms, looser than the {workload.p99_ms:g} ms objective; rerun workbench slo "
                f"--p99-ms {workload.p99_ms:g} there"
            )
    models = {str(r.model) for _, r in pairs if _generation(r)}
    models |= {
        str(r.settings["model"]) for _, r in pairs if not _generation(r) and r.settings.get("model")
    }
    if len(models) > 1:
        raise PlanError(f"the SLO results are of different models {sorted(models)}; plan one")
    currencies = {m.currency for m, _ in pairs if m.currency}
    if len(currencies) > 1:
        raise PlanError(
            f"machine prices are in different currencies {sorted(currencies)}; convert them"
        )


def candidate_row(machine: Machine, measured: Any, workload: Workload) -> dict[str, Any]:
    """One table row: a measured configuration (a row of an `SloResult` table, or any
    mapping with its variant, backend, device, max_rate_per_s and limited_by) sized and
    costed on ``machine`` for ``workload``; a ``unit`` of ``"tokens"`` makes its rate
    tokens/s and its per-1M and per-prediction figures per token."""
    rate = float(measured["max_rate_per_s"])
    row: dict[str, Any] = dict.fromkeys(COLUMNS, math.nan)
    row.update(
        machine=machine.name,
        variant=measured["variant"],
        backend=measured["backend"],
        device=measured["device"],
        rate_per_s=rate,
        unit=rate_unit(measured),
        power_basis=machine.power_label,
        currency=machine.currency,
        meets=False,
        why_not="",
    )
    if not rate > 0:  # NaN: could not run; 0: no rate met the budget
        row["why_not"] = f"no rate met p99 <= {workload.p99_ms:g} ms: {measured['limited_by']}"
        return row
    needed = math.ceil(workload.design_rate_per_s / rate - _SAME) + workload.redundancy
    capacity = needed * rate
    horizon = machine.cost(needed, workload.years)
    row.update(
        machines=needed,
        utilization=workload.target_rate_per_s / capacity,
        peak_utilization=workload.design_rate_per_s / capacity,
        cost_per_million=horizon.total / workload.predictions * 1e6,
        tco_1y=machine.cost(needed, 1).total,
        tco_3y=machine.cost(needed, 3).total,
        tco_horizon=horizon.total,
        capital_horizon=horizon.capital,
        upkeep_horizon=horizon.upkeep,
        energy_cost_horizon=math.nan if horizon.energy is None else horizon.energy,
        meets=True,
    )
    if machine.power_watts is not None and machine.power_watts > 0:
        row["energy_j_per_prediction"] = machine.power_watts / rate
        row["predictions_per_joule"] = rate / machine.power_watts
    limit = workload.max_machines
    if limit is not None and needed > limit:
        row["meets"] = False
        row["why_not"] = f"needs {needed} machines, over the limit of {limit}"
    return row


def _unreachable(table: pd.DataFrame, workload: Workload) -> str:
    """One line: why nothing meets the workload, the nearest candidate and what it takes."""
    design = workload.design_rate_per_s
    running = table[table["rate_per_s"] > 0]
    if running.empty:
        why = "; ".join(
            f"{candidate_label(r)}: {r['why_not']}" for _, r in table.head(3).iterrows()
        )
        return (
            f"no candidate sustains any rate within p99 <= {workload.p99_ms:g} ms ({why}); "
            "it would take a looser objective, a faster variant or a faster machine"
        )
    assert workload.max_machines is not None  # with no limit, any positive rate can scale
    usable = workload.max_machines - workload.redundancy
    nearest = running.loc[running["rate_per_s"].idxmax()]
    reach = max(usable, 0) * nearest["rate_per_s"]
    per_machine = design / usable if usable > 0 else math.inf
    return (
        f"no candidate reaches the design peak of {format_number(design)}/s within "
        f"{workload.max_machines} machines (N+{workload.redundancy}); nearest: "
        f"{candidate_label(nearest)} serves {format_number(reach)}/s with them; it would take "
        f"{int(nearest['machines'])} machines of it, or "
        + (f"{format_number(per_machine)}/s per machine" if math.isfinite(per_machine) else "more")
    )


def _notes(machines: tuple[Machine, ...]) -> tuple[str, ...]:
    notes = []
    for m in machines:
        if m.example:
            notes.append(
                f"{m.name}: EXAMPLE figures, not prices to plan with ({m.source or 'no source'})"
            )
        if m.power_watts is None:
            notes.append(f"{m.name}: energy unavailable (no power in its machine file)")
            continue
        if m.power_basis == "declared":
            notes.append(f"{m.name}: energy from DECLARED power {m.power_watts:g} W, not measured")
        if m.electricity_per_kwh is None:
            notes.append(
                f"{m.name}: energy cost not included (no electricity_price; a rental price "
                "usually includes it)"
            )
    return tuple(notes)


def _token_notes(pairs: list[tuple[Machine, Any]]) -> tuple[str, ...]:
    """What a rate in tokens/s from a generation profile rests on (and leaves out)."""
    return tuple(
        f"{m.name} {r.model} {r.backend}/{r.device}: tokens/s is the decode rate of one "
        f"generation profile (batch {r.batch_size}, prompt {r.prompt_length}, "
        f"{r.output_length} tokens; batch / median TPOT), not a server run under load; "
        "the prompt's prefill is not counted, and cost per 1M tokens counts generated tokens"
        for m, r in pairs
        if _generation(r)
    )
