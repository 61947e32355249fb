"""Profile page: headline numbers, per-layer bars and table, latency and memory figures."""

from __future__ import annotations

import html
import io
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

import workbench as wb
from workbench import viz
from workbench.dashboards.pages.common import TableSlot, figure_pane, headline, notes
from workbench.dashboards.state import AppState
from workbench.profiling.profile import Profile

#: the layer-table columns shown (the others stay in the data, hidden)
TABLE_COLUMNS = [
    "layer",
    "op_type",
    "latency_ms",
    "latency_p90_ms",
    "share",
    "flops",
    "params_bytes",
    "activation_bytes",
    "provider",
    "note",
]
#: layer and op type filterable from the header (share reads as a bar: `cell_formatters`)
TABLE_OPTIONS: dict[str, Any] = {
    "header_filters": {
        "layer": {"type": "input", "func": "like", "placeholder": "filter"},
        "op_type": {"type": "input", "func": "like", "placeholder": "filter"},
    },
    "frozen_columns": ["layer"],
}


def cold_start(profile: Profile | None) -> str:
    """A line with the profile's cold start next to its steady state (empty if unmeasured)."""
    if profile is None or profile.compile_s is None:
        return ""
    return (
        f"<p><b>Cold start</b>: {html.escape(profile.cold_start_text())}; "
        f"then steady state p50 {profile.latency.median:.4g} ms</p>"
    )


class ProfilePage(Viewer):
    """The current profile: cards, per-layer bars (click selects a layer), table, figures.

    Example:
        >>> page = ProfilePage(state=AppState(model="digits-mlp"))
        >>> page.state.order = "graph"; page.bars.object  # the bars, in execution order
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]
    distribution = param.Selector(default="box", objects=["box", "violin"], doc="chart kind")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        state = self.state
        self.summary = pn.pane.HTML(sizing_mode="stretch_width")
        self.notes = pn.pane.HTML(sizing_mode="stretch_width")
        self.bars = figure_pane(viz.empty_figure("Profiling…"))
        self.latency = figure_pane(viz.empty_figure("Profiling…"), height=380)
        self.timeline = figure_pane(viz.empty_figure("Profiling…"), height=380)
        self.memory = figure_pane(viz.empty_figure("Profiling…"), height=380)
        self.slot = TableSlot(
            pd.DataFrame(columns=TABLE_COLUMNS),
            on_selection=self._row_selected,
            selectable=1,
            height=420,
            **TABLE_OPTIONS,
        )
        self.download = pn.widgets.FileDownload(
            callback=self._csv, filename="layers.csv", label="Download CSV", width=160
        )
        self.report = pn.widgets.FileDownload(
            callback=self._report,
            filename="workbench-report.html",
            label="Download report",
            color="primary",
            width=170,
        )
        self.share = figure_pane(viz.empty_figure("Profiling…"), height=380)
        self.bars.param.watch(self._bar_clicked, "click_data")
        state.param.watch(self._refresh, "current")
        state.param.watch(self._refresh_bars, ["order", "color_by", "selected_layer"])
        self.param.watch(self._refresh_latency, "distribution")
        state.jobs.param.watch(self._waiting, "running")
        self._refresh()
        self._waiting()

    def _refresh(self, *_: Any) -> None:
        profile = self.state.current
        self.summary.object = headline(profile) + cold_start(profile)
        self.notes.object = f"<ul>{notes(profile)}</ul>" if notes(profile) else ""
        if profile is None:
            return
        self._refresh_bars()
        self._refresh_latency()
        self.timeline.object = viz.latency_timeline(profile)
        self.share.object = viz.time_share(profile)
        self.memory.object = viz.memory(profile)
        layers = profile.layers
        # the provider column only where a runtime placed nodes (ONNX Runtime)
        placed = "provider" in layers and layers["provider"].notna().any()
        columns = [c for c in TABLE_COLUMNS if c in layers and (c != "provider" or placed)]
        shown = layers[columns].reset_index(drop=True)
        self.slot.update(shown)

    def _refresh_bars(self, *_: Any) -> None:
        state = self.state
        if state.current is not None:
            self.bars.object = viz.layer_latency(
                state.current,
                order=state.order,
                color_by=state.color_by,
                selected=state.selected_layer,
            )

    def _refresh_latency(self, *_: Any) -> None:
        if self.state.current is not None:
            self.latency.object = viz.latency_distribution(
                self.state.current, kind=self.distribution
            )

    def _bar_clicked(self, event: param.parameterized.Event) -> None:
        points = (event.new or {}).get("points") or []
        if points and isinstance(points[0].get("y"), str):
            self.state.selected_layer = points[0]["y"]

    def _row_selected(self, event: param.parameterized.Event) -> None:
        if event.new and not self.table.value.empty:
            self.state.selected_layer = str(self.table.value.iloc[event.new[0]]["layer"])

    @property
    def table(self) -> pn.widgets.Tabulator:
        """The layer table currently shown."""
        return self.slot.table

    def _csv(self) -> io.StringIO:
        """The current profile's full layer table as CSV (every column, not only those shown)."""
        layers = self.state.current.layers if self.state.current is not None else pd.DataFrame()
        return io.StringIO(layers.to_csv(index=False))

    def _report(self) -> io.StringIO:
        """The current profile as one self-contained HTML report (`wb.report`)."""
        if self.state.current is None:
            return io.StringIO("<p>No profile yet: pick a model, backend and batch size.</p>")
        return io.StringIO(wb.report(self.state.current).html())

    def _waiting(self, *_: Any) -> None:
        busy = self.state.jobs.running
        for pane in (self.bars, self.latency, self.timeline, self.memory, self.share, self.table):
            pane.loading = busy

    def __panel__(self) -> pn.viewable.Viewable:
        options = pn.Row(
            pn.widgets.RadioButtonGroup.from_param(self.state.param.order, label="order"),
            pn.widgets.RadioButtonGroup.from_param(self.state.param.color_by, label="colour by"),
            pn.widgets.RadioButtonGroup.from_param(self.param.distribution),
        )
        return pn.Column(
            pn.Row(self.summary, self.report, sizing_mode="stretch_width"),
            self.notes,
            options,
            self.bars,
            pn.Row(self.latency, self.timeline, sizing_mode="stretch_width"),
            pn.Row(self.memory, self.share, sizing_mode="stretch_width"),
            pn.Row(
                pn.pane.Markdown("**Layers** (click a row or a bar to select a layer)"),
                self.download,
            ),
            self.slot.layout,
            sizing_mode="stretch_width",
        )
