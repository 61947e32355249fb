"""Sensitivity page: what transforming each layer costs and gains, and the recipe it builds.

*Analyse* runs `wb.sensitivity` (each layer transformed alone: accuracy drop, SQNR,
latency gain) on the page's worker thread. For quantization, ticking layers keeps them in
full precision; for pruning, a ticked layer gets its own prune ratio (the "ratio for
ticked layers" when it was ticked) while the others are pruned to the analysed ratio.
*Suggest* fills the ticks with `wb.suggest`'s plan for a quality budget (still editable);
*Measure on Optimize* hands the recipe to the Optimize page, which builds and measures it
beside the baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from workbench import viz
from workbench.dashboards import actions
from workbench.dashboards.jobs import Jobs
from workbench.dashboards.pages.common import figure_pane, table
from workbench.dashboards.state import AppState

#: a recipe for the Optimize page: its parameters by name (see `OptimizePage.measure_recipe`)
Settings = dict[str, Any]

SHOWN = ["layer", "op_type", "metric_delta", "sqnr_db", "latency_delta_ms", "speedup", "error"]


class SensitivityPage(Viewer):
    """Per-layer sensitivity of a transform; the layers kept in full precision; the plan.

    Example:
        >>> page = SensitivityPage(state=state)
        >>> page.analyse(); page.jobs.wait()
        >>> page.kept = ["features.0"]; page.send()     # Optimize measures the recipe
        >>> page.transform = "prune-magnitude"; page.layer_ratio = 0.2
        >>> page.kept = ["features.0"]; page.settings()["layer_sparsity"]
        {'features.0': 0.2}
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]
    transform = param.Selector(
        default="int8-static",
        objects=list(actions.SENSITIVITY_TRANSFORMS),
        doc="the transform applied one layer at a time",
    )
    max_drop = param.Number(
        default=0.5, bounds=(0.0, 10.0), step=0.1, doc="quality budget of Suggest (points)"
    )
    sparsity = param.Number(
        default=0.5,
        bounds=(0.05, 0.9),
        step=0.05,
        doc="pruning: the ratio each layer is pruned to when analysed, and unticked layers' ratio",
    )
    layer_ratio = param.Number(
        default=0.2, bounds=(0.0, 0.9), step=0.05, doc="pruning: the ratio layers ticked next get"
    )
    report = param.DataFrame(default=None, allow_None=True, doc="the wb.sensitivity result")
    kept = param.ListSelector(
        default=[], objects=[], doc="ticked layers: kept in full precision, or own prune ratio"
    )
    ratios = param.Dict(default={}, doc="pruning: ticked layer -> its own prune ratio")

    def __init__(
        self,
        jobs: Jobs | None = None,
        on_send: Callable[[Settings], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.jobs = jobs or Jobs()
        self.on_send = on_send
        self.figure = figure_pane(viz.sensitivity(pd.DataFrame()), height=420)
        self.table = table(pd.DataFrame(columns=SHOWN), height=260)
        self.plan = pn.pane.Markdown("", sizing_mode="stretch_width")
        #: the recipe the controls and ticks make, in words (follows every one of them)
        self.recipe_pane = pn.pane.Markdown("", width=250)
        self.figure.param.watch(self._bar_clicked, "click_data")
        self.param.watch(self._ticked, "kept")
        # after `_ticked`: a newly ticked layer has its ratio before the text reads it
        self.param.watch(self._show_recipe, ["transform", "sparsity", "kept", "ratios"])
        self._show_recipe()
        self.param.watch(self._refresh, ["report", "kept"])
        self.param.watch(self._forget, ["transform", "sparsity"])
        self.state.param.watch(self._forget, ["model_name", "backend", "device", "batch_size"])
        self.state.param.watch(self._refresh, "selected_layer")
        self.jobs.param.watch(self._waiting, "running")
        self._refresh()

    def _context(self) -> tuple[Any, ...]:
        state = self.state
        return (state.model(), self.transform, state.backend, state.device, state.batch_size)

    def analyse(self, *_: Any) -> None:
        """Measure the sensitivity of every candidate layer, off the UI thread."""
        model, transform, *where = self._context()
        sparsity = self.sparsity
        self.jobs.submit(
            f"sensitivity of {model.name} to {transform}",
            lambda progress, cancel: actions.measure_sensitivity(
                model, transform, *where, sparsity=sparsity, progress=progress, cancel=cancel
            ),
            self._measured,
        )

    def suggest(self, *_: Any) -> None:
        """Tick the layers `wb.suggest` keeps in full precision within ``max_drop``."""
        if self.report is None:
            self.jobs.error = "press Analyse first: Suggest starts from the sensitivity"
            return
        model, transform, *where = self._context()
        report, budget, sparsity = self.report, self.max_drop, self.sparsity

        def shown(kept: tuple[str, ...]) -> None:
            # the plan leaves these layers untouched: for pruning, their own ratio is 0
            with param.parameterized.discard_events(self):
                self.ratios = dict.fromkeys(kept, 0.0) if self.pruning else {}
            self.kept = [k for k in kept if k in self.param.kept.objects]
            self.plan.object = (
                f"**Plan** (`wb.suggest`, drop ≤ {budget:g} points): {transform} on every "
                f"layer except {', '.join(kept) or 'none'}; untick or tick layers to edit it."
            )

        self.jobs.submit(
            f"planning {transform} within {budget:g} points",
            lambda progress, cancel: actions.suggest_kept(
                model,
                transform,
                report,
                budget,
                *where,
                sparsity=sparsity,
                progress=progress,
                cancel=cancel,
            ),
            shown,
        )

    @property
    def pruning(self) -> bool:
        """Whether ticks set per-layer prune ratios (else they keep layers whole)."""
        return self.transform in actions.PRUNE_TRANSFORMS

    def settings(self) -> Settings:
        """The recipe the ticks make, as the Optimize page's parameters."""
        if self.pruning:
            return {
                "sparsity": self.sparsity,
                "structured": self.transform == "prune-channels",
                "layer_sparsity": {k: self.ratios[k] for k in sorted(self.kept)},
            }
        return {"method": self.transform, "exclude": sorted(self.kept)}

    def send(self, *_: Any) -> None:
        """Hand the recipe to the Optimize page to measure."""
        if self.on_send is not None:
            self.on_send(self.settings())

    def recipe_text(self) -> str:
        """The recipe the ticks make, in words."""
        kept = sorted(self.kept)
        if self.pruning:
            own = ", ".join(f"{k} {self.ratios[k]:.0%}" for k in kept)
            return f"{self.transform} {self.sparsity:.0%} on every layer" + (
                f"; {own}" if own else ""
            )
        return f"{self.transform} on every layer" + (f" except {', '.join(kept)}" if kept else "")

    def _show_recipe(self, *_: Any) -> None:
        self.recipe_pane.object = f"*{self.recipe_text()}*"

    def _ticked(self, event: param.parameterized.Event) -> None:
        """A newly ticked layer takes the current ratio for ticked layers; unticked, none."""
        ratios = {k: self.ratios.get(k, self.layer_ratio) for k in event.new}
        if ratios != self.ratios:
            self.ratios = ratios

    def _measured(self, report: pd.DataFrame) -> None:
        self.param.kept.objects = list(report["layer"])
        self.kept = [k for k in self.kept if k in self.param.kept.objects]
        self.report = report

    def _forget(self, *_: Any) -> None:
        self.report, self.kept, self.ratios = None, [], {}
        self.param.kept.objects = []
        self.plan.object = ""

    def _refresh(self, *_: Any) -> None:
        report = self.report if self.report is not None else pd.DataFrame()
        order = [layer.name for layer in self.state.model().layers]
        figure = viz.sensitivity(
            report, kept=self.kept, selected=self.state.selected_layer, order=order
        )
        if self.pruning and not report.empty:  # ticks mean "own ratio" here, not "kept"
            figure.update_layout(xaxis_title="layer (execution order); hollow = own prune ratio")
        self.figure.object = figure
        shown = report.reindex(columns=SHOWN) if not report.empty else pd.DataFrame(columns=SHOWN)
        self.table.value = shown

    def _bar_clicked(self, event: param.parameterized.Event) -> None:
        points = (event.new or {}).get("points") or []
        if points and isinstance(points[0].get("x"), str):
            self.state.selected_layer = points[0]["x"]

    def _waiting(self, *_: Any) -> None:
        self.figure.loading = self.jobs.running

    def __panel__(self) -> pn.viewable.Viewable:
        analyse = pn.widgets.Button(label="Analyse", color="primary")
        analyse.on_click(self.analyse)
        suggest = pn.widgets.Button(label="Suggest plan")
        suggest.on_click(self.suggest)
        send = pn.widgets.Button(label="Measure on Optimize", color="success")
        send.on_click(self.send)
        ratio = pn.widgets.FloatInput.from_param(
            self.param.sparsity, label="Prune ratio", width=250
        )
        ticked_ratio = pn.widgets.FloatInput.from_param(
            self.param.layer_ratio, label="Ratio for ticked layers", width=250
        )

        def show_ratios(*_: Any) -> None:  # the ratios mean nothing to quantization
            ratio.visible = ticked_ratio.visible = self.pruning

        show_ratios()
        self.param.watch(show_ratios, "transform")
        controls = pn.Column(
            pn.widgets.Select.from_param(self.param.transform, label="Transform", width=250),
            ratio,
            analyse,
            pn.widgets.FloatInput.from_param(
                self.param.max_drop, label="Allowed drop (points)", width=250
            ),
            suggest,
            ticked_ratio,
            pn.widgets.CheckBoxGroup.from_param(self.param.kept, inline=False),
            self.recipe_pane,
            send,
            pn.indicators.Progress(value=self.jobs.param.progress, max=100, width=200),
            pn.pane.Markdown(self.jobs.param.message, styles={"font-size": "12px"}),
            width=280,
        )
        return pn.Row(
            controls,
            pn.Column(self.plan, self.figure, self.table, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
