"""The Serving page's language-model section: load an OpenAI-compatible streaming
endpoint (`wb.lm_load`) and search the highest rate within a TTFT/TPOT objective
(`wb.lm_slo`, MLPerf's presets), against a URL (vLLM, TGI, llama.cpp's server ...) or a
local ``serve-lm`` the section starts in this process (any sample or random config on
any generation runtime; a target for trying things, not a production server).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

import workbench as wb
from workbench.dashboards.actions import measuring
from workbench.dashboards.jobs import Jobs
from workbench.dashboards.pages.common import TableSlot, figure_pane
from workbench.errors import InputError
from workbench.progress import CancelToken, ProgressCallback
from workbench.scenarios.lm_load import OBJECTIVES, LmLoadResult, LmSloResult
from workbench.viz import empty_figure
from workbench.viz import serving as viz_serving

#: how requests arrive (`lm_load`'s arrival arguments)
ARRIVALS = ("poisson", "concurrency", "burst")
#: the custom objective's name in the picker
CUSTOM = "custom"
#: the headline numbers of a load run shown as a one-row table
METRIC_COLUMNS = [
    "requests", "failed", "goodput_per_s", "throughput_per_s", "output_tokens_per_s",
    "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "itl_p99_ms", "e2e_p99_ms",
    "client_overhead_ms", "cost_per_million_tokens", "meets_objective",
]  # fmt: skip


def objective_text() -> str:
    """The presets, one per line, for the section's help."""
    return "; ".join(o.describe() for o in OBJECTIVES.values())


