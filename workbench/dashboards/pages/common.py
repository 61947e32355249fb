"""Small building blocks shared by the pages: figure panes, tables, headline cards."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import panel as pn

from workbench.profiling.formatting import memory_rows
from workbench.profiling.profile import UNATTRIBUTED, Profile
from workbench.units import MISSING, UNCERTAIN, column_kind, js_formatter

#: rows per page of every table (big unpaginated tables freeze notebooks)
PAGE_SIZE = 50


def figure_pane(figure: Any, height: int | None = None) -> pn.pane.Plotly:
    """A Plotly pane that stretches to the page width."""
    options = {"height": height} if height else {}
    return pn.pane.Plotly(
        figure, sizing_mode="stretch_width", config={"displaylogo": False}, **options
    )


def cell_formatters(frame: pd.DataFrame) -> tuple[dict[str, Any], dict[str, str]]:
    """Each column's Tabulator formatter and alignment, from its kind (`column_kind`):
    the browser renders a cell exactly as the notebook and terminal views do (units,
    separators, % for shares, "—" when missing, ``~`` before the numbers of a row whose
    ``noisy`` column is true), while the cell keeps its number, so sorting stays numeric."""
    from panel.io.model import JSCode

    formatters: dict[str, Any] = {}
    align: dict[str, str] = {}
    for column in frame.columns:
        kind = column_kind(str(column), list(frame[column]))
        text = (
            f"var v=cell.getValue(),t=String(({js_formatter(kind)})(v))"
            ".replace(/&/g,'&amp;').replace(/</g,'&lt;').replace(/>/g,'&gt;');"
        )
        if kind != "text":  # a row flagged noisy (a boolean `noisy` column) marks its numbers
            text += (
                "var d=cell.getRow().getData();"
                f"if(d&&d.noisy===true&&t!=='{MISSING}')t='{UNCERTAIN}'+t;"
            )
        if kind == "text" and str(column) in _wrapped(frame):  # long words wrap in place
            text += "t='<div style=\"white-space:normal;word-break:break-word\">'+t+'</div>';"
        if kind == "share":  # a share also reads as a bar behind its percentage
            text += (
                "var w=Math.max(0,Math.min(100,100*Number(v)))||0;"
                "t='<div style=\"background:linear-gradient(to right,#C6DBEF '+w+'%,"
                "transparent '+w+'%)\">'+t+'</div>';"
            )
        formatters[str(column)] = JSCode(f"function(cell){{{text}return t;}}")
        align[str(column)] = "left" if kind == "text" else "right"
    return formatters, align


#: a text column whose longest cell is longer than this wraps in a fixed width
WRAP_CHARS = 40
#: the width (px) a long text column wraps in: three fit beside a few short ones
WRAP_PX = 200


def _wrapped(frame: pd.DataFrame) -> list[str]:
    """Text columns long enough to push the table past the screen: they wrap instead."""
    return [
        str(c)
        for c in frame.columns
        if max((len(v) for v in frame[c] if isinstance(v, str)), default=0) > WRAP_CHARS
    ]


def table(frame: pd.DataFrame, **options: Any) -> pn.widgets.Tabulator:
    """A paginated, read-only Tabulator (~50 rows a page), each column in its unit
    (`cell_formatters`); long text wraps instead of widening the table."""
    formatters, align = cell_formatters(frame)
    wrapped = _wrapped(frame)
    defaults = {
        "pagination": "remote",
        "page_size": PAGE_SIZE,
        "show_index": False,
        "disabled": True,
        "sizing_mode": "stretch_width",
        "layout": "fit_data_stretch",
        "formatters": formatters,
        "text_align": align,
        # long text columns wrap in a fixed width (a share of the table's width would be
        # taken from a tab not yet laid out, and come out a sliver)
        "widths": dict.fromkeys(wrapped, WRAP_PX),
    }
    given = options.pop("formatters", {})
    return pn.widgets.Tabulator(
        frame, **{**defaults, **options, "formatters": {**formatters, **given}}
    )


class TableSlot:
    """A place for a Tabulator whose columns can change.

    Tabulator (in the browser) cannot reset the columns of a table it has not drawn yet
    (in a tab not shown, or one just made visible), so new columns swap in a fresh table
    instead of editing the old one; same columns just update the rows.

    Args:
        frame: the first rows.
        on_selection: called with the `selection` event of whichever table is current.
        **options: `table` options.
    """

    def __init__(self, frame: pd.DataFrame, on_selection: Any = None, **options: Any) -> None:
        self._options, self._on_selection = options, on_selection
        self.table = self._new(frame)
        self.layout = pn.Column(self.table, sizing_mode="stretch_width")

    def _new(self, frame: pd.DataFrame) -> pn.widgets.Tabulator:
        widget = table(frame, **self._options)
        if self._on_selection is not None:
            widget.param.watch(self._on_selection, "selection")
        return widget

    def update(self, frame: pd.DataFrame) -> None:
        """Show ``frame``: in place when the columns are the same, else in a new table."""
        if list(frame.columns) == list(self.table.value.columns):
            self.table.value = frame
            return
        self.table = self._new(frame)
        self.layout[:] = [self.table]


def headline(profile: Profile | None) -> str:
    """HTML cards with a profile's headline numbers (p50, p99, throughput, memory …)."""
    if profile is None:
        return "<p><i>No profile yet: pick a model, backend, device and batch size.</i></p>"
    lat = profile.latency
    cards = [
        ("p50", f"{lat.median:.4g} ms"),
        ("p90", f"{lat.p90:.4g} ms"),
        ("p99", f"{lat.p99:.4g} ms"),
        ("throughput", f"{profile.throughput:,.0f} /s"),
        # the verdict's words are in the notes below; a card keeps its width whatever the load
        ("samples", f"{lat.n}{' · noisy' if lat.noisy else ''}"),
    ]
    cards += memory_rows(profile.memory, sources=False)
    layers = profile.layers
    if not layers.empty and "latency_ms" in layers:
        if "params_bytes" in layers:
            cards.append(
                ("parameters", f"{layers['params_bytes'].fillna(0).sum() / 2**20:.3g} MiB")
            )
        if "flops" in layers:
            cards.append(("GFLOP", f"{layers['flops'].fillna(0).sum() / 1e9:.3g}"))
        cards.append(("layers", f"{_attributed_ms(layers):.4g} ms"))
    body = "".join(
        f"<div class='wb-card'><div class='wb-k'>{html.escape(k)}</div>"
        f"<div class='wb-v'>{html.escape(v)}</div></div>"
        for k, v in cards
    )
    title = f"<div class='wb-title'>{html.escape(profile.label)}</div>"
    return f"{_CSS}{title}<div class='wb-cards'>{body}</div>{_gap_note(profile)}"


