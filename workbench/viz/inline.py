"""Small inline figures for the notebook views of results: self-contained SVG from Python.

A result's ``_repr_html_`` shows its key figure between the compact summary and the
table (`workbench.viz.reprs` picks the figure of each result class). The figures are
plain SVG text: no JavaScript, no network, no plotting library, so a notebook works
offline, renders on GitHub and nbviewer and in exported HTML, and stays small (a few KB
per figure). They share the plotly figures' style (`workbench.viz.style`: palette, ink,
font); every text is escaped and every number is written in its unit
(`workbench.units`). The interactive figures are the plotly ones (`workbench.viz`);
these only give the shape at a glance.

Example:
    >>> svg = bars_svg([("", [Bar("conv1", 1.23), Bar("fc", 0.41)])], "latency")
    >>> svg.count("class='bar'")
    2
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from workbench.units import format_ms, number
from workbench.viz.style import FONT_FAMILY, INK, MUTED, PALETTE

__all__ = ["Bar", "Point", "bars_svg", "colors_for", "scatter_svg"]

# a notch under the plotly figures' 12 px: these sit inline among a table's rows
_FONT = f"font-family:{FONT_FAMILY};font-size:11px"
_ROW = 18  # px per bar
_LABEL_CHARS = 28  # longer labels are cut (the full text is the tooltip)


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a value with an optional range drawn as a whisker.

    Attributes:
        label: what the bar is (a layer, a runtime).
        value: the bar's length in the figure's unit; None draws no bar ("—").
        low: the range's lower end, or None when unknown.
        high: the range's upper end, or None when unknown.
        color: the fill colour.
        note: extra text for the tooltip.
    """

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    color: str = PALETTE[0]
    note: str = ""


@dataclass(frozen=True)
class Point:
    """One point of a scatter plot; ``highlight`` marks it (e.g. the Pareto front)."""

    x: float
    y: float
    label: str
    highlight: bool = False


def colors_for(keys: Iterable[str]) -> dict[str, str]:
    """A colour per distinct key, in first-seen order from `PALETTE` (cycling)."""
    colors: dict[str, str] = {}
    for key in keys:
        if key not in colors:
            colors[key] = PALETTE[len(colors) % len(PALETTE)]
    return colors


def _f(value: float) -> str:
    """A coordinate: one decimal is finer than a pixel."""
    return f"{value:.1f}"


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = INK) -> str:
    return (
        f"<text x='{_f(x)}' y='{_f(y)}' text-anchor='{anchor}' fill='{fill}' "
        f"dominant-baseline='middle'>{html.escape(text)}</text>"
    )


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _svg(width: float, height: float, title: str, body: Iterable[str]) -> str:
    # no xmlns: inline SVG in HTML needs none, and the view must hold no URL at all
    return (
        f"<svg width='{_f(width)}' height='{_f(height)}' role='img' "
        f"aria-label='{html.escape(title)}' style='{_FONT};display:block;margin:4px 0'>"
        f"<title>{html.escape(title)}</title>{''.join(body)}</svg>"
    )


def _legend(
    y: float, x0: float, width: float, keys: Sequence[tuple[str, str]]
) -> tuple[list[str], float]:
    """Colour swatches with their names from ``(x0, y)``, wrapped at ``width``; returns
    the parts and the last line's ``y``."""
    parts, x = [], x0
    for name, color in keys:
        step = 24 + 6.5 * len(name)
        if x > x0 and x + step > width:
            x, y = x0, y + 16
        parts.append(
            f"<rect x='{_f(x)}' y='{_f(y - 5)}' width='10' height='10' fill='{color}' "
            f"stroke='{MUTED}' stroke-width='0.5'/>"
        )
        parts.append(_text(x + 14, y, name))
        x += step
    return parts, y


