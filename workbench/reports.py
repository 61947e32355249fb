"""Shareable reports: one self-contained HTML file from a profile, several, or a sweep.

``wb.report(obj).save("report.html")`` writes a single file that opens offline: plotly.js
is inlined from the installed plotly package, styles are inline, nothing is fetched from
the network. A profile's report holds its environment, end-to-end statistics, cold
start, per-layer table and figures (bars, distribution, memory, roofline); several
profiles add the aligned comparison; a `TradeoffTable` adds its trade-off plot and table
with the Pareto front. ``workbench report MODEL_OR_RUN --out report.html`` does the same
from the command line (`workbench.cli.report`).

Example:
    >>> import workbench as wb
    >>> p = wb.profile(wb.samples.load("digits-cnn"), "onnxruntime", batch_size=32)
    >>> wb.report(p).save("digits-cnn.html")
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import workbench.viz as viz
from workbench.errors import InputError
from workbench.profiling.formatting import frame_html
from workbench.profiling.profile import Profile
from workbench.units import format_count, format_ms

__all__ = ["Report", "report", "report_html"]

#: the per-layer columns a report's table shows (a subset of `Profile.layers`' columns,
#: `workbench.profiling.table.LAYER_COLUMNS`)
REPORT_LAYER_COLUMNS = [
    "layer", "op_type", "latency_ms", "latency_p90_ms", "share", "flops", "intensity",
    "params_bytes", "activation_bytes", "fused_into", "note",
]  # fmt: skip
#: the trade-off columns a report's table shows
TRADEOFF_COLUMNS = [
    "variant", "backend", "device", "latency_ms", "latency_p90_ms", "speedup", "size_bytes",
    "metric_value", "delta", "pareto", "error",
]  # fmt: skip


@dataclass
class Report:
    """A report as titled sections of HTML and figures; `html` renders the one file.

    Attributes:
        title: the page's title.
        sections: ``(heading, parts)`` where each part is an HTML string or a plotly figure.
    """

    title: str
    sections: list[tuple[str, list[Any]]] = field(default_factory=list)

    def add(self, heading: str, *parts: Any) -> Report:
        """Append a section (HTML strings and plotly figures, in order); returns self."""
        self.sections.append((heading, list(parts)))
        return self

    def figures(self) -> list[Any]:
        """Every plotly figure in the report, in order."""
        return [p for _, parts in self.sections for p in parts if not isinstance(p, str)]

    def html(self) -> str:
        """The whole report as one HTML document (plotly.js and styles inline)."""
        from plotly.offline import get_plotlyjs

        body, count = [], 0
        for heading, parts in self.sections:
            body.append(f"<section><h2>{html.escape(heading)}</h2>")
            for part in parts:
                if isinstance(part, str):
                    body.append(part)
                    continue
                count += 1
                body.append(
                    part.to_html(
                        full_html=False,
                        include_plotlyjs=False,
                        div_id=f"figure-{count}",
                        config={"displaylogo": False, "responsive": True},
                    )
                )
            body.append("</section>")
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='meta'>workbench report, {created}</p>"
            + "".join(body)
            + "</body></html>"
        )

    def save(self, path: str | Path) -> Path:
        """Write the report to ``path`` (UTF-8) and return the path."""
        path = Path(path)
        path.write_text(self.html(), encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        headings = ", ".join(html.escape(h) for h, _ in self.sections)
        return f"<b>{html.escape(self.title)}</b>: {headings} (<code>.save(path)</code>)"


def report(obj: Any, *, title: str | None = None, ceilings: Any = None) -> Report:
    """A shareable report of a `Profile`, several profiles, or a `TradeoffTable`.

    Args:
        obj: a `Profile`; a sequence of profiles (the first is the baseline of the
            comparison); or a `TradeoffTable` (or a DataFrame of its rows).
        title: the report's title (default: what it is about).
        ceilings: measured machine ceilings for the roofline (`wb.machine_ceilings`).

    Returns:
        A `Report`; ``.save(path)`` writes the self-contained HTML file, ``.html()``
        returns it as a string. Nothing is measured and the input is not changed.

    Raises:
        InputError: ``obj`` is none of the above.

    Example:
        >>> wb.report([p_ort, p_torch]).save("compare.html")
    """
    if isinstance(obj, Profile):
        return _profile_report(Report(title or f"Profile — {obj.label}"), obj, ceilings)
    if isinstance(obj, Sequence) and obj and all(isinstance(p, Profile) for p in obj):
        out = Report(title or f"Comparison of {len(obj)} profiles")
        out.add(
            "Comparison",
            viz.op_type_breakdown(obj),
            viz.layer_comparison(obj, baseline=0),
            viz.latency_distribution(obj),
        )
        for p in obj:
            _profile_report(out, p, ceilings, prefix=f"{p.label}: ")
        return out
    if hasattr(obj, "df") or isinstance(obj, pd.DataFrame):
        return _tradeoff_report(Report(title or _tradeoff_title(obj)), obj)
    raise InputError(
        f"cannot report on a {type(obj).__name__}; give a Profile, a list of profiles "
        "or a TradeoffTable"
    )


def report_html(obj: Any, path: str | Path | None = None) -> str:
    """`report` of ``obj`` as one HTML document, also written to ``path`` when given.

    This is what ``profile.to_html()`` and ``table.to_html()`` return, and the file
    ``workbench report`` writes.

    Example:
        >>> text = report_html(p, "digits-cnn.html")
    """
    out = report(obj)
    text = out.html()
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _profile_report(out: Report, p: Profile, ceilings: Any, prefix: str = "") -> Report:
    out.add(f"{prefix}Environment", _environment(p))
    out.add(f"{prefix}End-to-end latency", _statistics(p), viz.latency_distribution(p))
    out.add(f"{prefix}Cold start", f"<p>{html.escape(p.cold_start_text())}</p>")
    if p.layers is not None and not p.layers.empty:
        out.add(
            f"{prefix}Per layer",
            viz.layer_latency(p, top=None),
            viz.time_share(p),
            _table(p.layers, REPORT_LAYER_COLUMNS),
        )
        # without ceilings given, the ones measured with the profile (if any) draw the roofs
        out.add(f"{prefix}Memory and roofline", viz.memory(p), viz.roofline(p, ceilings))
    else:
        out.add(f"{prefix}Per layer", "<p>Profiled end to end only (layers=False).</p>")
    if p.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in p.notes)
        out.add(f"{prefix}Notes", f"<ul>{items}</ul>")
    return out


def _tradeoff_title(table: Any) -> str:
    sweep = getattr(table, "sweep_id", "")
    return f"Trade-offs{f' — sweep {sweep}' if sweep else ''}"


def _tradeoff_report(out: Report, table: Any) -> Report:
    if isinstance(table, pd.DataFrame):
        frame, meta = table, {}
        names = table["metric"].dropna() if "metric_value" in table else pd.Series()
        figure = viz.tradeoff(table, metric_name=str(names.iloc[0]) if len(names) else None)
    else:
        frame, meta, figure = table.df, dict(table.meta or {}), viz.tradeoff(table)
    if meta:
        out.add("Sweep settings", _key_values(meta))
    out.add(
        "Trade-offs (bold: Pareto front)",
        figure,
        _table(frame, TRADEOFF_COLUMNS, bold="pareto"),
    )
    return out


def _environment(p: Profile) -> str:
    settings = {
        "model": p.model,
        "recipe": p.recipe_name,
        "backend": p.backend,
        "device": p.device,
        "batch size": p.batch_size,
        "run id": p.run_id,
        "created": p.created_at,
    }
    environment = {k: _flat(v) for k, v in p.environment.items() if k != "machine_ceilings"}
    roof = p.environment.get("machine_ceilings") or {}
    if roof.get("peak_flops_per_s") and roof.get("bandwidth_bytes_per_s"):
        environment["measured ceilings"] = (
            f"{roof['peak_flops_per_s'] / 1e9:.3g} GFLOP/s, "
            f"{roof['bandwidth_bytes_per_s'] / 1e9:.3g} GB/s ({roof.get('method', 'measured')})"
        )
    return _key_values({**settings, **environment})


def _flat(value: Any) -> Any:
    """A mapping as ``key value, …`` (nested mappings left out), lists comma-joined."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if not isinstance(v, dict | list))
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    return value


