"""The Generate page's trade-off section: quantized variants of the language model, each
on the runtimes it runs on, measured by `wb.lm_sweep` into the results store (a rerun of
the same sweep shows the stored points at once), drawn by `viz.lm_tradeoff_figure`, with
why each variant is not faster (`wb.why_not_faster`: per phase and per layer).

A random-weight model shows speed only: its KL column reads "unavailable: random
weights" and its points sit in the figure's speed-only strip.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

import workbench as wb
from workbench import viz
from workbench.dashboards.actions import measuring
from workbench.dashboards.jobs import Jobs
from workbench.dashboards.pages.common import TableSlot, figure_pane
from workbench.evaluation.lm_sweep import DEFAULT_VARIANTS
from workbench.evaluation.lm_why import LAYER_COLUMNS
from workbench.evaluation.sweep import BASELINE, TradeoffTable
from workbench.progress import CancelToken, ProgressCallback

#: held-out windows of each variant's KL (64 in the docs' tables; fewer keep the page quick)
WINDOWS = 32
#: the trade-off table's columns as shown
ROW_COLUMNS = [
    "variant", "backend", "decode_tokens_per_s", "tpot_ms", "ttft_ms", "memory_bytes",
    "size_bytes", "kl", "top1_agreement", "speedup", "pareto", "why", "error",
]  # fmt: skip


def variant_options() -> tuple[list[str], dict[str, str]]:
    """(the variants offered: the baseline then every method that runs here, why the
    others do not)."""
    why = wb.lm_methods()
    offered = [BASELINE, *(name for name, reason in why.items() if reason is None)]
    return offered, {name: reason for name, reason in why.items() if reason is not None}


def kl_text(row: dict[str, Any]) -> str:
    """A row's KL as shown: the value with its interval, "0 (the reference)" for the
    baseline, else "unavailable: <why>"."""
    value = row.get("metric_value")
    if row.get("variant") == BASELINE and value == 0:
        return "0 (the reference)"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        reason = row.get("accuracy_unavailable")
        return f"unavailable: {reason}" if isinstance(reason, str) and reason else "—"
    low, high = row.get("kl_ci_low"), row.get("kl_ci_high")
    if isinstance(low, float) and isinstance(high, float) and not math.isnan(low):
        return f"{value:.3g} [{low:.3g}, {high:.3g}]"
    return f"{value:.3g}"


def tradeoff_rows(table: TradeoffTable | None) -> pd.DataFrame:
    """The table's rows in the shown columns (`ROW_COLUMNS`), fastest decode first."""
    if table is None or table.df.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    df = table.df
    records = df.to_dict(orient="records")
    shown = pd.DataFrame(
        {
            "variant": df["variant"],
            "backend": df["backend"],
            "decode_tokens_per_s": df["throughput_per_s"],
            "tpot_ms": df["latency_ms"],
            "ttft_ms": df.get("ttft_ms"),
            "memory_bytes": df.get("memory_bytes"),
            "size_bytes": df["size_bytes"],
            "kl": [kl_text(r) for r in records],
            "top1_agreement": df.get("top1_agreement"),
            "speedup": df["speedup"],
            "pareto": df["pareto"].fillna(False).astype(bool),
            "why": [_short_why(r) for r in records],
            "error": df["error"],
        }
    )
    return shown.sort_values("decode_tokens_per_s", ascending=False, ignore_index=True)


def _short_why(row: dict[str, Any]) -> str:
    why = row.get("why")
    if not isinstance(why, dict):
        return ""
    kinds = [f"{r['phase']} {r['kind']}" for r in why.get("reasons", ())]
    return ", ".join(dict.fromkeys(kinds))


def row_label(row: dict[str, Any]) -> str:
    """``"int4(block 32, acc 4) on onnxruntime"``."""
    return f"{row['variant']} on {row['backend']}"


def why_html(row: dict[str, Any] | None) -> str:
    """The why-not report of one row: its verdict, then each reason with its phase and kind."""
    if row is None:
        return "<p class='wb-note'>Measure the trade-off to see why each variant is not faster.</p>"
    why = row.get("why")
    if not isinstance(why, dict):
        label = html.escape(row_label(row))
        return f"<p class='wb-note'>{label}: no why-not report (the baseline).</p>"
    from workbench.evaluation.lm_why import WhyNotFaster

    report = WhyNotFaster.from_dict(why)
    items = (
        "".join(
            f"<li><b>{html.escape(r.phase)} · {html.escape(r.kind)}</b>: {html.escape(r.text)}</li>"
            for r in report.reasons
        )
        or "<li>nothing holds it back that the measurements show</li>"
    )
    return (
        f"<p><b>Why is {html.escape(row_label(row))} not faster?</b> "
        f"{html.escape(report.verdict())}</p><ul>{items}</ul>"
    )


def why_layer_rows(row: dict[str, Any] | None) -> pd.DataFrame:
    """The per-layer part of a row's why-not report (`LAYER_COLUMNS`)."""
    why = row.get("why") if row is not None else None
    layers = why.get("layers") if isinstance(why, dict) else None
    return pd.DataFrame(layers or [], columns=LAYER_COLUMNS)


