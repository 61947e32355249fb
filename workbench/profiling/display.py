"""Readable numbers and the notebook (HTML) view of a `Profile`.

Units a person reads at a glance: times in s/ms/µs with 3 significant figures, FLOPs in
kFLOP/MFLOP/GFLOP, bytes in KiB/MiB/GiB, shares in %; a missing value shows as "—". The
formatters are plain functions so other reprs (comparisons, tables) can share them.

Example:
    >>> format_ms(0.4867)
    '487 µs'
    >>> format_flops(7.55e7)
    '75.5 MFLOP'
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from workbench.profiling.memory import PROCESS_RSS_LABEL

if TYPE_CHECKING:
    import pandas as pd

    from workbench.profiling.profile import Profile

__all__ = [
    "MISSING",
    "format_bytes",
    "format_count",
    "format_flops",
    "format_ms",
    "format_share",
    "memory_rows",
    "profile_html",
]

MISSING = "—"
STYLE = """<style>
.wb-profile table {border-collapse: collapse; margin: 4px 0 8px 0;}
.wb-profile th, .wb-profile td {padding: 2px 10px; height: 22px; line-height: 18px;
  white-space: nowrap; text-align: right; vertical-align: middle;}
.wb-profile th {border-bottom: 1px solid #999;}
.wb-profile td.text, .wb-profile th.text {text-align: left;}
.wb-profile td.fused {color: #888; font-style: italic; text-align: left;}
.wb-profile .noisy {color: #b35900;}
</style>"""


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None when missing (None, NaN, inf, not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _scaled(value: float, units: list[tuple[float, str]]) -> str:
    """3 significant figures in the largest unit that keeps the number at least 1."""
    scale, unit = units[0]
    for scale_i, unit_i in units:
        if abs(value) >= scale_i:
            scale, unit = scale_i, unit_i
    return f"{value / scale:.3g} {unit}"


def format_ms(value: Any) -> str:
    """A duration given in milliseconds: ``'7.55 ms'``, ``'487 µs'``, ``'1.2 s'``."""
    number = _number(value)
    if number is None:
        return MISSING
    if number == 0:
        return "0"
    return _scaled(number, [(1e-3, "µs"), (1.0, "ms"), (1e3, "s")])


def format_flops(value: Any) -> str:
    """A FLOP count: ``'75.5 MFLOP'``; zero shows as ``'0'``."""
    number = _number(value)
    if number is None:
        return MISSING
    if number == 0:
        return "0"
    return _scaled(
        number, [(1, "FLOP"), (1e3, "kFLOP"), (1e6, "MFLOP"), (1e9, "GFLOP"), (1e12, "TFLOP")]
    )


def format_bytes(value: Any) -> str:
    """A size in bytes, binary units: ``'12.5 KiB'``, ``'478 MiB'``."""
    number = _number(value)
    if number is None:
        return MISSING
    if number == 0:
        return "0"
    if abs(number) < 1024:
        return f"{number:.0f} B"
    return _scaled(number, [(2.0**10, "KiB"), (2.0**20, "MiB"), (2.0**30, "GiB"), (2.0**40, "TiB")])


def format_share(value: Any) -> str:
    """A fraction in [0, 1] as a percentage: ``'12.3%'``."""
    number = _number(value)
    return MISSING if number is None else f"{100 * number:.3g}%"


def format_count(value: Any) -> str:
    """A count or rate with thousands separators: ``'31,166'``."""
    number = _number(value)
    return MISSING if number is None else f"{number:,.0f}"


# per-layer columns shown, in order: (column, header, formatter)
LAYER_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("latency_ms", "latency", format_ms),
    ("share", "share", format_share),
    ("flops", "FLOPs", format_flops),
    ("bytes", "bytes moved", format_bytes),
    ("params_bytes", "parameters", format_bytes),
]


def memory_rows(memory: Mapping[str, Any], *, sources: bool = True) -> list[tuple[str, str]]:
    """``(label, text)`` rows every view shows: the model's peak (or why it is missing),
    the cost model's estimate, and the process's RSS, labelled as not the model.

    Args:
        memory: a `Profile.memory` mapping (bytes).
        sources: say how the model's peak was measured (off for small cards).

    Example:
        >>> memory_rows(profile.memory)
        [('model peak', '1.51 MiB (torch.profiler memory events ...)'), ...]
    """
    rows: list[tuple[str, str]] = []
    if memory.get("model_peak_bytes") is not None:
        text = format_bytes(memory["model_peak_bytes"])
        source = memory.get("model_peak_source")
        rows.append(("model peak", f"{text} ({source})" if sources and source else text))
    elif memory.get("model_memory_unavailable"):
        rows.append(("model peak", f"unavailable ({memory['model_memory_unavailable']})"))
    else:  # not measured (a profile without layers): shown missing, never guessed
        rows.append(("model peak", MISSING))
    if memory.get("estimate_peak_bytes") is not None:
        rows.append(("estimated peak", format_bytes(memory["estimate_peak_bytes"])))
    if memory.get("process_rss_bytes"):
        rows.append((PROCESS_RSS_LABEL, format_bytes(memory["process_rss_bytes"])))
    return rows


def profile_html(profile: Profile, top: int = 15) -> str:
    """The notebook view of a profile: headline numbers, then the slowest layers.

    Args:
        profile: the `Profile` to show.
        top: how many layers (the slowest first).

    Returns:
        An HTML fragment (with its own scoped style) for ``_repr_html_``.
    """
    lat = profile.latency
    samples = f"{lat.n:,}" + (" <span class='noisy'>(noisy)</span>" if lat.noisy else "")
    headline = [
        ("p50", format_ms(lat.median)),
        ("p90", format_ms(lat.p90)),
        ("p99", format_ms(lat.p99)),
        ("throughput", f"{format_count(profile.throughput)} /s"),
        ("samples", samples),
    ]
    headline += memory_rows(profile.memory)
    if profile.compile_s is not None:  # cold start, when this run measured it
        headline.append(("compile", format_ms(profile.compile_s * 1e3)))
        headline.append(("first run", format_ms(profile.first_inference_ms)))
    head = "".join(f"<th>{name}</th>" for name, _ in headline)
    values = "".join(f"<td>{value}</td>" for _, value in headline)
    parts = [
        STYLE,
        "<div class='wb-profile'>",
        f"<b>{html.escape(profile.label)}</b>",
        f"<table><tr>{head}</tr><tr>{values}</tr></table>",
    ]
    layers = profile.top_layers(top)
    if not layers.empty:
        method = html.escape(profile.layer_method or "instrumented")
        parts += [f"<b>Slowest layers</b> ({method})", _layer_table(layers)]
    if profile.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in profile.notes))
        parts.append("</ul>")
    parts.append("</div>")
    return "".join(parts)


def _layer_table(layers: pd.DataFrame) -> str:
    columns = [c for c in LAYER_COLUMNS if c[0] in layers]
    head = "<th class='text'>layer</th><th class='text'>op type</th>"
    head += "".join(f"<th>{header}</th>" for _, header, _ in columns)
    rows = [f"<tr>{head}</tr>"]
    for record in layers.to_dict(orient="records"):
        cells = [
            f"<td class='text'>{html.escape(str(record.get('layer', '')))}</td>",
            f"<td class='text'>{html.escape(str(record.get('op_type') or MISSING))}</td>",
        ]
        fused = record.get("fused_into")
        for name, _, fmt in columns:
            if name == "latency_ms" and isinstance(fused, str) and fused:
                cells.append(f"<td class='fused'>fused into {html.escape(fused)}</td>")
            else:
                cells.append(f"<td>{html.escape(fmt(record.get(name)))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>{''.join(rows)}</table>"