class LmServingSection(Viewer):
    """Generative serving load: TTFT, TPOT and goodput, and the highest rate within an
    objective, against a URL or a local ``serve-lm``.

    Example:
        >>> section = LmServingSection(jobs=Jobs()); section.model = "llama-tiny"
        >>> section.start_server(); section.jobs.wait(); section.run_load(); section.jobs.wait()
        >>> section.result.goodput_per_s
    """

    url = param.String(
        default="", label="Endpoint URL", doc="http://host:port or a full completions URL"
    )
    model = param.Selector(default=None, objects=[], doc="local serve-lm: the language model")
    backend = param.Selector(default="torch", objects=["torch"], doc="local serve-lm: runtime")
    max_batch = param.Integer(default=8, bounds=(1, 256), doc="local serve-lm: batch limit")
    objective = param.Selector(
        default="mlperf-llama2",
        objects=[*OBJECTIVES, CUSTOM],
        doc="TTFT/TPOT objective (p99): a preset, or custom (edit the two limits)",
    )
    ttft_ms = param.Number(
        default=2000.0, bounds=(0.001, None), label="TTFT objective (ms)", doc="p99 TTFT limit"
    )
    tpot_ms = param.Number(
        default=200.0, bounds=(0.001, None), label="TPOT objective (ms)", doc="p99 TPOT limit"
    )
    arrivals = param.Selector(default="poisson", objects=list(ARRIVALS), doc="how requests arrive")
    rate_per_s = param.Number(
        default=4.0, bounds=(0.001, None), label="Rate (requests/s)", doc="Poisson or bursts"
    )
    concurrency = param.Integer(default=4, bounds=(1, 1024), doc="requests kept in flight")
    burst_size = param.Integer(default=4, bounds=(1, 1024), doc="requests per burst")
    requests = param.Integer(default=16, bounds=(1, 100_000), doc="requests per run")
    max_tokens = param.Integer(default=16, bounds=(1, 4096), doc="tokens asked per request")
    prompt = param.String(default="def main(args):", doc="the prompt (text)")
    steps = param.Integer(
        default=4, bounds=(1, 20), label="Search steps", doc="load runs in the rate bisection"
    )
    price_per_hour = param.Number(
        default=None, allow_None=True, bounds=(0.0, None), doc="machine price per hour (cost)"
    )
    result = param.ClassSelector(class_=LmLoadResult, default=None, doc="last load run")
    slo_result = param.ClassSelector(class_=LmSloResult, default=None, doc="last rate search")

    def __init__(self, jobs: Jobs | None = None, **params: Any) -> None:
        from workbench.backends.base import generation_backends
        from workbench.loaders.language import RANDOM_LLAMAS, TRAINED_LLAMAS

        super().__init__(**params)
        self.jobs = jobs or Jobs()
        self.param.model.objects = [*TRAINED_LLAMAS, *RANDOM_LLAMAS]
        self.model = self.model or next(iter(self.param.model.objects))
        self.param.backend.objects = generation_backends() or ["torch"]
        self._stop: Callable[[], None] | None = None
        self.figure = figure_pane(
            empty_figure("Give a URL or start a local serve-lm, then run a load or a search.")
        )
        self.summary = pn.pane.HTML(sizing_mode="stretch_width", css_classes=["wb-volatile"])
        self.slot = TableSlot(pd.DataFrame(columns=METRIC_COLUMNS), height=160)
        self.server_note = pn.pane.Markdown("No local server.", css_classes=["wb-volatile"])
        self.param.watch(self._show_load, "result")
        self.param.watch(self._show_slo, "slo_result")
        self.param.watch(self._preset, "objective")
        self.param.watch(self._edited, ["ttft_ms", "tpot_ms"])

    def _preset(self, *_: Any) -> None:
        """A preset shows its limits in the two fields."""
        preset = OBJECTIVES.get(str(self.objective))
        if preset is not None:
            self.param.update(ttft_ms=preset.ttft_ms, tpot_ms=preset.tpot_ms)

    def _edited(self, *_: Any) -> None:
        """Limits edited away from the preset's make the objective custom."""
        preset = OBJECTIVES.get(str(self.objective))
        if preset is not None and (self.ttft_ms, self.tpot_ms) != (preset.ttft_ms, preset.tpot_ms):
            self.objective = CUSTOM

    # ---- the local server -----------------------------------------------------------
    def start_server(self, *_: Any) -> None:
        """Start ``serve-lm`` with the picked model and runtime here (worker thread); its
        URL becomes the section's. A running one is stopped first."""
        from workbench.cli.lm_server import LmServer
        from workbench.loaders.language import language_model

        name, backend, batch = self.model, self.backend, self.max_batch
        self.stop_server()

        def work(progress: ProgressCallback, cancel: CancelToken) -> tuple[str, Any]:
            progress(0.0, f"loading {name}")
            server = LmServer(language_model(name), backend, name=str(name), max_batch=batch)
            return server.start()

        def started(found: tuple[str, Callable[[], None]]) -> None:
            self._stop = found[1]
            self.url = found[0]
            self.server_note.object = (
                f"serve-lm: **{name}** on **{backend}** at `{found[0]}` (batches of up to "
                f"{batch}; runs in this dashboard's process, sharing its CPUs)"
            )

        self.jobs.submit(f"starting serve-lm ({name} on {backend})", work, started)

    def stop_server(self, *_: Any) -> None:
        """Stop the local server, if one runs (its URL is cleared)."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()
            self.url = ""
            self.server_note.object = "No local server."

    def close(self) -> None:
        """Stop the local server (the session ended)."""
        self.stop_server()

    # ---- load and search --------------------------------------------------------------
    def _goal(self) -> str | tuple[float, float]:
        return (self.ttft_ms, self.tpot_ms) if self.objective == CUSTOM else str(self.objective)

    def _target(self) -> str:
        if not self.url.strip():
            raise InputError("no endpoint: give a URL, or start a local serve-lm first")
        return self.url.strip()

    def _common(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "max_tokens": self.max_tokens,
            "prompt": self.prompt,
            "objective": self._goal(),
            "price_per_hour": self.price_per_hour or None,
        }

    def run_load(self, *_: Any) -> None:
        """One load run with the picked arrivals (worker thread)."""
        choices: dict[str, dict[str, Any]] = {
            "poisson": {"rate_per_s": self.rate_per_s},
            "concurrency": {"concurrency": self.concurrency},
            "burst": {"rate_per_s": self.rate_per_s, "burst_size": self.burst_size},
        }
        arrivals = choices[str(self.arrivals)]
        common, url = self._common(), self.url

        def work(progress: ProgressCallback, cancel: CancelToken) -> LmLoadResult:
            target = self._target()
            with measuring(cancel, progress):
                progress(0.0, f"{common['requests']} requests to {target}")
                return wb.lm_load(target, **arrivals, **common)

        self.jobs.submit(f"load on {url or 'no endpoint'}", work, self._loaded)

    def find_rate(self, *_: Any) -> None:
        """Bisect the highest Poisson rate within the objective (worker thread; the search
        runs its ``steps`` runs to the end)."""
        common, steps, url = self._common(), self.steps, self.url
        goal = common.pop("objective")

        def work(progress: ProgressCallback, cancel: CancelToken) -> LmSloResult:
            target = self._target()
            with measuring(cancel, progress):
                progress(0.0, f"rate search on {target}: a probe, then {steps} runs")
                return wb.lm_slo(target, goal, steps=steps, **common)

        self.jobs.submit(f"rate search on {url or 'no endpoint'}", work, self._searched)

    def _loaded(self, result: LmLoadResult) -> None:
        self.result = result

    def _searched(self, result: LmSloResult) -> None:
        self.slo_result = result

    def _show_load(self, *_: Any) -> None:
        r = self.result
        if r is None:
            return
        self.figure.object = viz_serving.lm_load_figure(r)
        self.summary.object = f"<pre>{html.escape(r.summary())}</pre>"
        self.slot.update(pd.DataFrame([r.metrics()])[METRIC_COLUMNS])

    def _show_slo(self, *_: Any) -> None:
        s = self.slo_result
        if s is None:
            return
        self.figure.object = viz_serving.lm_slo_figure(s)
        self.summary.object = f"<pre>{html.escape(s.summary())}</pre>"
        self.slot.update(s.points)

    def __panel__(self) -> pn.viewable.Viewable:
        def button(label: str, action: Callable[..., None], **options: Any) -> pn.widgets.Button:
            widget = pn.widgets.Button(label=label, **options)
            widget.on_click(action)
            return widget

        server = pn.FlexBox(
            pn.widgets.Select.from_param(self.param.model, label="Model", width=150),
            pn.widgets.Select.from_param(self.param.backend, label="Runtime", width=130),
            pn.widgets.IntInput.from_param(self.param.max_batch, label="Max batch", width=90),
            button("Start local serve-lm", self.start_server, width=170),
            button("Stop", self.stop_server, width=70),
            self.server_note,
        )
        load = pn.Param(
            self.param,
            parameters=[
                "url",
                "objective",
                "ttft_ms",
                "tpot_ms",
                "arrivals",
                "rate_per_s",
                "concurrency",
                "burst_size",
                "requests",
                "max_tokens",
                "prompt",
                "steps",
                "price_per_hour",
            ],
            show_name=False,
            default_layout=pn.FlexBox,
            # typed numbers: a slider over 1 to 100,000 cannot pick 16
            widgets=dict.fromkeys(
                ("concurrency", "burst_size", "requests", "max_tokens", "steps"),
                pn.widgets.IntInput,
            ),
        )
        return pn.Column(
            pn.pane.Markdown(
                "#### Language models: TTFT, TPOT and goodput\n"
                "Any OpenAI-compatible streaming endpoint (vLLM, TGI, SGLang, llama.cpp's "
                "server), or a local `serve-lm`. Objectives (p99): "
                f"{html.escape(objective_text())}, or custom.",
                margin=(10, 10, 0, 10),
            ),
            server,
            load,
            pn.Row(
                button("Run load", self.run_load, color="primary"),
                button("Find highest rate within objective", self.find_rate),
            ),
            self.figure,
            self.summary,
            self.slot.layout,
            sizing_mode="stretch_width",
        )
