"""Optimize page: a recipe (quantization, calibration, sparsity) measured live beside the baseline.

Moving a control builds the variant and measures accuracy, latency and size on the
page's own worker thread; the point joins the trade-off plot (cached, so a control
moved back shows its earlier point at once). Before it is measured, an estimated point
stands in: latency from the cost model (`estimate_latency_ms`: each layer's FLOPs or
bytes change, by its roofline bound) plus the Sensitivity page's measured per-layer
changes, accuracy from the sensitivity; once measured, the page says how far off the
estimate was. Clicking a point shows that variant's per-layer latency against the
baseline.
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
from workbench.profiling.cost import estimate_latency_ms
from workbench.units import format_ms, format_share, format_value

BASELINE: tuple[Any, ...] = ("none", "entropy", 0.0, False, (), (), 0)
#: the trade-off table's columns (the dashboard's metric is accuracy)
SHOWN = ["variant", "backend", "host", "latency_ms", "latency_p90_ms", "size_bytes", "accuracy"]
#: fine-tuning epochs after structured pruning, by default (the digits samples recover
#: their accuracy in about three)
FINETUNE_EPOCHS = 3


class OptimizePage(Viewer):
    """The recipe controls, the baseline-versus-variant numbers and the trade-off plot.

    Example:
        >>> page = OptimizePage(state=state)
        >>> page.method = "int8-dynamic"; page.jobs.wait()
        >>> page.results["int8-dynamic"].metric_value
    """

    state: AppState = param.ClassSelector(class_=AppState, doc="the session's shared state")  # type: ignore[assignment]
    method = param.Selector(
        default="none", objects=list(actions.QUANT_METHODS), doc="quantization method"
    )
    calibration_method = param.Selector(
        default="entropy",
        objects=list(actions.CALIBRATION_METHODS),
        doc="how static INT8 picks activation ranges",
    )
    sparsity = param.Number(default=0.0, bounds=(0.0, 0.9), step=0.05, doc="fraction pruned")
    structured = param.Boolean(default=False, doc="remove whole channels (torch models)")
    finetune_epochs = param.Integer(
        default=FINETUNE_EPOCHS,
        bounds=(0, 20),
        doc="epochs of fine-tuning on the training split after structured pruning",
    )
    exclude = param.List(
        default=[], item_type=str, doc="layers kept in full precision (from the Sensitivity page)"
    )
    layer_sparsity = param.Dict(
        default={}, doc="layer -> its own prune ratio (from the Sensitivity page's ticks)"
    )
    selected = param.String(default=None, allow_None=True, doc="variant shown against baseline")
    active = param.Boolean(default=False, doc="the page is in view (measures on context change)")

    def __init__(
        self,
        jobs: Jobs | None = None,
        sensitivity: Callable[[], tuple[str, pd.DataFrame | None, float]] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.jobs = jobs or Jobs()
        #: the Sensitivity page's (transform, report, prune ratio analysed), for estimates
        self.sensitivity = sensitivity or (lambda: ("", None, 0.0))
        #: estimated rows by label, placed before the variant is measured (kept after,
        #: to show how far off they were)
        self.estimates: dict[str, dict[str, Any]] = {}
        #: the label of the recipe asked for last (its estimate is the one shown)
        self.pending: str | None = None
        #: measured variants of the current model/backend/device/batch, by label
        self.results: dict[str, actions.VariantResult] = {}
        self.comparison = pn.pane.HTML(sizing_mode="stretch_width")
        self.tradeoff = figure_pane(viz.tradeoff(pd.DataFrame()), height=440)
        self.diff = figure_pane(viz.empty_figure("Click a point to see its per-layer diff."))
        self.table = table(_shown(pd.DataFrame()), height=300)
        self.kept = pn.pane.Markdown(_kept_text([], {}), styles={"font-size": "12px"})
        self.param.watch(self._show_kept, ["exclude", "layer_sparsity"])
        self.tradeoff.param.watch(self._point_clicked, "click_data")
        self.param.watch(
            self.request,
            [
                "method",
                "calibration_method",
                "sparsity",
                "structured",
                "finetune_epochs",
                "exclude",
                "layer_sparsity",
            ],
        )
        self.param.watch(self._refresh, "selected")
        self.state.param.watch(
            self._context_changed, ["model_name", "backend", "device", "batch_size"]
        )
        self.jobs.param.watch(self._waiting, "running")
        self._refresh()

    def recipe(self) -> tuple[Any, ...]:
        """The controls as (method, calibration method, sparsity, structured, kept layers,
        per-layer prune ratios, fine-tune epochs); the epochs count only where they apply
        (structured pruning), so other recipes keep one label."""
        sparsity = round(float(self.sparsity), 2)
        ratios = tuple(sorted((str(k), round(float(v), 2)) for k, v in self.layer_sparsity.items()))
        pruned = sparsity > 0 or any(r > 0 for _, r in ratios)
        epochs = int(self.finetune_epochs) if self.structured and pruned else 0
        return (
            self.method,
            self.calibration_method,
            sparsity,
            self.structured,
            tuple(sorted(self.exclude)),
            ratios,
            epochs,
        )

    def measure_recipe(self, **settings: Any) -> None:
        """Measure the Sensitivity page's recipe: ``settings`` are this page's recipe
        parameters (``method`` and ``exclude``, or ``sparsity``, ``structured`` and
        ``layer_sparsity``); the others go back to full precision / no pruning."""
        defaults = {"method": "none", "sparsity": 0.0, "exclude": [], "layer_sparsity": {}}
        self.param.update(**{**defaults, **settings})

    def request(self, *_: Any) -> None:
        """Measure the baseline (once) and the current recipe, off the UI thread."""
        state = self.state
        model, recipe = state.model(), self.recipe()
        context = (state.backend, state.device, state.batch_size)
        label = actions.variant_label(*recipe)
        self.pending = label
        estimate = self.estimate(recipe)
        if estimate is not None and label not in self.results:
            self.estimates[label] = estimate
            self.selected = label
        # the estimated point shows at once (measuring replaces it); a recipe left
        # before it was measured (a slider moved on) leaves no row behind
        self._refresh()

        def measure(progress: Any, cancel: Any) -> list[actions.VariantResult]:
            done = []
            for i, spec in enumerate(dict.fromkeys([BASELINE, recipe])):
                done.append(
                    actions.measure_variant(
                        model,
                        spec,
                        *context,
                        store=state.store,
                        cancel=cancel,
                        progress=lambda f, m, i=i: progress((i + f) / 2, m),
                    )
                )
            return done

        def show(results: list[actions.VariantResult]) -> None:
            for result in results:
                self.results[result.label] = result
            self.selected = label
            self._refresh()

        self.jobs.submit(f"measuring {label}", measure, show)

    def estimate(self, recipe: tuple[Any, ...]) -> dict[str, Any] | None:
        """The recipe's latency and accuracy, estimated before it is measured.

        Latency: the baseline's, changed by the cost model for what the Sensitivity page
        did not measure (pruning; quantization without a sensitivity of that method) and
        by the sensitivity's measured per-layer changes for the rest. Accuracy: the
        baseline's plus the sensitivity's per-layer drops (a prune drop scaled by the
        layer's ratio over the ratio analysed); unknown (None) without a matching
        sensitivity. None when there is no measured baseline to start from.
        """
        method, _, sparsity, structured, exclude, ratios = recipe[:6]
        base = self.results.get("baseline")
        if base is None or recipe == BASELINE:
            return None
        transform, report, analysed = self.sensitivity()
        report = report[report["error"].isna()] if report is not None else None
        measured_quant = report is not None and transform == method
        flops, nbytes = actions.cost_scales(
            base.profile, "none" if measured_quant else method, sparsity, structured,
            exclude, ratios,
        )  # fmt: skip
        latency = estimate_latency_ms(base.profile, flops, nbytes)
        drops: list[float] = []
        if report is not None and measured_quant:
            done = report[~report["layer"].isin(exclude)]
            latency += float(done["latency_delta_ms"].sum())
            drops.append(float(done["metric_delta"].sum()))
        pruning = "prune-channels" if structured else "prune-magnitude"
        if report is not None and transform == pruning and analysed > 0:
            own = {layer: sparsity for layer in report["layer"]} | dict(ratios)
            scale = report["layer"].map(own).fillna(0.0) / analysed
            drops.append(float((report["metric_delta"] * scale).sum()))
        quantized = method == "none" or measured_quant
        pruned = not (sparsity or ratios) or transform == pruning
        metric = base.metric_value
        if metric is None or report is None or not (quantized and pruned):
            return {"latency_ms": latency, "metric_value": None}
        return {"latency_ms": latency, "metric_value": metric + sum(drops)}

    def opened(self) -> None:
        """The page came into view: measure the baseline if nothing is measured yet."""
        self.active = True
        if not self.results and not self.jobs.running:
            self.request()

    def _context_changed(self, *_: Any) -> None:
        self.results = {}
        self.selected = None
        self._refresh()
        if self.active:  # in view: measure the new model/backend/batch at once
            self.request()

    def frame(self) -> pd.DataFrame:
        """The measured variants as trade-off rows (baseline first)."""
        # the host each was measured on, so rows from several machines stay apart
        rows = [
            {**r.row(), "host": r.profile.environment.get("hostname")}
            for r in self.results.values()
        ]
        measured = viz.pareto_mask(
            pd.Series([r["latency_ms"] for r in rows], dtype=float),
            pd.Series([r["metric_value"] for r in rows], dtype=float),
        )
        rows = [{**r, "pareto": bool(m)} for r, m in zip(rows, measured, strict=True)]
        # an estimate stands in until its variant is measured (never on the front)
        estimate = self.estimates.get(self.pending or "")
        if estimate is not None and self.pending not in self.results:
            context = {"backend": self.state.backend, "device": self.state.device}
            rows.append(
                {"variant": f"{self.pending} (estimate)", **context, "precision": "estimate",
                 "pareto": False, **estimate}
            )  # fmt: skip
        return pd.DataFrame(rows)

    def _refresh(self, *_: Any) -> None:
        frame = self.frame()
        self.tradeoff.object = viz.tradeoff(frame, selected=self.selected)
        self.comparison.object = self._numbers()
        base, chosen = self.results.get("baseline"), self.results.get(self.selected or "")
        if base is not None and chosen is not None and chosen is not base:
            self.diff.object = viz.layer_comparison([base.profile, chosen.profile])
        # fixed columns: Tabulator cannot reset the columns of a table it has not drawn;
        # the metric column is titled by the metric measured (roc_auc on a click model)
        self.table.value = _shown(frame)
        self.table.titles = {"accuracy": self._metric()}

    def _numbers(self) -> str:
        base, chosen = self.results.get("baseline"), self.results.get(self.selected or "")
        if base is None:
            return "<p><i>Move a control (or press Measure) to measure a variant.</i></p>"
        chosen = None if chosen is base else chosen
        rows: list[tuple[str, ...]] = [("", "baseline", chosen.label if chosen else "—")]
        for name, get, kind in (
            (
                base.metric,
                lambda r: r.metric_value,
                "share" if base.metric == "accuracy" else "number",
            ),
            ("latency p50", lambda r: r.profile.latency.median, "ms"),
            ("size", lambda r: r.size_bytes, "bytes"),
        ):
            values = [get(base), get(chosen) if chosen else None]
            rows.append((name, *[format_value(kind, v) for v in values]))
        estimate = self.estimates.get(chosen.label) if chosen else None
        if estimate is not None and chosen is not None:
            rows.append(("estimated before measuring", "", _estimate_error(estimate, chosen)))
        body = "".join(f"<tr><th>{a}</th><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
        notes = "".join(f"<li>{n}</li>" for n in (chosen.notes if chosen else ()))
        return f"<table class='wb-compare'>{body}</table><ul>{notes}</ul>"

    def _metric(self) -> str:
        """The measured variants' metric (``accuracy`` until one is measured)."""
        return next((r.metric for r in self.results.values()), "accuracy")

    def _point_clicked(self, event: param.parameterized.Event) -> None:
        points = (event.new or {}).get("points") or []
        custom = points[0].get("customdata") if points else None
        if custom:
            self.selected = str(custom[0])

    def _transform_all(self, *_: Any) -> None:
        self.param.update(exclude=[], layer_sparsity={})

    def _show_kept(self, *_: Any) -> None:
        self.kept.object = _kept_text(self.exclude, self.layer_sparsity)

    def _waiting(self, *_: Any) -> None:
        self.tradeoff.loading = self.diff.loading = self.jobs.running

    def controls(self) -> pn.Column:
        """The recipe widgets (the sparsity slider reports on release: `value_throttled`)."""
        sparsity = pn.widgets.FloatSlider(
            label="Sparsity", start=0.0, end=0.9, step=0.05, value=self.sparsity, width=250
        )
        sparsity.param.watch(lambda e: setattr(self, "sparsity", e.new), "value_throttled")
        measure = pn.widgets.Button(label="Measure", color="primary")
        measure.on_click(self.request)
        cancel = pn.widgets.Button(label="Cancel", color="warning")
        cancel.on_click(lambda _: self.jobs.cancel())
        keep_all = pn.widgets.Button(label="Transform every layer", width=250)
        keep_all.on_click(self._transform_all)
        return pn.Column(
            pn.widgets.Select.from_param(self.param.method, label="Quantization", width=250),
            pn.widgets.Select.from_param(
                self.param.calibration_method, label="Calibration (static INT8)", width=250
            ),
            sparsity,
            pn.widgets.Checkbox.from_param(self.param.structured, label="Structured (channels)"),
            pn.widgets.IntInput.from_param(
                self.param.finetune_epochs,
                label="Fine-tune epochs (structured pruning)",
                width=250,
            ),
            self.kept,
            keep_all,
            pn.Row(measure, cancel),
            pn.indicators.Progress(value=self.jobs.param.progress, max=100, width=200),
            pn.pane.Markdown(self.jobs.param.message, styles={"font-size": "12px"}),
            width=280,
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(
            self.controls(),
            pn.Column(
                self.comparison,
                self.tradeoff,
                self.diff,
                self.table,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """The table's rows: the `SHOWN` columns, text columns as text even when empty (an
    empty frame's columns are floats, and the browser keeps the first columns' types)."""
    shown = frame.rename(columns={"metric_value": "accuracy"}).reindex(columns=SHOWN)
    for column in ("variant", "backend", "host"):
        shown[column] = shown[column].astype(object)
    for column in ("latency_ms", "latency_p90_ms", "size_bytes", "accuracy"):
        shown[column] = pd.to_numeric(shown[column], errors="coerce").astype(float)
    return shown


def _kept_text(exclude: list[str], ratios: dict[str, float]) -> str:
    parts = [f"Kept in full precision: {', '.join(exclude)}"] if exclude else []
    if ratios:
        own = ", ".join(f"{k} {v:.0%}" for k, v in sorted(ratios.items()))
        parts.append(f"Own prune ratios: {own}")
    return "; ".join(parts) or (
        "Every layer transformed (tick layers on the Sensitivity page to keep some)"
    )


def _estimate_error(estimate: dict[str, Any], measured: actions.VariantResult) -> str:
    """``0.05 ms (measured 12% slower), accuracy 0.97 (−0.4 points)``."""
    latency = float(estimate["latency_ms"])
    off = measured.profile.latency.median / latency - 1 if latency > 0 else float("nan")
    text = f"{format_ms(latency)} (measured {abs(off):.0%} {'slower' if off > 0 else 'faster'})"
    guess, value = estimate.get("metric_value"), measured.metric_value
    if guess is not None and value is not None:
        text += f", accuracy {format_share(guess)} ({100 * (value - guess):+.1f} points)"
    return text
