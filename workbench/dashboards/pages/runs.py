"""Runs page: past profiles and sweeps from the results store, to filter (by model,
backend, machine and day), reopen, compare across machines, or delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from workbench import viz
from workbench.dashboards.pages.common import figure_pane, table
from workbench.dashboards.state import AppState

SHOWN = [
    "kind",
    "created_at",
    "model",
    "recipe",
    "backend",
    "device",
    "host",
    "batch_size",
    "latency_ms",
    "points",
]
#: the stored columns the page filters on, one picker each ("all" or a value)
FILTERS = ("model", "backend", "host")
#: a selected sweep's points, with where each ran (``worker``/``host`` on a Dask cluster)
POINT_COLUMNS = [
    "variant", "backend", "device", "host", "worker", "latency_ms", "metric_value", "error",
]  # fmt: skip


class RunsPage(Viewer):
    """The store's runs; selected profiles reopen in Compare, generation profiles in
    Generate, a sweep shows its trade-offs.

    Example:
        >>> page = RunsPage(state=state); page.refresh()
        >>> page.open_runs(list(page.runs["run_id"][:2]))   # into state.history / shown
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]
    model = param.Selector(default="all", objects=["all"], doc="show runs of this model")
    backend = param.Selector(default="all", objects=["all"], doc="show runs on this backend")
    host = param.Selector(default="all", objects=["all"], doc="show runs on this machine")
    since = param.CalendarDate(default=None, allow_None=True, doc="show runs from this day on")

    def __init__(
        self,
        on_open: Callable[[], None] | None = None,
        on_open_generations: Callable[[list[Any]], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.on_open = on_open
        #: shows stored generation profiles (the app's Generate page)
        self.on_open_generations = on_open_generations
        self.runs = pd.DataFrame(columns=["run_id", *SHOWN])
        self.stored = self.runs
        self.table = table(self.runs[SHOWN], selectable="checkbox", height=420)
        self.message = pn.pane.HTML()
        self.sweep = figure_pane(viz.empty_figure("Select a sweep to see its trade-offs."))
        self.points = table(pd.DataFrame(columns=POINT_COLUMNS), height=300)
        self.table.param.watch(self._selected, "selection")
        self.param.watch(self._show, [*FILTERS, "since"])
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Reread the store."""
        if self.state.store is None:
            self.message.object = "<p>No results store configured.</p>"
            return
        try:
            self.stored = self.state.store.runs().reset_index(drop=True)
        except Exception as exc:  # an unreadable store is a message, not a broken page
            self.message.object = f"<p>Cannot read the results store: {exc}</p>"
            return
        for name in FILTERS:
            values = sorted({v for cell in self.stored[name].dropna() for v in _values(cell)})
            self.param[name].objects = ["all", *values]
            if getattr(self, name) not in self.param[name].objects:
                setattr(self, name, "all")
        self._show()

    def _show(self, *_: Any) -> None:
        """The stored runs that pass the filters."""
        runs = self.stored
        for name in FILTERS:
            wanted = getattr(self, name)
            if wanted != "all":
                runs = runs[[wanted in _values(cell) for cell in runs[name]]]
        if self.since is not None:
            day = pd.Timestamp(self.since).strftime("%Y-%m-%d")
            runs = runs[runs["created_at"].astype(str).str.slice(0, 10) >= day]
        self.runs = runs.reset_index(drop=True)
        self.table.value = self.runs[[c for c in SHOWN if c in self.runs]]
        # the file's name only: a served page should not reveal the server's folders
        shown = f"{len(self.runs)} of {len(self.stored)}" if len(runs) < len(self.stored) else ""
        self.message.object = (
            f"<p>{shown or len(self.runs)} runs in {self.state.store.path.name}</p>"
        )

    def delete_selected(self, *_: Any) -> None:
        """Delete the ticked runs (a sweep with its points) from the store."""
        ids = self.selected_ids()
        if not ids:
            self.message.object = "<p>Tick the runs to delete first.</p>"
            return
        self.state.store.delete_runs(ids)
        self.table.selection = []
        self.refresh()

    def selected_ids(self) -> list[str]:
        """Run ids of the ticked rows."""
        return [str(self.runs.iloc[i]["run_id"]) for i in self.table.selection]

    def open_runs(self, run_ids: list[str]) -> None:
        """Reopen stored profiles into this session and show them on the Compare page;
        stored generation profiles go to the Generate page."""
        opened, generations = [], []
        for run_id in run_ids:
            row = self.runs[self.runs["run_id"] == run_id]
            kind = None if row.empty else row.iloc[0]["kind"]
            if kind == "generation":
                generations.append(self.state.store.load_generation(run_id))
            elif kind == "profile":
                profile = self.state.profile_by_id(run_id) or self.state.store.load_profile(run_id)
                opened.append(profile)
        if generations and self.on_open_generations is not None:
            self.on_open_generations(generations)
        if not opened:
            if not generations:
                self.message.object = (
                    "<p>Select one or more <b>profile</b> or <b>generation</b> rows to open.</p>"
                )
            return
        for profile in opened:
            self.state.show(profile)
        self.state.shown = [p.run_id for p in opened]
        if self.on_open is not None:
            self.on_open()

    def _selected(self, *_: Any) -> None:
        sweeps = [i for i in self.table.selection if self.runs.iloc[i]["kind"] == "sweep"]
        if sweeps:
            sweep_id = str(self.runs.iloc[sweeps[-1]]["sweep_id"])
            points = self.state.store.points(sweep_id)
            self.sweep.object = viz.tradeoff(points)
            # local sweeps have no worker or host: those cells stay empty
            self.points.value = points.reindex(columns=POINT_COLUMNS)

    def __panel__(self) -> pn.viewable.Viewable:
        refresh = pn.widgets.Button(label="Refresh")
        refresh.on_click(self.refresh)
        open_button = pn.widgets.Button(label="Open", color="primary")
        open_button.on_click(lambda _: self.open_runs(self.selected_ids()))
        delete = pn.widgets.Button(label="Delete ticked", color="danger")
        delete.on_click(self.delete_selected)
        filters = pn.Row(
            pn.widgets.Select.from_param(self.param.model, width=180),
            pn.widgets.Select.from_param(self.param.backend, width=150),
            pn.widgets.Select.from_param(self.param.host, name="Machine", width=180),
            pn.widgets.DatePicker.from_param(self.param.since, width=150),
        )
        return pn.Column(
            pn.Row(refresh, open_button, delete, self.message),
            filters,
            self.table,
            self.sweep,
            self.points,
            sizing_mode="stretch_width",
        )


def _values(cell: Any) -> list[str]:
    """A stored cell's values: a sweep measured on several machines lists them all."""
    if cell is None or (isinstance(cell, float) and pd.isna(cell)):
        return []
    return str(cell).split(",")