def _statistics(p: Profile) -> str:
    lat = p.latency
    lo, hi = lat.median_ci
    rows = {
        "samples": f"{lat.n:,}{' (' + lat.verdict + ')' if lat.noisy else ''}",
        "median": f"{format_ms(lat.median)} (95% CI {format_ms(lo)} – {format_ms(hi)})",
        "mean ± std": f"{format_ms(lat.mean)} ± {format_ms(lat.std)}",
        "p90 / p99": f"{format_ms(lat.p90)} / {format_ms(lat.p99)}",
        "min / max": f"{format_ms(lat.min)} / {format_ms(lat.max)}",
        "throughput": f"{format_count(p.throughput)} samples/s",
        "warm-up calls": str(len(lat.warmup_ms)),
    }
    return _key_values(rows)


def _key_values(values: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in values.items()
        if v is not None and v != ""
    )
    return f"<table class='kv'>{rows}</table>"


def _table(frame: pd.DataFrame, columns: Sequence[str], bold: str | None = None) -> str:
    """An HTML table of ``columns`` of ``frame``, every number in its unit (the notebook
    views' formatting layer); rows whose ``bold`` column is true in bold."""
    shown = frame[[c for c in columns if c in frame]]
    flags = None if bold is None else [bool(v) for v in frame[bold].fillna(False)]
    return frame_html(shown, bold=flags).replace("<table>", "<table class='data'>", 1)


_CSS = """
body{font-family:Helvetica,Arial,sans-serif;color:#2A3F5F;margin:24px auto;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#777;font-size:12px}table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #e3e3e3;padding:3px 8px;text-align:left}
table.kv th{background:#f6f8fa;width:180px}table.data thead th{background:#f6f8fa}
tr.bold td{font-weight:bold}section{margin-bottom:28px}
"""
