"""Which runtime: `wb.compare_backends` on the picked model, shown on the Devices page."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from workbench import viz
from workbench.dashboards.jobs import Jobs
from workbench.dashboards.pages.common import figure_pane, table
from workbench.dashboards.state import AppState
from workbench.evaluation.compare_backends import BackendComparison
from workbench.profiling.compare_runtimes import Launcher
from workbench.progress import CancelToken, ProgressCallback
from workbench.viz import runtimes as viz_backends

#: the comparison's columns the table shows (the rest stay in the result)
TABLE_COLUMNS = [
    "runtime",
    "batch_size",
    "latency_ms",
    "throughput_per_s",
    "compile_s",
    "first_inference_ms",
    "memory_mib",
    "best_latency",
    "best_throughput",
    "best_cold_start",
    "best_memory",
    "verdict",
    "errors",
]


class RuntimesView(Viewer):
    """Every backend x device x option set that runs the picked model, measured fairly.

    The comparison runs on the worker thread (`Jobs`; on the Devices page it shares the
    page's, so a new ceilings measurement cancels it), one child process per runtime,
    batch size and round; the result is drawn with
    `workbench.viz.runtimes.backend_comparison_figure` above its table.

    Example:
        >>> view = RuntimesView(state=state, rounds=1); view.run(); view.jobs.wait()
        >>> view.result.best("throughput_per_s", batch_size=32)
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]
    batch_sizes = param.ListSelector(
        default=[1, 32], objects=[1, 8, 32, 128], doc="batch sizes to compare at"
    )
    rounds = param.Integer(
        default=3, bounds=(1, 10), doc="child processes per runtime and batch (3: a median)"
    )
    budget_s = param.Number(default=0.3, bounds=(0.01, None), doc="timing budget per child (s)")
    result = param.ClassSelector(class_=BackendComparison, default=None, doc="last comparison")

    def __init__(self, jobs: Jobs | None = None, launcher: Launcher | None = None, **params: Any):
        super().__init__(**params)
        self.jobs = jobs or Jobs()
        self._launcher = launcher  # tests answer for the child processes
        self.figure = figure_pane(
            viz.empty_figure("Press 'Compare runtimes' to measure every runtime on this model.")
        )
        self.summary = pn.pane.HTML()
        self.table = table(pd.DataFrame(columns=TABLE_COLUMNS))
        self.param.watch(self._show, "result")
        self.jobs.param.watch(self._waiting, "running")

    def run(self, *_: Any) -> None:
        """Compare every runtime on the picked model at `batch_sizes` (worker thread)."""
        import workbench as wb

        model, sizes = self.state.model(), sorted(self.batch_sizes) or [1]
        settings = {"rounds": self.rounds, "budget_s": self.budget_s, "launcher": self._launcher}

        def work(progress: ProgressCallback, cancel: CancelToken) -> BackendComparison:
            def step(fraction: float, message: str) -> None:
                cancel.check()  # between children: a cancelled job starts no new process
                progress(fraction, message)

            return wb.compare_backends(model, sizes, progress=step, **settings)

        self.jobs.submit(
            f"comparing runtimes on {model.name}",
            work,
            lambda result: setattr(self, "result", result),
        )

    def _show(self, *_: Any) -> None:
        if self.result is None:
            return
        self.figure.object = viz_backends.backend_comparison_figure(self.result)
        self.summary.object = self.result._repr_html_()
        self.table.value = self.result.table[TABLE_COLUMNS]

    def _waiting(self, *_: Any) -> None:
        self.figure.loading = self.jobs.running

    def __panel__(self) -> pn.viewable.Viewable:
        button = pn.widgets.Button(label="Compare runtimes", color="primary")
        button.on_click(self.run)
        controls = pn.Param(
            self.param,
            parameters=["batch_sizes", "rounds", "budget_s"],
            show_name=False,
            default_layout=pn.Row,
        )
        return pn.Column(
            pn.pane.Markdown("### Which runtime? (each in its own processes, alternated)"),
            controls,
            pn.Row(button, pn.pane.Markdown(self.jobs.param.message)),
            self.figure,
            self.summary,
            self.table,
            sizing_mode="stretch_width",
        )