def bars_svg(
    groups: Sequence[tuple[str, Sequence[Bar]]],
    axis: str,
    fmt: Callable[[float], str] = format_ms,
    legend: Sequence[tuple[str, str]] = (),
    width: float = 560,
) -> str:
    """Horizontal bars, in groups with a scale each (small multiples), as inline SVG.

    Args:
        groups: ``(title, bars)`` pairs; an empty title draws no header. Each group is
            scaled to its own largest value or range end, from 0.
        axis: what the bars measure, shown under each group's scale (escaped here).
        fmt: writes a value in its unit (default milliseconds as ms/µs/s).
        legend: ``(name, colour)`` pairs drawn under the figure.
        width: the figure's width in px.

    Returns:
        An ``<svg>`` element (empty string when no group has a bar); each drawn bar is a
        ``<rect class='bar'>`` with its label and value as tooltip.
    """
    if not any(b.value is not None or b.high is not None for _, bars in groups for b in bars):
        return ""
    left, right = 8 + 6 * _LABEL_CHARS, width - 80  # the bar area, after the labels
    parts: list[str] = []
    y = 4.0
    for title, bars in groups:
        if title:
            parts.append(f"<g font-weight='bold'>{_text(4, y + 8, title)}</g>")
            y += 18
        ends = [number(v) for b in bars for v in (b.value, b.high)]
        scale = max((v for v in ends if v is not None), default=0.0) or 1.0
        span = right - left
        for bar in bars:
            parts += _bar(bar, left, y, span / scale, fmt)
            y += _ROW
        parts.append(
            f"<line x1='{_f(left)}' x2='{_f(right)}' y1='{_f(y + 2)}' y2='{_f(y + 2)}' "
            f"stroke='{MUTED}'/>"
        )
        parts.append(_text(left, y + 11, "0", "middle", MUTED))
        parts.append(_text(right, y + 11, fmt(scale), "middle", MUTED))
        y += 20
    parts.append(_text((left + right) / 2, y + 4, axis, "middle"))
    y += 12
    if legend:
        keys, y = _legend(y + 8, 4, width, legend)
        parts += keys
        y += 8
    return _svg(width, y + 4, axis, parts)


def _bar(bar: Bar, left: float, y: float, px: float, fmt: Callable[[float], str]) -> list[str]:
    """One bar's label, rect, whisker and value text at row ``y`` (``px`` per unit)."""
    mid = y + _ROW / 2
    value, low, high = number(bar.value), number(bar.low), number(bar.high)
    tip = f"{bar.label}: {fmt(value) if value is not None else '—'}"
    tip += f" (range {fmt(low)} – {fmt(high)})" if low is not None and high is not None else ""
    tip += f"; {bar.note}" if bar.note else ""
    parts = [f"<g><title>{html.escape(tip)}</title>"]
    parts.append(_text(left - 6, mid, _short(bar.label), "end"))
    end = left
    if value is not None:
        end = left + value * px
        parts.append(
            f"<rect class='bar' x='{_f(left)}' y='{_f(y + 3)}' width='{_f(max(end - left, 1))}' "
            f"height='{_ROW - 6}' fill='{bar.color}'/>"
        )
    if low is not None and high is not None:
        x1, x2 = left + low * px, left + high * px
        parts.append(
            f"<path d='M{_f(x1)} {_f(mid)}H{_f(x2)}M{_f(x1)} {_f(mid - 4)}V{_f(mid + 4)}"
            f"M{_f(x2)} {_f(mid - 4)}V{_f(mid + 4)}' stroke='{INK}' fill='none'/>"
        )
        end = max(end, x2)
    parts.append(_text(end + 5, mid, fmt(value) if value is not None else "—"))
    parts.append("</g>")
    return parts