def _gap_note(profile: Profile) -> str:
    layers = profile.layers
    if layers.empty or "latency_ms" not in layers:
        return ""
    total, e2e = _attributed_ms(layers), profile.latency.median
    return (
        f"<p class='wb-note'>The layers sum to {total:.4g} ms against {e2e:.4g} ms end to end: "
        "per-layer times come from a separate, instrumented pass (its overhead, and fusion "
        f"across layers, make the two differ); the <code>{UNATTRIBUTED}</code> row holds the "
        "difference (negative when instrumentation added time).</p>"
    )


def _attributed_ms(layers: pd.DataFrame) -> float:
    """Summed median latency of the real layers (the ``(unattributed)`` row left out)."""
    return float(layers.loc[layers["layer"] != UNATTRIBUTED, "latency_ms"].sum())


def notes(profile: Profile | None) -> str:
    """The profile's notes (what is missing or approximate), as a list."""
    if profile is None or not profile.notes:
        return ""
    return "".join(f"<li>{html.escape(n)}</li>" for n in profile.notes)


_CSS = """<style>
.wb-cards{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0}
.wb-card{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:90px}
.wb-k{font-size:11px;color:#666;text-transform:uppercase}.wb-v{font-size:18px;font-weight:600}
.wb-title{font-weight:600;margin-bottom:4px}.wb-note{font-size:12px;color:#555}
</style>"""
