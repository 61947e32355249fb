"""The notebook (HTML) and terminal views of results as tables: a `Profile`, and any result table.

The numbers come from `workbench.units` (re-exported here): times in s/ms/µs with 3
significant figures, FLOPs in MFLOP/GFLOP, bytes in KiB/MiB, shares in %, "—" for a
missing value. `format_cell` picks the unit from a column's name (``latency_ms``,
``size_bytes``, ``share``, ``speedup``...), so `frame_html` and `frame_text` show every
result table (comparisons, trade-offs, sensitivity) the same way.

This is formatting only: the key figure a notebook view shows between its summary and its
table is drawn by `workbench.viz` and reaches a view through `workbench.profiling.results`
(`figure_html`), so no result class imports drawing code. It sits in the profiling layer,
the lowest whose results show tables.

Example:
    >>> format_cell("latency_ms", 0.4867)
    '487 µs'
    >>> print(frame_text(comparison.table))
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from workbench.profiling.memory import PROCESS_RSS_LABEL, ProfileMemory
from workbench.profiling.results import figure_html
from workbench.units import (
    MISSING,
    column_kind,
    format_bytes,
    format_count,
    format_flops,
    format_ms,
    format_share,
    format_value,
    number,
)

if TYPE_CHECKING:
    import pandas as pd

    from workbench.profiling.profile import Profile

__all__ = [
    "MISSING",
    "format_bytes",
    "format_cell",
    "format_count",
    "format_flops",
    "format_ms",
    "format_share",
    "frame_html",
    "frame_text",
    "memory_rows",
    "profile_html",
    "summary_html",
]

STYLE = """<style>
.wb-profile table {border-collapse: collapse; margin: 4px 0 8px 0;}
.wb-profile th, .wb-profile td {padding: 2px 10px; height: 22px; line-height: 18px;
  white-space: nowrap; text-align: right; vertical-align: middle;}
