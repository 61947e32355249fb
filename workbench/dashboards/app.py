"""`App`: one dashboard session (state, pages, pickers, worker threads, upload folder)."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from workbench.dashboards.jobs import Jobs
from workbench.dashboards.pages.compare import ComparePage
from workbench.dashboards.pages.devices import DevicesPage
from workbench.dashboards.pages.generate import GeneratePage
from workbench.dashboards.pages.graph import GraphPage
from workbench.dashboards.pages.optimize import OptimizePage
from workbench.dashboards.pages.plan import PlanPage
from workbench.dashboards.pages.profile import ProfilePage
from workbench.dashboards.pages.runs import RunsPage
from workbench.dashboards.pages.sensitivity import SensitivityPage
from workbench.dashboards.pages.serving import ServingPage
from workbench.dashboards.state import AppState
from workbench.dashboards.upload import (
    MAX_UPLOAD_BYTES,
    SUFFIXES,
    bounded_dropper,
    load_upload,
)
from workbench.model import Model

__all__ = ["App"]

BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
EXTENSIONS = ("plotly", "tabulator", "filedropper")
#: pages built when first opened or asked for (the others are built with the app)
LAZY_PAGES = ("devices", "runs", "serving", "sensitivity", "graph", "generate", "plan")
#: how often a served session drops uploads that stopped arriving, in milliseconds
EXPIRY_CHECK_MS = 30_000
#: Panel 1.9's Plotly view throttles its resize by 25 ms; a tab switched away from in
#: that time removes the view and purges its figure, and the late resize then makes
#: Plotly read the layout the purge deleted (``reading '_guiEditing'``). Installed in the
#: browser at the first tab click (before any tab's views are removed): a relayout of a
#: purged figure is dropped, as nothing is left to lay out.
PURGED_RELAYOUT_GUARD = """
const plotly = window.Plotly
if (plotly == null || plotly.__workbench_guard) { return }
const relayout = plotly.relayout
plotly.relayout = function (gd, ...rest) {
  if (gd != null && typeof gd === 'object' && gd._fullLayout == null) {
    return Promise.resolve(gd)
  }
  return relayout.call(this, gd, ...rest)
}
plotly.__workbench_guard = true
"""


class App(Viewer):
    """One dashboard session: the shared state, its pages, pickers and worker threads.

    Args:
        model: a `Model`, a sample name, or None for the ``digits-cnn`` sample.
        store: a `workbench.store.Store` (or path) for the Runs page and for saving the
            profiles measured here; None for the default store.
        budget_s: timing budget of each end-to-end measurement, in seconds.
        start: profile the picked model at once (served, the first profile waits until
            the page has loaded instead).
        **params: initial pickers (``backend``, ``device``, ``batch_size``, ``per_layer``).
    """

    title = param.String(default="workbench", doc="the app's title")

    def __init__(
        self,
        model: Model | str | None = None,
        *,
        store: Any = None,
        budget_s: float = 0.5,
        start: bool = True,
        **params: Any,
    ) -> None:
        super().__init__()
        from workbench.store import Store

        store = store if isinstance(store, Store) or store is False else Store(store)
        self._notifications = pn.state.notifications  # this session's, captured on its thread
        self._upload_dir = tempfile.mkdtemp(prefix="workbench-upload-")
        dispatch = _session_dispatch()
        jobs = Jobs(notify=self.notify, dispatch=dispatch)
        self.state = AppState(
            model, store=store or None, jobs=jobs, budget_s=budget_s, start=start, **params
        )
        self.profile = ProfilePage(state=self.state)
        self.compare = ComparePage(state=self.state)
        self.optimize = OptimizePage(
            state=self.state,
            jobs=Jobs(self.notify, dispatch),
            sensitivity=self._sensitivity_analysis,
        )
        self._dispatch = dispatch
        # pages a first view does not show are built when first opened (or asked for):
        # building all eight cost most of each page view's time on the server's one loop
        self._lazy: dict[str, Any] = {}
        self._slots = {name: pn.Column(sizing_mode="stretch_width") for name in LAZY_PAGES}
        #: the tabs' pages, in order (Panel keeps the titles only in a private list)
        self.tab_pages = ("profile", "compare", "optimize", *LAZY_PAGES)
        self.tabs = pn.Tabs(
            ("Profile", self.profile),
            ("Compare", self.compare),
            ("Optimize", self.optimize),
            *((name.capitalize(), slot) for name, slot in self._slots.items()),
            dynamic=True,
            sizing_mode="stretch_width",
        )
        self.tabs.param.watch(self._tab_opened, "active")
        self.tabs.jscallback(active=PURGED_RELAYOUT_GUARD)
        # No `accepted_filetypes`: browsers give .onnx/.pt2 files no MIME type, so the
        # drop zone would refuse them; the server checks the suffix (with a clear message)
        # and counts every chunk against the limit as it arrives.
        self.upload = bounded_dropper(
            self._uploaded, self._upload_refused, sizing_mode="stretch_width", height=90
        )
        # served: drop uploads that stop arriving (a timeout re-armed each time, not a
        # periodic callback: Bokeh keeps a stopped periodic's session alive a period longer)
        self._session_doc = pn.state.curdoc if dispatch is not None else None
        self._arm_expiry()

    # ---- pickers ------------------------------------------------------------------------
    def pickers(self, horizontal: bool = False) -> pn.layout.ListPanel:
        """The shared pickers, progress, cancel and messages (sidebar when served)."""
        state = self.state
        batch = pn.widgets.Select(
            label="Batch size",
            options=_batch_options(state.batch_size),
            value=state.batch_size,
            width=110,
        )
        batch.link(state, value="batch_size")
        state.param.watch(lambda e: setattr(batch, "value", e.new), "batch_size")
        run = pn.widgets.Button(label="Profile", color="primary", width=90)
        run.on_click(lambda _: state.request_profile())
        cancel = pn.widgets.Button(label="Cancel", color="warning", width=90)
        cancel.on_click(lambda _: state.jobs.cancel())
        error = pn.pane.Alert(
            state.jobs.param.error, alert_type="danger", visible=state.jobs.param.error.rx.bool()
        )
        widgets = [
            pn.widgets.Select.from_param(state.param.model_name, label="Model", width=200),
            pn.widgets.Select.from_param(state.param.backend, label="Backend", width=140),
            pn.widgets.Select.from_param(state.param.device, label="Device", width=110),
            batch,
            pn.widgets.Checkbox.from_param(state.param.per_layer, label="per layer"),
            pn.widgets.Checkbox.from_param(state.param.auto, label="profile on change"),
            pn.Row(run, cancel),
            pn.indicators.Progress(
                value=state.jobs.param.progress,
                max=100,
                width=200,
                visible=state.jobs.param.running,
            ),
            pn.pane.Markdown(state.jobs.param.message, styles={"font-size": "12px"}),
            error,
        ]
        if horizontal:
            return pn.Column(pn.FlexBox(*widgets[:6], *widgets[6:8]), *widgets[8:])
        upload = pn.Column(
            pn.pane.Markdown(
                f"**Upload a model** ({', '.join(SUFFIXES)}; ≤ {MAX_UPLOAD_BYTES // 2**20} MB)"
            ),
            self.upload,
        )
        return pn.Column(*widgets, upload, sizing_mode="stretch_width")

    def _uploaded(self, filename: str, data: bytes) -> None:
        folder = self._upload_dir
        self.state.jobs.submit(
            f"loading {filename}",
            lambda progress, cancel: load_upload(filename, data, folder),
            lambda model: self.state.add_model(model, key=f"{filename} (uploaded)"),
        )

    def _arm_expiry(self) -> None:
        if self._session_doc is not None:
            self._session_doc.add_timeout_callback(self._expire_uploads, EXPIRY_CHECK_MS)

    def _expire_uploads(self) -> None:
        self.upload.buffer.expire()
        self._arm_expiry()

    def _upload_refused(self, message: str) -> None:
        self.state.jobs.error = message
        self.notify("error", message)

    # ---- pages built on first use --------------------------------------------------------
    @property
    def devices(self) -> DevicesPage:
        """The Devices page (built on first use)."""
        return self._page("devices")  # type: ignore[no-any-return]

    @property
    def runs(self) -> RunsPage:
        """The Runs page (built on first use)."""
        return self._page("runs")  # type: ignore[no-any-return]

    @property
    def serving(self) -> ServingPage:
        """The Serving page (built on first use)."""
        return self._page("serving")  # type: ignore[no-any-return]

    @property
    def sensitivity(self) -> SensitivityPage:
        """The Sensitivity page (built on first use)."""
        return self._page("sensitivity")  # type: ignore[no-any-return]

    @property
    def graph(self) -> GraphPage:
        """The Graph page (built on first use)."""
        return self._page("graph")  # type: ignore[no-any-return]

    @property
    def plan(self) -> PlanPage:
        """The Plan page (built on first use, or with the Serving page it follows)."""
        return self._page("plan")  # type: ignore[no-any-return]

    @property
    def generate(self) -> GeneratePage:
        """The Generate page (built on first use)."""
        return self._page("generate")  # type: ignore[no-any-return]

    def _page(self, name: str) -> Any:
        if name not in self._lazy:
            page = self._build(name)
            self._lazy[name] = page
            self._slots[name].objects = [page]
        return self._lazy[name]

    def _build(self, name: str) -> Any:
        state = self.state
        if name == "devices":
            return DevicesPage(state=state, jobs=Jobs(self.notify, self._dispatch))
        if name == "runs":
            return RunsPage(
                state=state,
                on_open=lambda: setattr(self.tabs, "active", 1),
                on_open_generations=self._open_generations,
            )
        if name == "serving":
            serving = ServingPage(state=state, jobs=Jobs(self.notify, self._dispatch))
            self.plan.follow(serving)  # every SLO search measured here is a plan candidate
            return serving
        if name == "plan":
            return PlanPage(state=state)
        if name == "sensitivity":
            page = SensitivityPage(
                state=state, jobs=Jobs(self.notify, self._dispatch), on_send=self._measure_recipe
            )
            page.param.watch(self._report_changed, "report")
            return page
        if name == "generate":
            return GeneratePage(
                jobs=Jobs(self.notify, self._dispatch), dispatch=self._dispatch, store=state.store
            )
        return GraphPage(state=state, sensitivity=self._sensitivity_report)

    def _open_generations(self, profiles: list[Any]) -> None:
        """Show stored generation profiles on the Generate page (its runs and roofline)."""
        self.generate.show_generations(profiles)
        self.tabs.active = self.tab_pages.index("generate")

    def _sensitivity_report(self) -> Any:
        return self._sensitivity_analysis()[1]

    def _sensitivity_analysis(self) -> tuple[Any, Any, Any]:
        """The Sensitivity page's (transform, report, sparsity); its defaults when unopened."""
        page = self._lazy.get("sensitivity")
        if page is None:  # nothing analysed yet: never build a page from a worker thread
            defaults = SensitivityPage.param
            return defaults.transform.default, None, defaults.sparsity.default
        return page.transform, page.report, page.sparsity

    def _report_changed(self, event: param.parameterized.Event) -> None:
        if "graph" in self._lazy:
            self.graph.refresh(event)

    def _tab_opened(self, event: param.parameterized.Event) -> None:
        name = self.tab_pages[event.new]
        if name in LAZY_PAGES:
            self._page(name)
        self.optimize.active = event.new == 2
        if event.new == 2:
            self.optimize.opened()
        elif event.new == 4:
            self.runs.refresh()

    def _measure_recipe(self, settings: dict[str, Any]) -> None:
        """The Sensitivity page's recipe, measured on the Optimize page (shown at once)."""
        self.tabs.active = 2
        self.optimize.measure_recipe(**settings)

    def notify(self, level: str, message: str) -> None:
        """A toast when a job finishes or fails (where notifications are enabled)."""
        if self._notifications is not None:
            getattr(self._notifications, level, self._notifications.info)(message, duration=4000)

    # ---- layouts ------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.pickers(horizontal=True), self.tabs, sizing_mode="stretch_width")

    def template(self) -> pn.template.BootstrapTemplate:
        """The served layout: pickers in the sidebar, pages as tabs in the main area.

        Bootstrap rather than Fast: it loads no web fonts, so the page needs no internet.
        """
        return pn.template.BootstrapTemplate(
            title=self.title,
            sidebar=[self.pickers()],
            main=[self.tabs],
            sidebar_width=320,
            header_background="#4C78A8",
        )

    def close(self) -> None:
        """Cancel running jobs and delete uploaded files (called when a session ends)."""
        with_jobs = ("devices", "serving", "sensitivity", "generate")
        built = [self._lazy[n] for n in with_jobs if n in self._lazy]
        for jobs in (self.state.jobs, self.optimize.jobs, *(page.jobs for page in built)):
            jobs.close()
        if "serving" in self._lazy:  # a local serve-lm it started
            self.serving.close()
        # Bokeh removes a session's callbacks as it destroys it; a timeout still pending
        # after a close outside that finds no document and does not re-arm
        self._session_doc = None
        self.upload.buffer.clear()
        shutil.rmtree(self._upload_dir, ignore_errors=True)


def _session_dispatch() -> Any:
    """Served: run callbacks on this session's event loop (thread-safe); else None."""
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return None
    return doc.add_next_tick_callback


def _batch_options(current: int) -> list[int]:
    return sorted({*BATCH_SIZES, int(current)})
