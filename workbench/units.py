"""Readable numbers, shared by every result's notebook and terminal view.

Units a person reads at a glance: times in s/ms/µs with 3 significant figures, FLOPs in
kFLOP/MFLOP/GFLOP, bytes in KiB/MiB/GiB, shares in %, ratios as ``1.23×``; a missing
value (None, NaN) shows as "—". No formatter writes exponent notation (``7.55e+07``) or
long decimals (``0.486653``). The lowest layer, so `Model` can use it as well as the
profiling and evaluation results.

Example:
    >>> format_ms(0.4867)
    '487 µs'
    >>> format_flops(7.55e7)
    '75.5 MFLOP'
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MISSING",
    "format_bytes",
    "format_count",
    "format_db",
    "format_flops",
    "format_ms",
    "format_number",
    "format_ratio",
    "format_seconds",
    "format_share",
    "number",
]

MISSING = "—"


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None when missing (None, NaN, inf, not a number)."""
    if isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _scaled(value: Any, units: list[tuple[float, str]]) -> str:
    """3 significant figures in the largest unit that keeps the number at least 1;
    `MISSING` for no number, ``'0'`` for zero."""
    x = number(value)
    if x is None:
        return MISSING
    if x == 0:
        return "0"
    scale, unit = units[0]
    for scale_i, unit_i in units:
        if abs(x) >= scale_i:
            scale, unit = scale_i, unit_i
    return f"{format_number(x / scale)} {unit}"


def format_number(value: Any) -> str:
    """A plain number with 3 significant figures: ``'0.487'``, ``'12.3'``, ``'75,500'``."""
    x = number(value)
    if x is None:
        return MISSING
    if x == 0:
        return "0"
    if abs(x) >= 1000:  # whole numbers with separators, never 7.55e+07
        return f"{x:,.0f}"
    if abs(x) < 1e-3:  # tiny: 3 significant figures without an exponent
        return f"{x:.{2 - math.floor(math.log10(abs(x)))}f}"
    return f"{x:.3g}"


def format_ms(value: Any) -> str:
    """A duration given in milliseconds: ``'7.55 ms'``, ``'487 µs'``, ``'1.2 s'``."""
    return _scaled(value, [(1e-3, "µs"), (1.0, "ms"), (1e3, "s")])


def format_seconds(value: Any) -> str:
    """A duration given in seconds, in the same units as `format_ms`."""
    x = number(value)
    return MISSING if x is None else format_ms(x * 1e3)


def format_flops(value: Any) -> str:
    """A FLOP count: ``'75.5 MFLOP'``; zero shows as ``'0'``."""
    return _scaled(
        value, [(1, "FLOP"), (1e3, "kFLOP"), (1e6, "MFLOP"), (1e9, "GFLOP"), (1e12, "TFLOP")]
    )


def format_bytes(value: Any) -> str:
    """A size in bytes, binary units: ``'12.5 KiB'``, ``'478 MiB'``."""
    x = number(value)
    if x is not None and 0 < abs(x) < 1024:
        return f"{x:.0f} B"
    return _scaled(x, [(2.0**10, "KiB"), (2.0**20, "MiB"), (2.0**30, "GiB"), (2.0**40, "TiB")])


def format_share(value: Any) -> str:
    """A fraction (1 = 100%) as a percentage: ``'12.3%'``."""
    x = number(value)
    return MISSING if x is None else f"{format_number(100 * x)}%"


def format_count(value: Any) -> str:
    """A count or rate with thousands separators: ``'31,166'``."""
    x = number(value)
    return MISSING if x is None else f"{x:,.0f}"


def format_ratio(value: Any) -> str:
    """A ratio or speed-up: ``'1.23×'``."""
    x = number(value)
    return MISSING if x is None else f"{format_number(x)}×"


def format_db(value: Any) -> str:
    """A signal-to-noise ratio in dB; infinite (identical outputs) as ``'∞ dB'``."""
    x = number(value)
    if x is not None:
        return f"{format_number(x)} dB"
    return "∞ dB" if isinstance(value, float) and value == math.inf else MISSING