.wb-profile th {border-bottom: 1px solid #999;}
.wb-profile td.text, .wb-profile th.text {text-align: left;}
.wb-profile td.fused {color: #888; font-style: italic; text-align: left;}
.wb-profile .noisy {color: #b35900;}
.wb-profile tr.bold td {font-weight: bold;}
</style>"""


def format_cell(column: str, value: Any, *, uncertain: bool = False) -> str:
    """One table cell as text, in the unit its column's kind implies (`column_kind`).

    Args:
        column: the column's name (``latency_ms``, ``size_bytes``, ``speedup``...).
        value: the cell.
        uncertain: the measurement behind the cell is noisy (prefixes ``~``).

    Returns:
        The text: a unit-bearing number, a count, "—" for a missing number, or the value's
        own text (strings, booleans).
    """
    kind = column_kind(column)
    if kind == "number" and number(value) is not None and float(value).is_integer():
        kind = "integer"  # a whole number in an unnamed column (a float after a NaN)
    return format_value(kind, value, uncertain=uncertain)


def _kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Each column's kind, from its name and then its values (`column_kind`)."""
    return {str(c): column_kind(str(c), list(frame[c])) for c in frame.columns}


def _cells(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Every cell as text; a row whose ``noisy`` column is true marks its numbers."""
    kinds = _kinds(frame)
    noisy = [bool(v) for v in frame["noisy"]] if "noisy" in frame else [False] * len(frame)
    return {
        str(c): [
            format_value(kinds[str(c)], v, uncertain=n and kinds[str(c)] != "text")
            for v, n in zip(frame[c], noisy, strict=True)
        ]
        for c in frame.columns
    }


def _header(column: str) -> str:
    """A column's name without the unit its cells now carry."""
    if column.endswith("_per_s"):  # a rate: its cells are bare counts
        return column.removesuffix("_per_s").replace("_", " ") + " /s"
    for suffix in ("_ms", "_s", "_bytes", "_mib"):
        if column.endswith(suffix):
            column = column.removesuffix(suffix)
            break
    return column.replace("_", " ")


def frame_text(frame: pd.DataFrame, index: bool = False, width: int | None = None) -> str:
    """A result table for a terminal: every number in its unit, "—" when missing, fitted
    to ``width`` columns: the longest text column wraps onto more lines instead of the
    whole table wrapping.

    Args:
        frame: the table.
        index: show the index as the first column.
        width: characters a line may take (default: the terminal's width).
    """
    import shutil

    shown = frame.reset_index() if index else frame
    width = width or shutil.get_terminal_size((120, 24)).columns
    cells = _cells(shown)
    kinds = _kinds(shown)
    headers = [_header(str(c)) for c in shown.columns]
    columns = [[h, *cells[str(c)]] for h, c in zip(headers, shown.columns, strict=True)]
    widths = [max(len(x) for x in col) for col in columns]
    texts = [i for i, c in enumerate(shown.columns) if kinds[str(c)] == "text"]
    # the widest text columns give up what the line lacks, down to their longest word
    for i in sorted(texts, key=lambda j: -widths[j]):
        excess = sum(widths) + 2 * (len(widths) - 1) - width
        if excess <= 0:
            break
        longest_word = max((len(w) for x in columns[i] for w in x.split()), default=1)
        widths[i] = max(min(widths[i], max(16, longest_word)), widths[i] - excess)
    right = [kinds[str(c)] != "text" for c in shown.columns]
    lines = []
    for row in range(len(shown) + 1):
        parts = [_wrapped(col[row], w) for col, w in zip(columns, widths, strict=True)]
        for k in range(max(len(p) for p in parts)):
            texts_k = [p[k] if k < len(p) else "" for p in parts]
            line = [
                t.rjust(w) if r else t.ljust(w)
                for t, w, r in zip(texts_k, widths, right, strict=True)
            ]
            lines.append("  ".join(line).rstrip())
    return "\n".join(lines)


def _wrapped(text: str, width: int) -> list[str]:
    import textwrap

    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [text]


def frame_html(frame: pd.DataFrame, bold: Sequence[bool] | None = None, index: bool = False) -> str:
    """A result table for a notebook: every number in its unit, "—" when missing.

    Args:
        frame: the table.
        bold: rows to show in bold (e.g. the Pareto front), one flag per row.
        index: show the index as the first column.

    Returns:
        An HTML ``<table>`` (style in `STYLE`; wrap it in ``<div class='wb-profile'>``).
    """
    shown = frame.reset_index() if index else frame
    columns = [str(c) for c in shown.columns]
    kinds, cells = _kinds(shown), _cells(shown)
    numeric = [kinds[c] != "text" for c in columns]
    head = "".join(
        f"<th{'' if num else ' class=text'}>{html.escape(_header(c))}</th>"
        for c, num in zip(columns, numeric, strict=True)
    )
    rows = [f"<tr>{head}</tr>"]
    flags = list(bold) if bold is not None else [False] * len(shown)
    for i, flag in enumerate(flags):
        row = "".join(
            f"<td{'' if num else ' class=text'}>{html.escape(cells[c][i])}</td>"
            for c, num in zip(columns, numeric, strict=True)
        )
        rows.append(f"<tr{' class=bold' if flag else ''}>{row}</tr>")
    return f"<table>{''.join(rows)}</table>"


def summary_html(title: str, facts: Sequence[tuple[str, str]], body: str = "") -> str:
    """The compact summary every result opens with: a title, then one row of key facts.

    Args:
        title: what the result is (escaped here).
        facts: ``(name, text)`` pairs, already formatted (escaped here).
        body: HTML to show after the summary (tables, notes), as is.
    """
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in facts)
    values = "".join(f"<td>{html.escape(text)}</td>" for _, text in facts)
    table = f"<table><tr>{head}</tr><tr>{values}</tr></table>" if facts else ""
    return f"{STYLE}<div class='wb-profile'><b>{html.escape(title)}</b>{table}{body}</div>"


# the per-layer columns a profile's view shows, in order: (column, header, formatter)
_SHOWN_LAYER_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("latency_ms", "latency", format_ms),
    ("share", "share", format_share),
    ("flops", "FLOPs", format_flops),
    ("bytes", "bytes moved", format_bytes),
    ("params_bytes", "parameters", format_bytes),
]


def memory_rows(memory: ProfileMemory, *, sources: bool = True) -> list[tuple[str, str]]:
    """``(label, text)`` rows every view shows: the model's peak (or why it is missing),
    the cost model's estimate, and the process's RSS, labelled as not the model.

    Args:
        memory: a profile's `ProfileMemory` (bytes).
        sources: say how the model's peak was measured (off for small cards).

    Example:
        >>> memory_rows(profile.memory)
        [('model peak', '1.51 MiB (torch.profiler memory events ...)'), ...]
    """
    rows: list[tuple[str, str]] = []
    if memory.model_peak_bytes is not None:
        text = format_bytes(memory.model_peak_bytes)
        source = memory.model_peak_source
        rows.append(("model peak", f"{text} ({source})" if sources and source else text))
    elif memory.model_memory_unavailable:
        rows.append(("model peak", f"unavailable ({memory.model_memory_unavailable})"))
    else:  # not measured (a profile without layers): shown missing, never guessed
        rows.append(("model peak", MISSING))
    if memory.estimate_peak_bytes is not None:
        rows.append(("estimated peak", format_bytes(memory.estimate_peak_bytes)))
    if memory.process_rss_bytes:
        rows.append((PROCESS_RSS_LABEL, format_bytes(memory.process_rss_bytes)))
    return rows


def profile_html(profile: Profile, top: int = 15) -> str:
    """The notebook view of a profile: headline numbers, its key figure (drawn by
    `workbench.viz.reprs.profile_svg`), then the slowest layers.

    Args:
        profile: the `Profile` to show.
        top: how many layers (the slowest first).

    Returns:
        An HTML fragment (with its own scoped style) for ``_repr_html_``.
    """
    lat = profile.latency
    verdict = f" <span class='noisy'>({html.escape(lat.verdict)})</span>" if lat.noisy else ""
    samples = f"{lat.n:,}{verdict}"
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
        figure_html(profile),
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
    columns = [c for c in _SHOWN_LAYER_COLUMNS if c[0] in layers]
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
