"""Serving page: run a LoadGen-style scenario, or find the highest rate within a p99 budget;
and, for language models, TTFT/TPOT/goodput under load against an endpoint or a local
``serve-lm`` (`LmServingSection`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from workbench import viz
from workbench.dashboards.jobs import Jobs
from workbench.dashboards.pages.common import TableSlot, figure_pane
from workbench.dashboards.pages.lm_serving import LmServingSection
from workbench.dashboards.state import AppState
from workbench.scenarios import KINDS, ScenarioResult, SloResult
from workbench.viz import serving as viz_serving


class ServingPage(Viewer):
    """Scenario runs and SLO searches on the picked model, backend and device.

    Both run on the page's worker thread (`Jobs`) and show their result as a figure, the
    result's own summary (valid or why not, energy, cost) and a table.

    Example:
        >>> page = ServingPage(state=state, min_duration_s=0.1)
        >>> page.kind = "server"; page.rate_per_s = 200; page.run_scenario(); page.jobs.wait()
        >>> page.result.valid
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]
    kind = param.Selector(default="server", objects=list(KINDS), doc="the scenario to run")
    rate_per_s = param.Number(default=200.0, bounds=(0.1, None), doc="server: offered queries/s")
    p99_ms = param.Number(default=5.0, bounds=(0.01, None), doc="latency budget (ms)")
    max_batch = param.Integer(default=1, bounds=(1, 256), doc="server: dynamic batch limit")
    batch_window_ms = param.Number(default=0.0, bounds=(0.0, None), doc="server: batching window")
    price_per_hour = param.Number(
        default=None, allow_None=True, bounds=(0.0, None), doc="machine price per hour (for cost)"
    )
    min_duration_s = param.Number(default=1.0, bounds=(0.01, None), doc="shortest valid run (s)")
    min_queries = param.Integer(
        default=None,
        allow_None=True,
        bounds=(1, None),
        doc="fewest queries (default: LoadGen's, scaled)",
    )
    result = param.ClassSelector(class_=ScenarioResult, default=None, doc="last scenario run")
    slo_result = param.ClassSelector(class_=SloResult, default=None, doc="last SLO search")

    def __init__(self, jobs: Jobs | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.jobs = jobs or Jobs()
        self.figure = figure_pane(
            viz.empty_figure("Run a scenario or find the highest rate within the budget.")
        )
        # measured numbers: the visual regression test masks them by this class
        self.summary = pn.pane.HTML(css_classes=["wb-volatile"])
        self.slot = TableSlot(pd.DataFrame(columns=["queries"]), height=260)
        self.param.watch(self._show_scenario, "result")
        self.param.watch(self._show_slo, "slo_result")
        self.jobs.param.watch(self._waiting, "running")
        #: language models under load: an endpoint's TTFT, TPOT, goodput and SLO rate
        self.lm = LmServingSection(jobs=self.jobs)

    def close(self) -> None:
        """Stop what the page started (the language-model section's local server)."""
        self.lm.close()

    def run_scenario(self, *_: Any) -> None:
        """Run `kind` on the picked model/backend/device (worker thread)."""
        import workbench as wb

        model, backend, device = self.state.model(), self.state.backend, self.state.device
        kind = self.kind
        settings = {
            "rate_per_s": self.rate_per_s if kind == "server" else None,
            "max_batch": self.max_batch,
            "batch_window_ms": self.batch_window_ms,
            "target_latency_ms": self.p99_ms if kind == "server" else None,
            "min_duration_s": self.min_duration_s,
            "min_queries": self.min_queries,
            "price_per_hour": self.price_per_hour or None,
        }
        self.jobs.submit(
            f"{kind} on {backend}/{device}",
            lambda progress, cancel: wb.scenario(model, kind, backend, device, **settings),
            lambda result: setattr(self, "result", result),
        )

    def find_rate(self, *_: Any) -> None:
        """Search the highest rate within `p99_ms` on the picked backend/device (worker thread)."""
        import workbench as wb

        model, backend, device = self.state.model(), self.state.backend, self.state.device
        budget, price = self.p99_ms, self.price_per_hour or None
        seconds, queries = self.min_duration_s, self.min_queries
        self.jobs.submit(
            f"SLO search on {backend}/{device}",
            lambda progress, cancel: wb.slo(
                model,
                budget,
                [backend],
                devices=[device],
                min_duration_s=seconds,
                min_queries=queries,
                price_per_hour=price,
                progress=progress,
                cancel=cancel,
            ),
            lambda result: setattr(self, "slo_result", result),
        )

    def _show_scenario(self, *_: Any) -> None:
        if self.result is None:
            return
        self.figure.object = viz_serving.scenario_figure(self.result)
        self.summary.object = self.result._repr_html_()
        # a few summary rows, not one per query (the figure draws every query)
        self.slot.update(query_summary(self.result.queries))

    def _show_slo(self, *_: Any) -> None:
        if self.slo_result is None:
            return
        self.figure.object = viz_serving.slo_figure(self.slo_result)
        self.summary.object = self.slo_result._repr_html_()
        self.slot.update(self.slo_result.points)

    def _waiting(self, *_: Any) -> None:
        self.figure.loading = self.jobs.running
        self.lm.figure.loading = self.jobs.running

    def __panel__(self) -> pn.viewable.Viewable:
        run = pn.widgets.Button(label="Run scenario", color="primary")
        run.on_click(self.run_scenario)
        search = pn.widgets.Button(label="Find highest rate within budget")
        search.on_click(self.find_rate)
        controls = pn.Param(
            self.param,
            parameters=[
                "kind",
                "rate_per_s",
                "p99_ms",
                "max_batch",
                "batch_window_ms",
                "price_per_hour",
                "min_duration_s",
            ],
            show_name=False,
            default_layout=pn.FlexBox,  # wraps: seven inputs do not fit one row
        )
        return pn.Column(
            controls,
            pn.Row(
                run,
                search,
                pn.pane.Markdown(self.jobs.param.message, css_classes=["wb-volatile"]),
            ),
            self.figure,
            self.summary,
            self.slot.layout,
            self.lm,
            sizing_mode="stretch_width",
        )


def query_summary(queries: pd.DataFrame) -> pd.DataFrame:
    """A scenario's queries in a few rows: all of them, then one row per batch size run
    (count, samples, latency percentiles, service time, late and dropped).

    Example:
        >>> query_summary(result.queries)["p99_ms"].iloc[0]   # all queries' p99
    """

    def row(name: str, part: pd.DataFrame) -> dict[str, Any]:
        done = part.loc[~part["dropped"], "latency_ms"]
        return {
            "queries": name,
            "n": len(part),
            "samples": int(part["samples"].sum()),
            "p50_ms": done.quantile(0.5) if len(done) else None,
            "p90_ms": done.quantile(0.9) if len(done) else None,
            "p99_ms": done.quantile(0.99) if len(done) else None,
            "service_p50_ms": part["service_ms"].median() if len(part) else None,
            "late": int(part["late"].sum()),
            "dropped": int(part["dropped"].sum()),
        }

    rows = [row("all", queries)]
    if queries["batch"].nunique() > 1:
        rows += [row(f"batch {b}", part) for b, part in queries.groupby("batch", sort=True)]
    return pd.DataFrame(rows)
