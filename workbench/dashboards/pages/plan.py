"""Plan page: which machine, how many, and what it costs over its life, from measured runs.

Candidates pair a measured result (an SLO search of this session's Serving page, or an
uploaded ``workbench slo --json`` / generation profile JSON) with the economics of the
machine it was measured on (an uploaded machine TOML file, or the same keys typed into
the page, each value with its unit). Everything shown comes from `wb.plan` and
`workbench.planning.what_if`: the page does no arithmetic of its own.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from workbench import viz
from workbench.dashboards.pages.common import TableSlot, figure_pane
from workbench.dashboards.state import AppState
from workbench.errors import WorkbenchError

#: the plan table's columns the page shows (the rest are in the plan's JSON)
SHOWN = [
    "machine", "variant", "backend", "device", "rate_per_s", "unit", "machines", "utilization",
    "peak_utilization", "cost_per_million", "tco_1y", "tco_3y", "tco_horizon",
    "energy_j_per_prediction", "power_basis", "currency", "why_not",
]  # fmt: skip
#: the economics typed into the page: (TOML key, label with an example of its unit)
ECONOMICS = (
    ("rental_price", "rental price (e.g. 1.20 USD/h)"),
    ("purchase_price", "or purchase price (e.g. 12000 USD)"),
    ("lifetime", "lifetime (e.g. 4 years)"),
    ("upkeep", "upkeep (e.g. 600 USD/year)"),
    ("declared_power", "declared power (e.g. 300 W)"),
    ("measured_power", "or measured power (e.g. 280 W)"),
    ("electricity_price", "electricity (e.g. 0.15 USD/kWh)"),
    ("source", "where the figures came from"),
)
#: the largest file the page reads (machine files and results are small text)
MAX_FILE_BYTES = 16 * 2**20


class PlanPage(Viewer):
    """A workload, candidates (measured result x machine economics), and the plan for them.

    Example:
        >>> page = PlanPage(state=state)
        >>> page.add_machine_file("box.toml", open("box.toml", "rb").read())
        >>> page.add_result(slo_result, "here")       # or add_result_file(name, bytes)
        >>> page.pair("here", "box"); page.target_rate_per_s = 2000
        >>> page.plan.choice, page.error
    """

    state: AppState = param.ClassSelector(  # type: ignore[assignment]
        class_=AppState, allow_None=True, doc="the session's shared state (a plan needs none)"
    )
    target_rate_per_s = param.Number(
        default=100.0,
        bounds=(0.0, None),
        inclusive_bounds=(False, True),
        label="average rate in year one (/s)",
        doc="predictions/s (tokens/s when the candidates are generation profiles)",
    )
    p99_ms = param.Number(
        default=5.0,
        bounds=(0.0, None),
        inclusive_bounds=(False, True),
        label="p99 objective (ms)",
        doc="the p99 latency objective",
    )
    peak_to_average = param.Number(
        default=1.0,
        bounds=(1.0, None),
        label="peak / average",
        doc="the peak rate over the average rate (>= 1)",
    )
    growth_per_year = param.Number(
        default=0.0,
        bounds=(0.0, 100.0),
        label="growth per year",
        doc="yearly traffic growth as a fraction: 0.3 = +30% a year",
    )
    redundancy = param.Integer(
        default=0,
        bounds=(0, 10_000),
        label="spare machines (N+k)",
        doc="machines on top of those the peak needs",
    )
    years = param.Integer(
        default=3,
        bounds=(1, 20),
        label="years",
        doc="the horizon the fleet is sized for and costed over",
    )
    max_machines = param.Integer(
        default=None,
        allow_None=True,
        bounds=(1, None),
        label="most machines",
        doc="a rack or quota; empty: no limit",
    )
    result_name = param.Selector(default=None, objects=[], doc="a measured result")
    machine_name = param.Selector(default=None, objects=[], doc="the machine it ran on")
    candidates = param.List(default=[], doc="(result, machine) pairs the plan costs")
    plan = param.Parameter(default=None, doc="the plan of the candidates (None: none yet)")
    error = param.String(default="", doc="why no plan could be made (one line)")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.results: dict[str, Any] = {}
        self.machines: dict[str, Any] = {}
        self.economics = {key: pn.widgets.TextInput(label=label, width=200)
                          for key, label in ECONOMICS}  # fmt: skip
        self.machine_label = pn.widgets.TextInput(label="machine name", width=200)
        self.pue = pn.widgets.FloatInput(label="PUE (>= 1)", value=1.0, start=1.0, width=110)
        self.example = pn.widgets.Checkbox(label="example figures (placeholders)")
        self.figure = figure_pane(viz.empty_figure(_EMPTY))
        self.summary = pn.pane.HTML()
        self.slot = TableSlot(pd.DataFrame(columns=SHOWN), height=260)
        self.electricity = TableSlot(pd.DataFrame(columns=["factor"]), height=180)
        self.utilization = TableSlot(pd.DataFrame(columns=["cap"]), height=180)
        self.param.watch(
            self.replan,
            ["target_rate_per_s", "p99_ms", "peak_to_average", "growth_per_year",
             "redundancy", "years", "max_machines", "candidates"],
        )  # fmt: skip
        self.param.watch(self._show, "plan")

    # ---- what the plan is made of --------------------------------------------------------
    def add_result(self, result: Any, name: str | None = None) -> str:
        """Offer a measured result (an `SloResult` or a `GenerationProfile`) as ``name``."""
        if any(r is result for r in self.results.values()):
            return next(k for k, r in self.results.items() if r is result)
        name = _unique(name or _describe(result), self.results)
        self.results[name] = result
        self.param.result_name.objects = list(self.results)
        self.result_name = name
        self.replan()  # clears a refused upload's message (or says why no plan again)
        return name

    def add_result_file(self, filename: str, data: bytes) -> str | None:
        """Read a ``workbench slo --json`` file or a generation profile's JSON (uploaded)."""
        from workbench.profiling.generate import GenerationProfile
        from workbench.scenarios import SloResult

        try:
            content = json.loads(_text(filename, data))
            kind = GenerationProfile if content.get("kind") == "generation" else SloResult
            result = kind.from_dict(content)
        except WorkbenchError as exc:
            self.error = str(exc)
            return None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self.error = (
                f"{filename}: not a `workbench slo --json` file nor a generation profile "
                f"({type(exc).__name__}: {exc})"
            )
            return None
        return self.add_result(result, filename)

    def add_stored(self) -> int:
        """Offer every SLO record of the session's store (measured here, or imported with
        `wb.import_results`); returns how many. A session without a store has none."""
        from workbench.planning.records import load_record, records

        if self.state is not None and self.state.store is None:
            self.error = "this session keeps no results store: upload the results instead"
            return 0
        store = None if self.state is None else self.state.store
        try:
            table = records(store)
            table = table[table["kind"] == "slo"].drop_duplicates("record_id")
            for row in table.itertuples():
                name = (
                    f"{row.model} p99<={row.objective_p99_ms:g} ms on {row.measured_on} "
                    f"({row.where}, record {str(row.record_id)[:8]})"
                )
                self.add_result(load_record(str(row.record_id), store), name)
        except WorkbenchError as exc:
            self.error = str(exc)
            return 0
        return len(table)

    def add_machine(self, machine: Any) -> str:
        """Offer a `workbench.planning.Machine` (one of that name is replaced)."""
        self.machines[machine.name] = machine
        self.param.machine_name.objects = list(self.machines)
        self.machine_name = machine.name
        self.replan()  # a replaced machine changes the plans that use it
        return str(machine.name)

    def add_machine_file(self, filename: str, data: bytes) -> str | None:
        """Read a machine economics TOML file (uploaded); a bad one is refused in one line."""
        import tomllib

        from workbench.planning.economics import machine_from_mapping

        try:
            mapping = tomllib.loads(_text(filename, data))
            return self.add_machine(machine_from_mapping(mapping, where=filename))
        except tomllib.TOMLDecodeError as exc:
            self.error = f"{filename}: not a valid TOML file ({exc})"
        except WorkbenchError as exc:
            self.error = str(exc)
        return None

    def add_typed_machine(self) -> str | None:
        """A machine from the economics typed into the page (units checked as in a file)."""
        from workbench.planning.economics import machine_from_mapping

        mapping: dict[str, Any] = {
            key: widget.value.strip() for key, widget in self.economics.items() if widget.value
        }
        mapping |= {"name": self.machine_label.value, "pue": self.pue.value or 1.0}
        mapping |= {"example": True} if self.example.value else {}
        try:
            return self.add_machine(machine_from_mapping(mapping, where="typed machine"))
        except WorkbenchError as exc:
            self.error = str(exc)
            return None

    def pair(self, result: str | None = None, machine: str | None = None) -> None:
        """Add the candidate: ``result`` (default the picked one) measured on ``machine``."""
        result, machine = result or self.result_name, machine or self.machine_name
        if result not in self.results or machine not in self.machines:
            self.error = "pick a measured result and the machine it was measured on first"
            return
        if (result, machine) not in self.candidates:
            self.candidates = [*self.candidates, (result, machine)]

    def clear(self, *_: Any) -> None:
        """Drop every candidate (results and machines stay offered)."""
        self.candidates = []

    def follow(self, serving: Any) -> None:
        """Offer each SLO search the Serving page measures (its latest one at once)."""
        if serving.slo_result is not None:
            self.add_result(serving.slo_result)
        serving.param.watch(lambda e: e.new is not None and self.add_result(e.new), "slo_result")

    # ---- the plan ----------------------------------------------------------------------
    def replan(self, *_: Any) -> None:
        """Plan the candidates for the workload; a refusal is the one-line `error`."""
        import workbench as wb

        if not self.candidates:
            self.error, self.plan = "", None
            return
        pairs = [(self.machines[m], self.results[r]) for r, m in self.candidates]
        try:
            made = wb.plan(
                pairs,
                self.target_rate_per_s,
                self.p99_ms,
                peak_to_average=self.peak_to_average,
                growth_per_year=self.growth_per_year,
                redundancy=self.redundancy,
                years=self.years,
                max_machines=self.max_machines,
            )
        except WorkbenchError as exc:  # unreachable, mismatched records, bad workload
            self.error, self.plan = str(exc), None
            return
        self.error, self.plan = "", made

    def _show(self, *_: Any) -> None:
        from workbench.planning.what_if import electricity_sensitivity, utilization_sensitivity
        from workbench.viz.plan import plan_cost_figure

        plan = self.plan
        if plan is None:
            self.figure.object = viz.empty_figure(_EMPTY)
            self.summary.object = ""
            for slot, column in ((self.slot, SHOWN), (self.electricity, ["factor"]),
                                 (self.utilization, ["cap"])):  # fmt: skip
                slot.update(pd.DataFrame(columns=column))
            return
        self.figure.object = plan_cost_figure(plan)
        self.summary.object = _summary(plan)
        self.slot.update(plan.table[SHOWN])
        self.electricity.update(electricity_sensitivity(plan))
        self.utilization.update(utilization_sensitivity(plan))

    # ---- layout ------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        results = pn.widgets.FileInput(accept=".json", multiple=True)
        results.param.watch(lambda e: self._uploaded(e, self.add_result_file), "value")
        machines = pn.widgets.FileInput(accept=".toml", multiple=True)
        machines.param.watch(lambda e: self._uploaded(e, self.add_machine_file), "value")
        add = pn.widgets.Button(label="Add machine")
        add.on_click(_clicked(self.add_typed_machine))
        stored = pn.widgets.Button(label="Add stored SLO records")
        stored.on_click(_clicked(self.add_stored))
        pair = pn.widgets.Button(label="Add candidate", color="primary")
        pair.on_click(_clicked(self.pair))
        clear = pn.widgets.Button(label="Clear candidates")
        clear.on_click(self.clear)
        workload = pn.Param(
            self.param,
            parameters=["target_rate_per_s", "p99_ms", "peak_to_average", "growth_per_year",
                        "redundancy", "years", "max_machines"],
            widgets={"growth_per_year": {"type": pn.widgets.FloatInput, "step": 0.05},
                     "redundancy": pn.widgets.IntInput, "years": pn.widgets.IntInput},
            show_name=False, default_layout=pn.FlexBox,
        )  # fmt: skip
        error = pn.pane.Alert(self.param.error, alert_type="danger",
                              visible=self.param.error.rx.bool())  # fmt: skip
        candidates = pn.pane.Markdown(
            self.param.candidates.rx.pipe(_candidate_list), styles={"font-size": "13px"}
        )
        return pn.Column(
            pn.pane.Markdown("**Workload**"),
            workload,
            pn.pane.Markdown(
                "**Measured results**: SLO searches of the Serving page appear here; or "
                "upload `workbench slo --json` files / generation profiles, or add the SLO "
                "records of the results store (measured here or imported)"
            ),
            pn.Row(results, stored),
            pn.pane.Markdown(
                "**Machines**: upload machine TOML files (docs/plan.md), or type one "
                "(every value with its unit)"
            ),
            machines,
            pn.Card(
                pn.FlexBox(
                    self.machine_label, *self.economics.values(), self.pue, self.example, add
                ),
                title="or type a machine's economics",
                collapsed=True,
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.widgets.Select.from_param(self.param.result_name, label="result", width=260),
                pn.widgets.Select.from_param(
                    self.param.machine_name, label="measured on", width=200
                ),
                pair,
                clear,
                align="end",
            ),
            candidates,
            error,
            self.summary,
            self.slot.layout,
            self.figure,
            pn.pane.Markdown("**Cheapest when every electricity price is scaled by a factor**"),
            self.electricity.layout,
            pn.pane.Markdown("**Cheapest when no machine may run above a share of its rate**"),
            self.utilization.layout,
            sizing_mode="stretch_width",
        )

    def _uploaded(self, event: Any, read: Any) -> None:
        widget = event.obj
        values = event.new if isinstance(event.new, list) else [event.new]
        names = widget.filename if isinstance(widget.filename, list) else [widget.filename]
        for name, data in zip(names, values, strict=False):
            if data is not None:
                read(str(name), data)


