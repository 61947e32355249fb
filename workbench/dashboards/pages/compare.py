"""Compare page: two or more profiles aligned per layer against a pinned baseline."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from workbench import viz
from workbench.dashboards.pages.common import TableSlot, figure_pane
from workbench.dashboards.state import AppState
from workbench.profiling.profile import Profile


def option_label(profile: Profile) -> str:
    """A picker label that stays unique: the profile's label and a short run id."""
    return f"{profile.label} · {profile.run_id[:6]}"


def aligned_table(profiles: list[Profile], baseline: Profile) -> pd.DataFrame:
    """Median ms per layer (rows) for each profile, with Δ and × against ``baseline``.

    Uses `wb.compare` when it is installed; otherwise aligns by canonical layer name.
    """
    import workbench as wb

    ordered = [baseline, *[p for p in profiles if p is not baseline]]
    try:
        return wb.compare(ordered).table
    except (ImportError, AttributeError):
        pass  # an older build without wb.compare: align here
    columns = {
        p.run_id: p.layers.groupby("layer", sort=False)["latency_ms"].sum() for p in profiles
    }
    wide = pd.DataFrame(columns)
    base = wide[baseline.run_id]
    out = pd.DataFrame({"layer": wide.index, "baseline_ms": base.to_numpy()})
    for p in profiles:
        if p is not baseline:
            out[f"{p.label} ms"] = wide[p.run_id].to_numpy()
            out[f"{p.label} ×"] = (base / wide[p.run_id]).to_numpy()
    return out


class ComparePage(Viewer):
    """Profiles of this session side by side; the first chosen or pinned one is the baseline.

    Example:
        >>> page = ComparePage(state=state)
        >>> state.shown = [a.run_id, b.run_id]; page.layers.object  # per-layer bars
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.picker = pn.widgets.MultiChoice(
            label="Profiles to compare", options={}, sizing_mode="stretch_width"
        )
        self.baseline_picker = pn.widgets.Select(label="Baseline", options={})
        #: set while the page shows the baseline in use (not a pin by the user)
        self._showing = False
        self.layers = figure_pane(viz.empty_figure("Choose two or more profiles."))
        self.by_type = figure_pane(viz.empty_figure(""), height=380)
        self.latency = figure_pane(viz.empty_figure(""), height=380)
        self.slot = TableSlot(pd.DataFrame(columns=["layer"]), height=380)
        self.picker.param.watch(self._picked, "value")
        self.baseline_picker.param.watch(self._pinned, "value")
        self.state.param.watch(self._options, "history")
        self.state.param.watch(self._refresh, ["shown", "baseline", "selected_layer"])
        self.layers.param.watch(self._clicked, "click_data")
        self._options()
        self._refresh()

    def _options(self, *_: Any) -> None:
        options = {option_label(p): p.run_id for p in self.state.history}
        self.picker.options = options
        self.baseline_picker.options = options
        if not self.state.shown and len(options) >= 2:
            self.state.shown = list(options.values())[-2:]

    @property
    def table(self) -> pn.widgets.Tabulator:
        """The aligned table currently shown."""
        return self.slot.table

    def _clicked(self, event: param.parameterized.Event) -> None:
        points = (event.new or {}).get("points") or []
        if points and isinstance(points[0].get("y"), str):
            self.state.selected_layer = points[0]["y"]

    def _picked(self, event: param.parameterized.Event) -> None:
        self.state.shown = list(event.new)

    def _pinned(self, event: param.parameterized.Event) -> None:
        if not self._showing:  # a person picked it: pin it
            self.state.baseline = event.new

    def profiles(self) -> list[Profile]:
        """The profiles shown, baseline first."""
        found = [self.state.profile_by_id(run_id) for run_id in self.state.shown]
        chosen = [p for p in found if p is not None]
        base = self.state.profile_by_id(self.state.baseline or "")
        if base is not None and base not in chosen:
            chosen.insert(0, base)
        elif base is not None:
            chosen.remove(base)
            chosen.insert(0, base)
        return chosen

    def _refresh(self, *_: Any) -> None:
        self.picker.value = [r for r in self.state.shown if r in self.picker.options.values()]
        chosen = self.profiles()
        # the picker names the baseline in use: the pinned one, else the first shown
        in_use = chosen[0].run_id if len(chosen) >= 2 else self.state.baseline
        if in_use in self.baseline_picker.options.values():
            self._showing = True
            try:
                self.baseline_picker.value = in_use
            finally:
                self._showing = False
        if len(chosen) < 2:
            self.layers.object = viz.empty_figure(
                "Choose two or more profiles (each picker change on the Profile page adds one; "
                "the Runs page reopens stored ones)."
            )
            return
        self.layers.object = viz.layer_comparison(
            chosen, baseline=0, selected=self.state.selected_layer
        )
        self.by_type.object = viz.op_type_breakdown(chosen)
        self.latency.object = viz.latency_distribution(chosen)
        with_layers = [p for p in chosen if not p.layers.empty]
        if len(with_layers) >= 2 and with_layers[0] is chosen[0]:
            self.slot.update(aligned_table(with_layers, chosen[0]))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self.picker, self.baseline_picker, sizing_mode="stretch_width"),
            self.layers,
            pn.Row(self.by_type, self.latency, sizing_mode="stretch_width"),
            pn.pane.Markdown("**Aligned per layer** (Δ and × against the baseline)"),
            self.slot.layout,
            sizing_mode="stretch_width",
        )
