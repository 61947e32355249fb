"""Graph page: the model's graph after the backend's fusions, coloured by a per-layer value.

The layout is computed once per model and set of fusions (`viz_graph.graph_layout`:
layered, collapsed by module past ``max_nodes``) and cached; changing the colour or the
selection only recolours it. Clicking a node selects its layer everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from workbench.dashboards import actions
from workbench.dashboards.pages.common import figure_pane
from workbench.dashboards.state import AppState
from workbench.viz import empty_figure
from workbench.viz import graph as viz_graph


class GraphPage(Viewer):
    """The current model's graph, nodes coloured by latency, memory, change or sensitivity.

    Example:
        >>> page = GraphPage(state=state)
        >>> page.color_by = "memory"; page.figure.object   # recoloured, same layout
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]
    color_by = param.Selector(
        default="latency", objects=list(viz_graph.COLOR_BY), doc="what colours the nodes"
    )
    max_nodes = param.Integer(default=150, bounds=(10, 2000), doc="collapse above this")

    def __init__(
        self, sensitivity: Callable[[], pd.DataFrame | None] | None = None, **params: Any
    ) -> None:
        super().__init__(**params)
        self.sensitivity = sensitivity or (lambda: None)
        self._layouts: dict[tuple[Any, ...], viz_graph.GraphLayout] = {}
        self.figure = figure_pane(empty_figure("Profiling…"), height=700)
        self.figure.param.watch(self._node_clicked, "click_data")
        self.state.param.watch(self.refresh, ["current", "selected_layer", "baseline"])
        self.param.watch(self.refresh, ["color_by", "max_nodes"])
        self.refresh()

    def layout(self) -> viz_graph.GraphLayout:
        """The current model's layout (after the current profile's fusions), cached."""
        state, profile = self.state, self.state.current
        model = state.model()
        fused = ()
        if profile is not None and "fused_into" in profile.layers:
            fused = tuple(profile.layers["fused_into"].dropna().items())
        key = (actions.model_key(model), fused, self.max_nodes)
        if key not in self._layouts:
            self._layouts[key] = viz_graph.graph_layout(
                model, profile=profile, max_nodes=self.max_nodes
            )
        return self._layouts[key]

    def values(self) -> dict[str, float]:
        """Per-layer numbers for the chosen colouring (empty when there are none yet)."""
        state, what = self.state, self.color_by
        if what == "sensitivity":
            return viz_graph.layer_values(self.sensitivity(), what)
        baseline = state.profile_by_id(state.baseline) if state.baseline else None
        if baseline is None:
            baseline = next((p for p in state.history if p is not state.current), None)
        return viz_graph.layer_values(state.current, what, baseline=baseline)

    def refresh(self, *_: Any) -> None:
        """Redraw (the layout is reused; only colours and the outline change)."""
        if self.state.current is None:
            return
        values, what = self.values(), self.color_by
        title = f"Graph — {self.state.current.label}"
        if not values and what not in ("op type",):
            title += f" (no {what} yet: " + _HOW.get(what, "profile first") + ")"
        self.figure.object = viz_graph.graph_figure(
            self.layout(), values, what=what, selected=self.state.selected_layer, title=title
        )

    def _node_clicked(self, event: param.parameterized.Event) -> None:
        points = (event.new or {}).get("points") or []
        layer = points[0].get("customdata") if points else None
        if isinstance(layer, str):
            self.state.selected_layer = layer

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(
                pn.widgets.RadioButtonGroup.from_param(self.param.color_by),
                pn.widgets.IntInput.from_param(self.param.max_nodes, width=140),
            ),
            pn.pane.Markdown(
                "Click a node to select its layer on every page. Fused layers are one node "
                "(named after the layer that runs them); large graphs are collapsed by module."
            ),
            self.figure,
            sizing_mode="stretch_width",
        )


_HOW = {
    "change vs baseline": "profile a second configuration",
    "sensitivity": "press Analyse on the Sensitivity page",
}