_EMPTY = "Add a measured result and its machine as a candidate to see the plan."


def _clicked(action: Callable[[], object]) -> Callable[[Any], None]:
    """A button's callback that runs ``action`` (its result is for code, not the button)."""

    def run(_: Any) -> None:
        action()

    return run


def _text(filename: str, data: bytes) -> str:
    from workbench.errors import InputError

    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{filename}: {len(data):,} bytes, over the {MAX_FILE_BYTES:,} limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{filename}: not UTF-8 text") from None


def _unique(name: str, taken: dict[str, Any]) -> str:
    if name not in taken:
        return name
    count = 2
    while f"{name} ({count})" in taken:
        count += 1
    return f"{name} ({count})"


def _describe(result: Any) -> str:
    """A default name for a result: its objective and what it measured."""
    if hasattr(result, "decode_tokens_per_s"):
        return f"generation {result.model} {result.backend}/{result.device}"
    table = result.table.drop_duplicates(["backend", "device"])
    setups = ", ".join(f"{r.backend}/{r.device}" for r in table.itertuples())
    where = (getattr(result, "machine", None) or {}).get("name")
    return " ".join(
        part
        for part in (getattr(result, "model", ""), f"p99<={result.p99_ms:g} ms", setups,
                     f"on {where}" if where else "")
        if part
    )  # fmt: skip


def _candidate_list(candidates: list[tuple[str, str]]) -> str:
    if not candidates:
        return "*No candidates yet: pick a result and the machine it ran on, then Add candidate.*"
    return "Candidates: " + "; ".join(f"{r} on **{m}**" for r, m in candidates)


def _summary(plan: Any) -> str:
    """The plan's headline (its workload, its choice), each runner-up and why it loses,
    and what the figures rest on: the plan's own sentences."""
    from workbench.planning.fleet import candidate_label

    workload, choice = (html.escape(line) for line in plan.summary().split("\n")[:2])
    runners = "".join(
        f"<li>{html.escape(candidate_label(row))}: {html.escape(str(row['why_not']))}</li>"
        for _, row in plan.table.iloc[1:].iterrows()
    )
    notes = "".join(f"<div><small>note: {html.escape(n)}</small></div>" for n in plan.notes)
    return (
        f"<div><b>{choice}</b><br><small>{workload}</small></div>"
        + (f"<b>Runners-up</b><ul>{runners}</ul>" if runners else "")
        + notes
    )
