"""Readable numbers, shared by every result's notebook and terminal view.

Units a person reads at a glance: times in s/ms/µs with 3 significant figures, FLOPs in
kFLOP/MFLOP/GFLOP, bytes in KiB/MiB/GiB, shares in %, ratios as ``1.23×``; a missing
value (None, NaN) shows as "—". No formatter writes exponent notation (``7.55e+07``) or
long decimals (``0.486653``). The lowest layer, so `Model` can use it as well as the
profiling and evaluation results.

Tables say what a column holds once: `COLUMN_KINDS` maps a column name to its kind
(``"ms"``, ``"bytes"``, ``"share"``...), `column_kind` falls back on the name's unit
suffix, and every view renders a kind its own way from the same rules: `format_value`
for text (notebook HTML, terminals, reports) and `js_formatter` for the dashboard's
Tabulator cells. A measurement flagged noisy keeps its number and gains `UNCERTAIN`
(``format_value(kind, v, uncertain=True)``).

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
    "COLUMN_KINDS",
    "MISSING",
    "UNCERTAIN",
    "column_kind",
    "format_bytes",
    "format_count",
    "format_db",
    "format_flops",
    "format_ms",
    "format_number",
    "format_ratio",
    "format_seconds",
    "format_share",
    "format_value",
    "js_formatter",
    "number",
]

MISSING = "—"
#: prefixed to a number whose measurement is noisy or uncertain (``~1.2 ms``)
UNCERTAIN = "~"
_TIME = [(1e-3, "µs"), (1.0, "ms"), (1e3, "s")]
_FLOP = [(1, "FLOP"), (1e3, "kFLOP"), (1e6, "MFLOP"), (1e9, "GFLOP"), (1e12, "TFLOP")]
_BYTE = [(2.0**10, "KiB"), (2.0**20, "MiB"), (2.0**30, "GiB"), (2.0**40, "TiB")]


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
    scale, unit = _unit(x, units)
    # pick again for the rounded number: 999.7 ms reads as 1 s, not 1,000 ms
    scale, unit = _unit(float(f"{x / scale:.3g}") * scale, units)
    return f"{format_number(x / scale)} {unit}"


def _unit(x: float, units: list[tuple[float, str]]) -> tuple[float, str]:
    """The largest unit that keeps ``x`` at least 1 (the smallest for tiny values)."""
    scale, unit = units[0]
    for scale_i, unit_i in units:
        if abs(x) >= scale_i:
            scale, unit = scale_i, unit_i
    return scale, unit


def format_number(value: Any) -> str:
    """A plain number with 3 significant figures: ``'0.487'``, ``'12.3'``, ``'75,500'``."""
    x = number(value)
    if x is None:
        return MISSING
    if x == 0:
        return "0"
    if abs(x) < 1e-3:  # tiny: 3 significant figures without an exponent
        return f"{x:.{2 - math.floor(math.log10(abs(x)))}f}"
    rounded = float(f"{x:.3g}")
    if abs(rounded) >= 1000:  # whole numbers with separators, never 7.55e+07 or 1e+03
        return f"{x:,.0f}"
    return f"{rounded:g}"


def format_ms(value: Any) -> str:
    """A duration given in milliseconds: ``'7.55 ms'``, ``'487 µs'``, ``'1.2 s'``."""
    return _scaled(value, _TIME)


def format_seconds(value: Any) -> str:
    """A duration given in seconds, in the same units as `format_ms`."""
    x = number(value)
    return MISSING if x is None else format_ms(x * 1e3)


def format_flops(value: Any) -> str:
    """A FLOP count: ``'75.5 MFLOP'``; zero shows as ``'0'``."""
    return _scaled(value, _FLOP)


def format_bytes(value: Any) -> str:
    """A size in bytes, binary units: ``'12.5 KiB'``, ``'478 MiB'``."""
    x = number(value)
    if x is not None and 0 < abs(x) < 1024:
        return f"{round(x)} B"
    return _scaled(x, _BYTE)


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


def format_percent(value: Any) -> str:
    """A value already in percent: ``'12.3%'``."""
    x = number(value)
    return MISSING if x is None else f"{format_number(x)}%"


def format_integer(value: Any) -> str:
    """A whole number exactly, with thousands separators: ``'65,536'``, ``'32'``; a
    fractional value keeps 3 significant figures."""
    x = number(value)
    if x is None:
        return MISSING
    return f"{x:,.0f}" if x.is_integer() else format_number(x)


def _text(value: Any) -> str:
    """Words as they are; a number in a text column still reads as a number."""
    if value is None or (isinstance(value, float) and number(value) is None):
        return MISSING
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_number(value)
    return str(value)


def _per_second(text: str) -> str:
    return text if text in (MISSING, "0") else f"{text}/s"


#: each kind's text formatter
_FORMATS: dict[str, Any] = {
    "ms": format_ms,
    "seconds": format_seconds,
    "bytes": format_bytes,
    "mib": lambda v: format_bytes(None if number(v) is None else number(v) * 2.0**20),  # type: ignore[operator]
    "flops": format_flops,
    "flops_rate": lambda v: _per_second(format_flops(v)),
    "bytes_rate": lambda v: _per_second(format_bytes(v)),
    "share": format_share,
    "percent": format_percent,
    "ratio": format_ratio,
    "db": format_db,
    "rate": format_count,
    "integer": format_integer,
    "number": format_number,
    "text": _text,
}

#: column name -> kind, for the names whose unit the name alone does not say. Declared
#: once; every table view (notebook, dashboard, report, terminal) reads it.
COLUMN_KINDS: dict[str, str] = {
    "batch_size": "integer",
    "batch": "integer",
    "samples": "integer",
    "n": "integer",
    "queries": "integer",
    "streams": "integer",
    "threads": "integer",
    "params": "integer",
    "parameters": "bytes",
    "size": "bytes",
    "accuracy": "share",
    "top1": "share",
    "agreement": "share",
    "roof_fraction": "share",
    "intensity": "number",
    "metric_value": "number",
    "throughput": "rate",
    "qps": "rate",
    "max_batch": "integer",
    "configuration": "text",
    "variant": "text",
    "host": "text",
    "layer": "text",
    "op_type": "text",
    "backend": "text",
    "device": "text",
    "recipe": "text",
    "model": "text",
    "note": "text",
    "why_not": "text",
    "reason": "text",
    "error": "text",
    "run_id": "text",
}

# a kind from a column's name when it is not registered: first match wins
_NAME_RULES: list[tuple[Any, str]] = [
    (lambda n: n.endswith("_ms") or n in ("ms", "latency", "median", "p50", "p90", "p99"), "ms"),
    (lambda n: n.endswith("_s") and not n.endswith("per_s"), "seconds"),
    (lambda n: n.endswith("_mib"), "mib"),
    (lambda n: "bytes" in n and n.endswith("per_s"), "bytes_rate"),
    (lambda n: "bytes" in n, "bytes"),
    (lambda n: "flops" in n and n.endswith("per_s"), "flops_rate"),
    (lambda n: "flops" in n and not n.endswith("per_s"), "flops"),
    (lambda n: n.endswith("_pct") or n.endswith("_percent"), "percent"),
    (lambda n: "share" in n or n.endswith("_fraction") or "accuracy" in n, "share"),
    (lambda n: "ratio" in n or "speedup" in n or n == "×", "ratio"),
    (lambda n: "sqnr" in n or n.endswith("_db"), "db"),
    (lambda n: "throughput" in n or n.endswith("per_s") or n.endswith("_qps"), "rate"),
    (lambda n: n.startswith("n_") or n.endswith("_count") or n.endswith("_size"), "integer"),
]


def column_kind(column: str, values: Any = None) -> str:
    """What a column holds: its registered kind (`COLUMN_KINDS`), else the kind its name's
    unit says (``latency_ms``: ``"ms"``, ``size_bytes``: ``"bytes"``), else from
    ``values``: ``"integer"`` when every present value is whole, ``"text"`` when any is
    not a number, else ``"number"``.

    Args:
        column: the column's name; a comparison's ``"<label> latency_ms"`` reads its
            last word.
        values: the column's cells (optional), for columns the name says nothing about.

    Example:
        >>> column_kind("batch_size"), column_kind("peak_bytes"), column_kind("share")
        ('integer', 'bytes', 'share')
    """
    name = str(column).lower()
    for key in (name, name.rsplit(" ", 1)[-1]):
        if key in COLUMN_KINDS:
            return COLUMN_KINDS[key]
    for test, kind in _NAME_RULES:
        if test(name.rsplit(" ", 1)[-1]):
            return kind
    if values is None:
        return "number"
    present = [v for v in values if v is not None and not (isinstance(v, float) and v != v)]
    if any(isinstance(v, str | bool) or number(v) is None for v in present):
        return "text"
    if present and all(float(v).is_integer() for v in present):
        return "integer"
    return "number"


def format_value(kind: str, value: Any, *, uncertain: bool = False) -> str:
    """One value as text in the unit of ``kind`` (a key of `COLUMN_KINDS`' values).

    Args:
        kind: ``"ms"``, ``"seconds"``, ``"bytes"``, ``"mib"``, ``"flops"``, ``"share"``
            (a fraction shown in %), ``"percent"``, ``"ratio"``, ``"db"``, ``"rate"``,
            ``"integer"``, ``"number"`` or ``"text"``.
        value: the value; None or NaN shows as `MISSING`.
        uncertain: the measurement behind it is noisy: prefix `UNCERTAIN`.

    Example:
        >>> format_value("bytes", 65536), format_value("integer", 32.0)
        ('64 KiB', '32')
    """
    if isinstance(value, str | bool) and kind != "text":
        return str(value)
    text = _FORMATS.get(kind, format_number)(value)
    return f"{UNCERTAIN}{text}" if uncertain and text != MISSING else text


# The same rules in JavaScript, for the dashboard's table cells (a Tabulator formatter
# runs in the browser). Built from the unit tables above, so the two cannot drift apart;
# tests/test_rich_display.py runs it in node against `format_value`.
_JS_NUMBER = (
    "function(x){if(x===0)return '0';var a=Math.abs(x);"
    "if(a<1e-3)return x.toFixed(2-Math.floor(Math.log10(a)));"
    "var r=Number(x.toPrecision(3));"
    "if(Math.abs(r)>=1000)return Math.round(x).toLocaleString('en-US');return String(r);}"
)


def _js_scaled(units: list[tuple[float, str]], prefix: str = "", per_second: bool = False) -> str:
    table = ",".join(f"[{scale!r},'{unit}']" for scale, unit in units)
    suffix = "+'/s'" if per_second else ""
    return (
        f"{prefix}if(x===0)return '0';var u=[{table}];"
        "var pick=function(y){var s=u[0];for(var i=0;i<u.length;i++){"
        "if(Math.abs(y)>=u[i][0])s=u[i];}return s;};"
        "var s=pick(x);s=pick(Number((x/s[0]).toPrecision(3))*s[0]);"
        f"return num(x/s[0])+' '+s[1]{suffix};"
    )


_JS_BODY: dict[str, str] = {
    "ms": _js_scaled(_TIME),
    "seconds": _js_scaled(_TIME, "x=x*1e3;"),
    "bytes": _js_scaled(_BYTE, "if(x!==0&&Math.abs(x)<1024)return Math.round(x)+' B';"),
    "mib": _js_scaled(_BYTE, "x=x*1048576;if(x!==0&&Math.abs(x)<1024)return Math.round(x)+' B';"),
    "flops": _js_scaled(_FLOP),
    "flops_rate": _js_scaled(_FLOP, per_second=True),
    "bytes_rate": _js_scaled(
        _BYTE, "if(x!==0&&Math.abs(x)<1024)return Math.round(x)+' B/s';", per_second=True
    ),
    "share": "return num(100*x)+'%';",
    "percent": "return num(x)+'%';",
    "ratio": "return num(x)+'×';",
    "db": "return num(x)+' dB';",
    "rate": "return Math.round(x).toLocaleString('en-US');",
    "integer": "return Number.isInteger(x)?x.toLocaleString('en-US'):num(x);",
    "number": "return num(x);",
}


def js_formatter(kind: str) -> str:
    """A JavaScript function expression ``function(value) -> text`` rendering ``kind``
    exactly as `format_value` does (missing values as `MISSING`, text kept as it is).

    Example:
        >>> js_formatter("ms")[:8]
        'function'
    """
    if kind == "text":
        return (
            f"function(v){{var num={_JS_NUMBER};if(v===null||v===undefined)return '{MISSING}';"
            f"if(typeof v==='number')return isFinite(v)?num(v):'{MISSING}';return String(v);}}"
        )
    body = _JS_BODY.get(kind, _JS_BODY["number"])
    return (
        f"function(v){{var num={_JS_NUMBER};"
        "if(typeof v==='string'&&v!==''&&isNaN(Number(v)))return v;"
        "if(typeof v==='boolean')return String(v);"
        "var x=(v===null||v===undefined||v==='')?NaN:Number(v);"
        f"if(!isFinite(x))return (x===Infinity&&'{kind}'==='db')?'∞ dB':'{MISSING}';{body}}}"
    )