class LmTradeoffSection(Viewer):
    """Variants x runtimes of the Generate page's model: decode speed against KL.

    Args:
        page: the Generate page (its model, prompt, output length, runs, per-layer and
            roofline settings are the sweep's).
        jobs: the page's worker.
        store: the results store the sweep is kept in (None: the default store).
        load: the page's model loader (a name to a language model, cached).
        encode: the page's prompt encoder (``encode(prompt, tokenizer)`` to token ids).

    Example:
        >>> section = page.tradeoff_section; section.variants = ["baseline", "int8-dynamic"]
        >>> section.measure(); page.jobs.wait(); section.table.df
    """

    variants = param.ListSelector(default=[], objects=[], doc="variants to measure")
    backends = param.ListSelector(default=[], objects=[], doc="runtimes to measure them on")
    table = param.ClassSelector(class_=TradeoffTable, default=None, doc="the last trade-off")
    why_for = param.Selector(default=None, objects=[], doc="the row whose why-not is shown")

    def __init__(
        self,
        page: Any,
        jobs: Jobs,
        store: Any,
        load: Callable[[str], Any],
        encode: Callable[[str, Any], list[int]],
        **params: Any,
    ) -> None:
        from workbench.backends.base import generation_backends

        super().__init__(**params)
        self.page, self.jobs, self.store = page, jobs, store
        self._load, self._encode = load, encode
        offered, self.unavailable = variant_options()
        self.param.variants.objects = offered
        self.variants = self.variants or [v for v in DEFAULT_VARIANTS if v in offered]
        runtimes = generation_backends() or ["torch"]
        self.param.backends.objects = runtimes
        self.backends = self.backends or [b for b in ("torch", "onnxruntime") if b in runtimes]
        self.figure = figure_pane(
            viz.empty_figure("Measure the trade-off to draw KL against speed.")
        )
        self.rows_slot = TableSlot(tradeoff_rows(None), height=260)
        self.why = pn.pane.HTML(why_html(None), sizing_mode="stretch_width")
        self.why_slot = TableSlot(why_layer_rows(None), height=220)
        self.notes = pn.pane.HTML(sizing_mode="stretch_width")
        self.param.watch(self._show, "table")
        self.param.watch(self._show_why, "why_for")

    def measure(self, *_: Any) -> None:
        """Measure (or resume) the sweep of the picked variants on the picked runtimes."""
        page, store, load, encode = self.page, self.store, self._load, self._encode
        name, choice, prompt = page.model_name, page.choice, page.prompt
        variants, backends = list(self.variants), list(self.backends)
        settings = {
            "output_length": max(2, page.output_length),
            "runs": page.runs,
            "layers": page.layers,
            "roofline": page.roofline,
            "windows": WINDOWS,
        }

        def work(progress: ProgressCallback, cancel: CancelToken) -> TradeoffTable:
            length = len(encode(prompt, choice.tokenizer))
            progress(0.0, f"loading {name}")
            model = load(name)
            with measuring(cancel, progress):
                return wb.lm_sweep(
                    model,
                    variants,
                    backends,
                    name=name,
                    prompt_length=length,
                    store=store,
                    progress=progress,
                    cancel=cancel,
                    **settings,
                )

        self.jobs.submit(
            f"trade-off of {name}: {len(variants)} variants",
            work,
            lambda t: setattr(self, "table", t),
        )

    def _rows(self) -> list[dict[str, Any]]:
        if self.table is None:
            return []
        return [r for r in self.table.df.to_dict(orient="records") if r.get("error") is None]

    def _show(self, *_: Any) -> None:
        table = self.table
        if table is None:
            return
        self.figure.object = viz.lm_tradeoff_figure(table)
        self.rows_slot.update(tradeoff_rows(table))
        notes = list(table.notes) + [
            f"not offered here: {why}" for why in self.unavailable.values()
        ]
        self.notes.object = "".join(f"<div class='wb-note'>{html.escape(n)}</div>" for n in notes)
        labels = [row_label(r) for r in self._rows() if r["variant"] != BASELINE]
        self.param.why_for.objects = labels
        if self.why_for not in labels:
            self.why_for = labels[0] if labels else None
        else:
            self._show_why()

    def _show_why(self, *_: Any) -> None:
        row = next((r for r in self._rows() if row_label(r) == self.why_for), None)
        self.why.object = why_html(row)
        self.why_slot.update(why_layer_rows(row))

    def __panel__(self) -> pn.viewable.Viewable:
        run = pn.widgets.Button(label="Measure trade-off", color="primary", width=160)
        run.on_click(self.measure)
        return pn.Column(
            pn.pane.Markdown(
                "#### Variants: decode speed against KL\n"
                "Each variant on each runtime it runs on, with the page's prompt length, "
                "output length, timed runs and settings; stored as it is measured, so a "
                "rerun shows the stored points. Random weights: speed only.",
                margin=(10, 10, 0, 10),
            ),
            pn.FlexBox(
                pn.widgets.MultiChoice.from_param(self.param.variants, label="Variants", width=420),
                pn.widgets.MultiChoice.from_param(self.param.backends, label="Runtimes", width=260),
                run,
            ),
            self.figure,
            self.rows_slot.layout,
            self.notes,
            pn.widgets.Select.from_param(
                self.param.why_for, label="Why is it not faster?", width=320
            ),
            self.why,
            self.why_slot.layout,
            sizing_mode="stretch_width",
        )
