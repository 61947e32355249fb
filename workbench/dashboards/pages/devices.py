"""Devices page: what this machine has, each backend x device, the roofline ceilings, and
which runtime to use for the picked model (`RuntimesView`)."""

from __future__ import annotations

import html
from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from workbench import viz
from workbench.dashboards.jobs import Jobs
from workbench.dashboards.pages.common import figure_pane, table
from workbench.dashboards.pages.runtimes import RuntimesView
from workbench.dashboards.state import AppState
from workbench.profiling.formatting import format_cell


def ceilings_function() -> Any | None:
    """`wb.machine_ceilings`, or None where this build lacks it."""
    import workbench as wb

    try:
        return wb.machine_ceilings
    except (ImportError, AttributeError):
        return None


class DevicesPage(Viewer):
    """Machine description, backends x devices, measured ceilings and the roofline.

    Example:
        >>> page = DevicesPage(state=state); page.measure(); page.jobs.wait()
        >>> page.ceilings   # measured peak FLOP/s and bandwidth of state.device
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]
    ceilings = param.Dict(default=None, allow_None=True, doc="measured machine ceilings")

    def __init__(self, jobs: Jobs | None = None, **params: Any) -> None:
        super().__init__(**params)
        import workbench.machine as machine

        self.jobs = jobs or Jobs()
        self.machine = pn.pane.Markdown(f"**This machine:** {machine.describe_machine()}")
        self.devices = table(machine.devices())
        self.ceilings_text = pn.pane.HTML()
        self.roofline = figure_pane(viz.empty_figure("Profile a model to see its roofline."))
        self.runtimes = RuntimesView(state=self.state, jobs=self.jobs)
        self.state.param.watch(self._refresh, ["current", "selected_layer"])
        self.roofline.param.watch(self._clicked, "click_data")
        self.param.watch(self._refresh, ["ceilings"])
        self.jobs.param.watch(self._waiting, "running")
        self._refresh()

    def measure(self, *_: Any) -> None:
        """Measure the peak FLOP/s and memory bandwidth of the picked device (worker thread)."""
        measure = ceilings_function()
        if measure is None:
            self.ceilings_text.object = (
                "<p>Ceilings need <code>wb.machine_ceilings</code>, which is not installed in "
                "this build.</p>"
            )
            return
        device = self.state.device
        self.jobs.submit(
            f"measuring the ceilings of {device}",
            lambda progress, cancel: _plain(measure(device)),
            lambda result: setattr(self, "ceilings", result),
        )

    def _refresh(self, *_: Any) -> None:
        if self.ceilings:
            rows = "".join(
                f"<tr><th>{html.escape(str(k))}</th>"
                f"<td>{html.escape(format_cell(str(k), v))}</td></tr>"
                for k, v in self.ceilings.items()
            )
            self.ceilings_text.object = f"<table>{rows}</table>"
        elif "not installed" not in str(self.ceilings_text.object or ""):
            current = self.state.current
            own = current is not None and current.environment.get("machine_ceilings")
            self.ceilings_text.object = (
                "<p><i>Roofs from the ceilings measured with this profile; press "
                "'Measure ceilings' to measure the device now.</i></p>"
                if own
                else "<p><i>Press 'Measure ceilings' for the roofs.</i></p>"
            )
        if self.state.current is not None:
            self.roofline.object = viz.roofline(
                self.state.current,
                self.ceilings,
                selected=self.state.selected_layer,
                missing="no measured ceilings: press 'Measure ceilings' above",
            )

    def _clicked(self, event: param.parameterized.Event) -> None:
        points = (event.new or {}).get("points") or []
        if points and isinstance(points[0].get("text"), str):
            self.state.selected_layer = points[0]["text"]

    def _waiting(self, *_: Any) -> None:
        self.roofline.loading = self.jobs.running

    def __panel__(self) -> pn.viewable.Viewable:
        button = pn.widgets.Button(label="Measure ceilings", color="primary")
        button.on_click(self.measure)
        return pn.Column(
            self.machine,
            self.devices,
            pn.Row(button, pn.pane.Markdown(self.jobs.param.message)),
            self.ceilings_text,
            self.roofline,
            self.runtimes,
            sizing_mode="stretch_width",
        )


def _plain(ceilings: Any) -> dict[str, Any]:
    return dict(ceilings.to_dict() if hasattr(ceilings, "to_dict") else ceilings)