def scatter_svg(
    points: Sequence[Point],
    x_axis: str,
    y_axis: str,
    x_fmt: Callable[[float], str] = format_ms,
    y_fmt: Callable[[float], str] = str,
    highlight: str = "highlighted",
    width: float = 480,
    height: float = 260,
) -> str:
    """A scatter plot with some points highlighted and joined (a front), as inline SVG.

    Args:
        points: the points; those with a missing coordinate are left out.
        x_axis: the x axis' title (escaped here); its ticks are written by ``x_fmt``.
        y_axis: the y axis' title; its ticks are written by ``y_fmt``.
        x_fmt: writes an x value in its unit (default milliseconds).
        y_fmt: writes a y value in its unit.
        highlight: the legend's name for the highlighted points.
        width: the figure's width in px.
        height: the figure's height in px.

    Returns:
        An ``<svg>`` element (empty string when no point has both coordinates); each point
        is a ``<circle class='pt'>``, highlighted ones ``class='pt front'``.
    """
    shown = [p for p in points if number(p.x) is not None and number(p.y) is not None]
    if not shown:
        return ""
    xs, ys = [float(p.x) for p in shown], [float(p.y) for p in shown]
    x_lo, x_hi = _padded(min(xs), max(xs))
    y_lo, y_hi = _padded(min(ys), max(ys), fraction=all(0.0 <= y <= 1.0 for y in ys))
    y_ticks = [y_lo + (y_hi - y_lo) * i / 2 for i in range(3)]  # the ends and the middle
    # the y ticks' text sets the left margin, so a long one never runs into the axis title
    left = 30 + 6.5 * max(len(y_fmt(y)) for y in y_ticks)
    right, top, bottom = width - 36, 10.0, height - 48  # room for the last x tick's text

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    parts = [
        f"<path d='M{_f(left)} {_f(top)}V{_f(bottom)}H{_f(right)}' stroke='{MUTED}' fill='none'/>"
    ]
    for i, y in enumerate(y_ticks):
        x = x_lo + (x_hi - x_lo) * i / 2
        parts.append(_text(px(x), bottom + 10, x_fmt(x), "middle", MUTED))
        parts.append(_text(left - 4, py(y), y_fmt(y), "end", MUTED))
    parts.append(_text((left + right) / 2, bottom + 26, x_axis, "middle"))
    parts.append(
        f"<text transform='translate(12 {_f((top + bottom) / 2)}) rotate(-90)' "
        f"text-anchor='middle' fill='{INK}'>{html.escape(y_axis)}</text>"
    )
    front = sorted((p for p in shown if p.highlight), key=lambda p: float(p.x))
    if len(front) > 1:
        line = " ".join(f"{_f(px(float(p.x)))},{_f(py(float(p.y)))}" for p in front)
        parts.append(f"<polyline points='{line}' stroke='{PALETTE[3]}' fill='none'/>")
    for p in sorted(shown, key=lambda p: p.highlight):  # highlighted drawn on top
        tip = html.escape(f"{p.label}: {x_fmt(float(p.x))}, {y_fmt(float(p.y))}")
        style = (
            f"class='pt front' r='5' fill='{PALETTE[3]}'"
            if p.highlight
            else f"class='pt' r='4' fill='white' stroke='{PALETTE[0]}'"
        )
        parts.append(
            f"<circle {style} cx='{_f(px(float(p.x)))}' cy='{_f(py(float(p.y)))}'>"
            f"<title>{tip}</title></circle>"
        )
    parts += _legend(height - 8, left, width, [(highlight, PALETTE[3]), ("other", "white")])[0]
    return _svg(width, height, f"{y_axis} vs {x_axis}", parts)


def _padded(lo: float, hi: float, fraction: bool = False) -> tuple[float, float]:
    """An axis range around ``[lo, hi]`` with a margin, never empty, never below 0 for
    data that is not (latencies); a ``fraction`` (accuracy: every value in [0, 1]) gets a
    margin of at least a point and never runs past 1 (100%)."""
    if fraction:
        pad = max((hi - lo) * 0.08, 0.01)
        return max(lo - pad, 0.0), min(hi + pad, 1.0)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    return (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad
