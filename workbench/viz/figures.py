"""The plotly figures of profiles, comparisons, rooflines, trade-offs and sensitivity.

Pure functions from result objects (`Profile`, trade-off tables) to figures: every
function takes measured data and returns a new ``plotly.graph_objects.Figure``; none
measures anything or mutates its input. When data a figure needs is missing, the figure
says so in words (and how to get it) instead of coming out blank. `workbench.viz`
re-exports every public name here (``viz.layer_latency``).

Colours are fixed per op type (`op_type_color`) and per precision (`precision_color`) so
that the same op type has the same colour in every chart, table badge and session.

Example:
    >>> import workbench as wb
    >>> from workbench import viz
    >>> p = wb.profile(wb.samples.load("digits-cnn"), "onnxruntime", batch_size=32)
    >>> viz.layer_latency(p).show()
"""

from __future__ import annotations

import math
import textwrap
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.evaluation.pareto import pareto_mask
from workbench.profiling.profile import UNATTRIBUTED, Profile
from workbench.viz.style import (
    LAYOUT,
    OP_TYPE_ALIASES,
    OP_TYPE_COLORS,
    PRECISION_COLORS,
    WARMUP_COLOR,
    canonical_op_type,
    op_type_color,
    precision_color,
    run_color,
)

__all__ = [
    "OP_TYPE_ALIASES",
    "OP_TYPE_COLORS",
    "PRECISION_COLORS",
    "canonical_op_type",
    "empty_figure",
    "labels",
    "latency_distribution",
    "latency_timeline",
    "layer_comparison",
    "layer_latency",
    "log_axis",
    "memory",
    "op_type_breakdown",
    "op_type_color",
    "pareto_mask",
    "precision_color",
    "precision_of",
    "roofline",
    "run_color",
    "sensitivity",
    "technique_of",
    "time_share",
    "tradeoff",
    "unattributed_ms",
]


def precision_of(recipe: Mapping[str, Any] | None) -> str:
    """A display precision for a model recipe: ``fp32`` (none), ``int8``, ``fp16``, ``sparse``…

    Example:
        >>> viz.precision_of(wb.quantize(m, "int8-dynamic").recipe)
        'int8'
    """
    if not recipe:
        return "fp32"
    text = " ".join(str(v) for v in recipe.values()).lower() + " " + str(recipe.get("name", ""))
    for key in ("int8", "fp16", "bf16"):
        if key in text:
            return key
    return "sparse" if "prune" in text else "other"


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank figure that says what is missing (and how to get it) in its middle.

    Example:
        >>> viz.empty_figure("No profile yet: run wb.profile(m).")
    """
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font_size=14
    )
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **LAYOUT)
    return fig


_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _si(value: float) -> str:
    """``value`` with an SI prefix: 2e9 -> ``2G``, 0.5 -> ``0.5``."""
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:g}{prefix}"
    return f"{value:g}"


def log_axis(values: Sequence[float], unit: str, **axis: Any) -> dict[str, Any]:
    """A log axis whose ticks read 1, 2, 5, 10, 20… with ``unit`` (powers of ten alone
    when the values span more than three decades), instead of plotly's bare minor digits.

    Args:
        values: the values drawn on the axis (non-positive ones are ignored).
        unit: appended to each tick label (``"ms"``; SI prefixes for large numbers).
        **axis: other axis properties (``title``…).

    Example:
        >>> viz.log_axis([0.4, 12.0], "ms")["ticktext"][:3]
        ['0.2 ms', '0.5 ms', '1 ms']
    """
    positive = [float(v) for v in values if v is not None and np.isfinite(v) and v > 0]
    if not positive:
        return {"type": "log", **axis}
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    steps = (1.0,) if high - low > 3 else (1.0, 2.0, 5.0)
    ticks = [m * 10.0**e for e in range(low, high + 1) for m in steps]
    # one tick below and above the data keeps the labels framing it
    below = [t for t in ticks if t <= min(positive)][-1:]
    above = [t for t in ticks if t >= max(positive)][:1]
    ticks = [*below, *[t for t in ticks if min(positive) < t < max(positive)], *above]
    suffix = f" {unit}" if unit else ""
    return {
        "type": "log",
        "tickmode": "array",
        "tickvals": ticks,
        "ticktext": [f"{_si(float(f'{t:.3g}'))}{suffix}" for t in ticks],
        **axis,
    }


def _layers(profile: Profile, needed: Sequence[str]) -> pd.DataFrame | None:
    """The profile's layer rows when they have ``needed`` columns, else None."""
    table = profile.layers
    if table is None or table.empty or any(c not in table for c in needed):
        return None
    return table


def _no_layers(profile: Profile, title: str) -> go.Figure:
    return empty_figure(
        f"No per-layer data in {profile.label}.<br>Profile with layers=True to see it.", title
    )


def labels(profiles: Sequence[Profile]) -> list[str]:
    """Display labels, one per profile, made unique with the run id where two coincide.

    Example:
        >>> viz.labels([p, p_again])   # same settings: the run ids tell them apart
    """
    plain = [p.label for p in profiles]
    return [
        f"{label} · {p.run_id[:6]}" if plain.count(label) > 1 else label
        for label, p in zip(plain, profiles, strict=True)
    ]


def _block(layer: str) -> str:
    return layer.split(".", 1)[0] if layer != UNATTRIBUTED else UNATTRIBUTED


def layer_latency(
    profile: Profile,
    *,
    order: str = "time",
    top: int | None = 40,
    color_by: str = "op_type",
    selected: str | None = None,
) -> go.Figure:
    """Per-layer median latency as horizontal bars, coloured (and stacked) by op type.

    The ``(unattributed)`` row (end to end minus the layers' sum, negative when
    instrumentation inflates the layers) is not a bar: an annotation states it beside
    the end-to-end median. A layer the backend fused into another is a labelled row
    ("fused into features.0") right under the layer that ran it, not an empty row.

    Args:
        profile: a `Profile` with per-layer rows.
        order: ``"time"`` (slowest first) or ``"graph"`` (execution order).
        top: keep the ``top`` slowest layers (None keeps all); others are summed into
            one ``(other layers)`` bar so the total still adds up.
        color_by: ``"op_type"`` or ``"block"`` (the first part of the module path).
        selected: a layer to outline.

    Returns:
        A bar figure, one trace per colour group (so the legend lists op types, not
        layers), plus a ``fused`` text trace; hover shows median, p90 and share of the
        summed per-layer time.

    Example:
        >>> viz.layer_latency(p, order="graph", color_by="block")
    """
    title = f"Per-layer latency — {profile.label}"
    table = _layers(profile, ("layer", "op_type", "latency_ms"))
    if table is None:
        return _no_layers(profile, title)
    real = table[table["layer"] != UNATTRIBUTED]
    fused = _fused(real)
    rows = _top_rows(real[~real.index.isin(fused.index)], top)
    if order == "time":
        rows = rows.sort_values("latency_ms", ascending=False, kind="stable")
    total = float(rows["latency_ms"].sum()) or 1.0
    op_types = rows["op_type"].map(canonical_op_type)
    rows = rows.assign(
        group=rows["layer"].map(_block) if color_by == "block" else op_types,
        pct=100 * rows["latency_ms"] / total,
        p90=rows["latency_p90_ms"] if "latency_p90_ms" in rows else rows["latency_ms"],
    )
    fig = go.Figure()
    for group, part in rows.groupby("group", sort=False):
        fig.add_trace(
            go.Bar(
                y=part["layer"],
                x=part["latency_ms"],
                orientation="h",
                name=str(group),
                marker_color=op_type_color(str(group)),
                marker_line_width=[3 if layer == selected else 0 for layer in part["layer"]],
                marker_line_color="black",
                customdata=np.stack([part["op_type"], part["p90"], part["pct"]], axis=-1),
                hovertemplate="<b>%{y}</b> (%{customdata[0]})<br>median %{x:.4g} ms"
                "<br>p90 %{customdata[1]:.4g} ms<br>%{customdata[2]:.1f}% of layer time"
                "<extra></extra>",
            )
        )
    shown = _with_fused(list(rows["layer"]), fused)
    if len(shown) > len(rows):
        kept = fused[fused["layer"].isin(shown)]
        fig.add_trace(
            go.Scatter(
                y=kept["layer"],
                x=[0.0] * len(kept),
                mode="text",
                text=[f"fused into {host}" for host in kept["fused_into"]],
                textposition="middle right",
                textfont={"color": "#777"},
                name="fused (timed in its host)",
                hovertemplate="<b>%{y}</b>: %{text}<extra></extra>",
            )
        )
    _note_unattributed(fig, [profile])
    fig.update_layout(
        title=title,
        barmode="stack",
        xaxis_title="median latency (ms)",
        yaxis={"categoryorder": "array", "categoryarray": shown[::-1]},
        height=max(320, 22 * len(shown) + 140),
        legend_title=color_by.replace("_", " "),
        **LAYOUT,
    )
    return fig


def _top_rows(table: pd.DataFrame, top: int | None) -> pd.DataFrame:
    """The ``top`` slowest rows in graph order, the rest summed into one row."""
    if top is None or len(table) <= top:
        return table
    keep = table["latency_ms"].rank(ascending=False, method="first") <= top
    rest = table[~keep]
    other: dict[str, Any] = {"layer": f"(other {len(rest)} layers)", "op_type": "(other)"}
    other["latency_ms"] = float(rest["latency_ms"].sum())
    if "latency_p90_ms" in table:
        other["latency_p90_ms"] = float(rest["latency_p90_ms"].sum())
    return pd.concat([table[keep], pd.DataFrame([other])], ignore_index=True)


def _fused(table: pd.DataFrame) -> pd.DataFrame:
    """Rows the backend fused into another layer (their time is in the host's row)."""
    if "fused_into" not in table:
        return table.iloc[0:0]
    host = table["fused_into"].fillna("").astype(str)
    return table[(host != "") & (table["latency_ms"].fillna(0) <= 0)]


def _with_fused(layers: list[str], fused: pd.DataFrame) -> list[str]:
    """``layers`` with each fused layer placed right after the layer that ran it."""
    if fused.empty:
        return layers
    out = []
    for layer in layers:
        out.append(layer)
        out.extend(fused.loc[fused["fused_into"] == layer, "layer"])
    return out


def unattributed_ms(profile: Profile) -> float | None:
    """End-to-end median minus the summed layer medians (None without per-layer data).

    Example:
        >>> viz.unattributed_ms(p)   # negative: instrumentation inflated the layers
    """
    table = _layers(profile, ("layer", "latency_ms"))
    if table is None:
        return None
    real = table.loc[table["layer"] != UNATTRIBUTED, "latency_ms"].fillna(0)
    return float(profile.latency.median - real.sum())


def _note_unattributed(fig: go.Figure, profiles: Sequence[Profile]) -> None:
    """State the end-to-end versus layer-sum gap of each profile above the plot."""
    parts = []
    for p, name in zip(profiles, labels(profiles), strict=True):
        gap = unattributed_ms(p)
        if gap is not None:
            who = f"{name}: " if len(profiles) > 1 else ""
            parts.append(
                f"{who}end to end {p.latency.median:.4g} ms = layers "
                f"{p.latency.median - gap:.4g} ms {'+' if gap >= 0 else '−'} {abs(gap):.3g} ms "
                "unattributed"
            )
    if parts:
        fig.add_annotation(
            text="<br>".join(parts)
            + "<br><i>(per-layer times come from an instrumented pass; see the note above)</i>",
            showarrow=False,
            x=1.0,
            y=1.0,
            xref="paper",
            yref="paper",
            xanchor="right",
            yanchor="bottom",
            align="right",
            font={"size": 11, "color": "#555"},
            name="unattributed",
        )


def time_share(profile: Profile) -> go.Figure:
    """A treemap of per-layer time: op type, then the layers of that type (area = median ms).

    The ``(unattributed)`` row is left out (it can be negative); hover shows each box's
    milliseconds and share of the summed layer time.

    Example:
        >>> viz.time_share(wb.profile(m))
    """
    title = f"Where the time goes — {profile.label}"
    table = _layers(profile, ("layer", "op_type", "latency_ms"))
    if table is None:
        return _no_layers(profile, title)
    rows = table[(table["layer"] != UNATTRIBUTED) & (table["latency_ms"].fillna(0) > 0)]
    if rows.empty:
        return empty_figure("No layer took measurable time.", title)
    rows = rows.assign(op_type=rows["op_type"].map(canonical_op_type))
    by_type = rows.groupby("op_type", sort=False)["latency_ms"].sum()
    ids = [f"type/{t}" for t in by_type.index] + [f"layer/{n}" for n in rows["layer"]]
    fig = go.Figure(
        go.Treemap(
            ids=ids,
            labels=[*by_type.index, *rows["layer"]],
            parents=["" for _ in by_type.index] + [f"type/{t}" for t in rows["op_type"]],
            values=[*by_type.to_numpy(), *rows["latency_ms"].to_numpy()],
            branchvalues="total",
            marker_colors=[op_type_color(t) for t in by_type.index]
            + [op_type_color(t) for t in rows["op_type"]],
            hovertemplate="<b>%{label}</b><br>%{value:.4g} ms<br>"
            "%{percentRoot:.1%} of layer time<extra></extra>",
        )
    )
    fig.update_layout(title=title, **LAYOUT)
    return fig


def op_type_breakdown(profiles: Sequence[Profile]) -> go.Figure:
    """Summed per-layer latency of each profile, stacked by op type (one bar per profile).

    The end-to-end median is drawn as a diamond beside each bar, so the gap between the
    sum of layer times and the uninstrumented end-to-end latency stays visible (the
    ``(unattributed)`` row is that gap, so it is the diamond, not a slice of the stack).

    Example:
        >>> viz.op_type_breakdown([wb.profile(m, "torch"), wb.profile(m, "onnxruntime")])
    """
    title = "Latency by op type"
    frames, names = [], labels(profiles)
    for p, name in zip(profiles, names, strict=True):
        table = _layers(p, ("layer", "op_type", "latency_ms"))
        if table is not None:
            table = table[table["layer"] != UNATTRIBUTED]
            table = table.assign(op_type=table["op_type"].map(canonical_op_type))
            sums = table.groupby("op_type", sort=False)["latency_ms"].sum().reset_index()
            frames.append(sums.assign(profile=name))
    if not frames:
        return empty_figure("No per-layer data yet: profile with layers=True.", title)
    data = pd.concat(frames, ignore_index=True)
    fig = go.Figure()
    for op_type, part in data.groupby("op_type", sort=False):
        fig.add_trace(
            go.Bar(
                x=part["profile"],
                y=part["latency_ms"],
                name=str(op_type),
                marker_color=op_type_color(str(op_type)),
                hovertemplate=f"<b>{op_type}</b><br>%{{x}}<br>%{{y:.4g}} ms<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=names,
            y=[p.latency.median for p in profiles],
            mode="markers",
            marker={"symbol": "diamond", "size": 12, "color": "black"},
            name="end-to-end median",
            hovertemplate="%{x}<br>end-to-end median %{y:.4g} ms<extra></extra>",
        )
    )
    fig.update_layout(title=title, barmode="stack", yaxis_title="latency (ms)", **LAYOUT)
    return fig


def layer_comparison(
    profiles: Sequence[Profile],
    *,
    baseline: int = 0,
    top: int | None = 30,
    selected: str | None = None,
) -> go.Figure:
    """Per-layer median latency of several profiles side by side, aligned by layer name.

    Layers are matched by canonical name; a layer missing from a profile has no bar there.
    The ``(unattributed)`` rows are not bars: an annotation gives each profile's gap
    between end to end and its layers' sum.
    Rows are sorted by the largest absolute change against ``profiles[baseline]``, and
    hover shows each candidate's speed-up (``×``) over the baseline.

    Args:
        profiles: two or more profiles (one alone is drawn as it is).
        baseline: index of the baseline profile in ``profiles``.
        top: keep the ``top`` layers with the largest change (None keeps all).
        selected: a layer to outline in every profile.

    Example:
        >>> viz.layer_comparison([p_ort, p_torch], baseline=0, top=20)
    """
    title = "Per-layer comparison"
    usable = [p for p in profiles if _layers(p, ("layer", "latency_ms")) is not None]
    if not usable:
        return empty_figure("Choose profiles measured with per-layer data to compare.", title)
    base = profiles[baseline] if 0 <= baseline < len(profiles) else usable[0]
    if base not in usable:
        base = usable[0]
    names = dict(zip([id(p) for p in usable], labels(usable), strict=True))
    wide = _aligned(usable, [names[id(p)] for p in usable]).drop(
        index=UNATTRIBUTED, errors="ignore"
    )
    # a layer fused into another everywhere has no time of its own: no empty row for it
    fused = {str(x) for p in usable for x in _fused(p.layers)["layer"]}
    idle = [x for x in wide.index if x in fused and not (wide.loc[x].fillna(0) > 0).any()]
    wide = wide.drop(index=idle)
    base_name = names[id(base)]
    delta = (wide.drop(columns=base_name).sub(wide[base_name], axis=0)).abs().max(axis=1)
    order = delta.fillna(np.inf).sort_values(ascending=False).index
    wide = wide.loc[order[:top] if top else order]
    fig = go.Figure()
    for p in usable:
        values = wide[names[id(p)]]
        speedup = wide[base_name] / values
        fig.add_trace(
            go.Bar(
                y=wide.index,
                x=values,
                orientation="h",
                name=names[id(p)] + (" (baseline)" if p is base else ""),
                marker_color=run_color(p),
                marker_line_width=[3 if layer == selected else 0 for layer in wide.index],
                marker_line_color="black",
                customdata=speedup.to_numpy(),
                hovertemplate="<b>%{y}</b><br>%{x:.4g} ms<br>%{customdata:.2f}× vs baseline"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        barmode="group",
        # a fixed gap under the tick labels: the note below starts `_AXIS_PX` down
        xaxis={"title": {"text": "median latency (ms)", "standoff": 6}, "automargin": True},
        yaxis={"autorange": "reversed"},
        height=max(320, 18 * len(wide) * len(usable) + 160),
        **LAYOUT,
    )
    fig.update_layout(margin_t=50 + 16 * len(usable))
    _note_unattributed(fig, usable)
    note = f"fused into other layers (no time of their own): {', '.join(idle)}" if idle else ""
    _below_axis(fig, note, [trace.name for trace in fig.data])
    return fig


#: pixels below the plot taken by the x tick labels and the axis title
_AXIS_PX = 46
#: characters per line of a note below the axis (11 px text: under 500 px wide)
_NOTE_CHARS = 100
_NOTE_LINE_PX = 15
#: a horizontal legend row, and the width it fills before wrapping (px; a narrow dashboard column)
_LEGEND_ROW_PX = 24
_LEGEND_WIDTH_PX = 450


def _legend_rows(names: Sequence[str]) -> int:
    """Rows a horizontal legend of ``names`` takes (its entries wrap at `_LEGEND_WIDTH_PX`)."""
    rows, used = 1, 0
    for name in names:
        width = 40 + 7 * len(name)  # the swatch and gap, then ~7 px a 12 px character
        if used and used + width > _LEGEND_WIDTH_PX:
            rows, used = rows + 1, 0
        used += width
    return rows


def _below_axis(fig: go.Figure, note: str, legend: Sequence[str]) -> None:
    """Stack the x axis labels, ``note`` (wrapped) and the legend below the plot.

    Positions are in pixels from the plot's bottom edge and the bottom margin (and the
    height, so the plot keeps its size) grows by what the note and legend take: long
    layer lists wrap onto more lines instead of running over the tick labels.
    """
    lines = textwrap.wrap(note, _NOTE_CHARS, break_long_words=False, break_on_hyphens=False)
    note_px = _NOTE_LINE_PX * len(lines)
    legend_px = _LEGEND_ROW_PX * _legend_rows(legend)
    bottom = _AXIS_PX + note_px + legend_px + 8
    fig.update_layout(
        height=fig.layout.height + bottom - LAYOUT["margin"]["b"],
        margin_b=bottom,
        # anchored to the figure's bottom edge, under the note whatever the plot's height
        legend={"orientation": "h", "x": 0, "y": 0, "yref": "container", "yanchor": "bottom"},
    )
    if lines:
        fig.add_annotation(
            text="<br>".join(lines),
            showarrow=False,
            x=0,
            y=0,
            xref="paper",
            yref="paper",
            xanchor="left",
            yanchor="top",
            yshift=-_AXIS_PX,
            align="left",
            font={"size": 11, "color": "#777"},
            name="fused",
        )


def _aligned(profiles: Sequence[Profile], names: Sequence[str]) -> pd.DataFrame:
    """Median latency per layer (rows) and profile (columns ``names``), first-seen order."""
    series = []
    for p, name in zip(profiles, names, strict=True):
        table = p.layers
        series.append(table.groupby("layer", sort=False)["latency_ms"].sum().rename(name))
    return pd.concat(series, axis=1)


def memory(profile: Profile) -> go.Figure:
    """Parameter and activation bytes per layer in execution order, with peak memory.

    Bars are stacked (parameters + activations) in MiB; the peak reported by the profile's
    memory report is a dashed horizontal line, and a cumulative parameter line shows
    where the model's weight bytes sit.

    Example:
        >>> viz.memory(wb.profile(m))
    """
    title = f"Memory per layer — {profile.label}"
    table = _layers(profile, ("layer", "params_bytes", "activation_bytes"))
    if table is None:
        return _no_layers(profile, title)
    table = table[table["layer"] != UNATTRIBUTED]
    mib = 2.0**20
    fig = go.Figure()
    for column, name, color in (
        ("params_bytes", "parameters", "#4C78A8"),
        ("activation_bytes", "activations", "#F58518"),
    ):
        fig.add_trace(
            go.Bar(
                x=table["layer"],
                y=table[column].astype(float).fillna(0.0) / mib,
                name=name,
                marker_color=color,
                hovertemplate=f"<b>%{{x}}</b><br>{name} %{{y:.4g}} MiB<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=table["layer"],
            y=table["params_bytes"].astype(float).fillna(0.0).cumsum() / mib,
            mode="lines",
            name="parameters, cumulative",
            line={"color": "#4C78A8", "dash": "dot"},
            hovertemplate="<b>%{x}</b><br>cumulative parameters %{y:.4g} MiB<extra></extra>",
        )
    )
    peak = float(profile.memory.get("model_peak_bytes") or 0) / mib
    tallest = float((table["params_bytes"].fillna(0) + table["activation_bytes"].fillna(0)).max())
    if peak and peak <= 10 * max(tallest / mib, float(table["params_bytes"].sum()) / mib):
        fig.add_hline(
            y=peak,
            line_dash="dash",
            line_color="#E45756",
            annotation_text=f"model peak {peak:.3g} MiB",
        )
    elif peak:  # a peak far above the bars would flatten them: state it instead
        title += f" (model peak {peak:.3g} MiB)"
    fig.update_layout(title=title, barmode="stack", yaxis_title="MiB", **LAYOUT)
    return fig


def _ceiling(ceilings: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        value = ceilings.get(name)
        if value:
            return float(value)
    return None


#: what a roofline without ceilings says, unless its caller knows better
MEASURE_CEILINGS = "no measured ceilings: measure them with wb.machine_ceilings(device)"


def roofline(
    profile: Profile,
    ceilings: Any = None,
    *,
    selected: str | None = None,
    missing: str = MEASURE_CEILINGS,
) -> go.Figure:
    """The roofline: each layer at (arithmetic intensity, achieved FLOP/s), log-log.

    Marker size is the layer's share of time and colour its op type (the legend lists op
    types). The roofs come from measured ``ceilings`` (``peak_flops_per_s`` and
    ``bandwidth_bytes_per_s``, as from `wb.machine_ceilings`), with the ridge point marked,
    a dotted roof at the fastest cache bandwidth measured (layers whose bytes fit that
    cache are held to it), and a dashed roof at the theoretical peak when known. A layer whose
    backend reported ``executed_flops`` is drawn at its executed work (hover says so).

    Args:
        profile: a profile with ``flops``, ``intensity`` and ``latency_ms`` per layer.
        ceilings: measured machine ceilings (a `Ceilings` or a mapping); by default the
            ones measured with the profile (``environment["machine_ceilings"]``), so
            every page and report draws the same roofs; without any, only the points.
        selected: a layer to outline (each point's ``text`` is its layer, for clicks).
        missing: the note shown without ceilings (how to get them, where it is read).

    Example:
        >>> viz.roofline(p, wb.machine_ceilings("cpu"))
    """
    title = f"Roofline — {profile.label}"
    table = _layers(profile, ("layer", "op_type", "flops", "latency_ms"))
    if table is None:
        return _no_layers(profile, title)
    points = _roof_points(table)
    if points.empty:
        return empty_figure("No layer has both FLOPs and bytes counted.", title)
    fig = go.Figure()
    points = points.assign(op_type=points["op_type"].map(canonical_op_type))
    for op_type, part in points.groupby("op_type", sort=False):
        fig.add_trace(
            go.Scatter(
                x=part["intensity"],
                y=part["achieved"],
                mode="markers",
                name=str(op_type),
                text=part["layer"],
                marker={
                    "size": 8 + 40 * np.sqrt(part["share"].clip(0, 1)),
                    "color": op_type_color(str(op_type)),
                    "line": {
                        "width": [3 if layer == selected else 1 for layer in part["layer"]],
                        "color": [
                            "black" if layer == selected else "white" for layer in part["layer"]
                        ],
                    },
                },
                customdata=np.stack([part["latency_ms"], part["roof_pct"], part["bound"]], -1),
                hovertemplate="<b>%{text}</b><br>intensity %{x:.3g} FLOP/byte<br>"
                "achieved %{y:.3g} FLOP/s<br>%{customdata[0]:.4g} ms, "
                "%{customdata[1]:.0f}% of roof (%{customdata[2]})<extra></extra>",
            )
        )
    if ceilings is None:
        ceilings = (profile.environment or {}).get("machine_ceilings")
    if ceilings is not None and not isinstance(ceilings, Mapping):
        ceilings = ceilings.to_dict() if hasattr(ceilings, "to_dict") else vars(ceilings)
    _add_roofs(fig, points, ceilings or {}, missing)
    fig.update_layout(
        title=title,
        xaxis=log_axis(_drawn(fig, "x"), "", title="arithmetic intensity (FLOP/byte)"),
        yaxis=log_axis(_drawn(fig, "y"), "", title="achieved FLOP/s"),
        legend_title="op type",
        **LAYOUT,
    )
    return fig


def _drawn(fig: go.Figure, axis: str) -> list[float]:
    """Every value the figure's traces draw on ``axis`` (``"x"`` or ``"y"``)."""
    return [
        float(v)
        for trace in fig.data
        for v in (() if getattr(trace, axis) is None else getattr(trace, axis))
    ]


def _roof_points(table: pd.DataFrame) -> pd.DataFrame:
    points = table[(table["flops"].fillna(0) > 0) & (table["latency_ms"].fillna(0) > 0)].copy()
    if "intensity" not in points or points["intensity"].isna().all():
        points["intensity"] = points["flops"] / points["bytes"].replace(0, np.nan)
    executed = points.get("executed_flops", pd.Series(np.nan, index=points.index)).astype(float)
    # a layer whose backend reported its executed work sits at that work's intensity
    executed_intensity = executed / points["bytes"].replace(0, np.nan)
    points["intensity"] = executed_intensity.where(executed.notna(), points["intensity"])
    points = points[points["intensity"].fillna(0) > 0]
    if "achieved_flops_per_s" in points and points["achieved_flops_per_s"].notna().any():
        points["achieved"] = points["achieved_flops_per_s"].astype(float)
    else:
        points["achieved"] = points["flops"].astype(float) / (points["latency_ms"] / 1e3)
    if "share" not in points:
        points["share"] = points["latency_ms"] / table["latency_ms"].sum()
    fraction = points.get("roof_fraction", pd.Series(np.nan, index=points.index))
    points["roof_pct"] = 100 * fraction.astype(float)
    points["bound"] = points.get("bound", pd.Series("", index=points.index)).fillna("")
    points["bound"] = points["bound"].where(executed.isna(), points["bound"] + ", executed FLOPs")
    points["share"] = points["share"].fillna(0).astype(float)
    return points


def _add_roofs(
    fig: go.Figure, points: pd.DataFrame, ceilings: Mapping[str, Any], missing: str
) -> None:
    peak = _ceiling(ceilings, "peak_flops_per_s", "flops_per_s", "peak_flops")
    bandwidth = _ceiling(ceilings, "bandwidth_bytes_per_s", "memory_bytes_per_s", "bandwidth")
    if not (peak and bandwidth):
        fig.add_annotation(
            text=missing,
            showarrow=False,
            x=0.02,
            y=0.98,
            xref="paper",
            yref="paper",
            xanchor="left",
        )
        return
    ridge = peak / bandwidth
    low = min(float(points["intensity"].min()), ridge) / 4
    high = max(float(points["intensity"].max()), ridge) * 4
    xs = np.geomspace(low, high, 64)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=np.minimum(peak, bandwidth * xs),
            mode="lines",
            name="roof",
            line={"color": "black"},
            hovertemplate="roof %{y:.3g} FLOP/s at %{x:.3g} FLOP/byte<extra></extra>",
        )
    )
    by_bytes = [(int(size), float(rate)) for size, rate in ceilings.get("bandwidth_by_bytes", ())]
    cache_size, cache_rate = max(by_bytes, key=lambda pair: pair[1], default=(0, 0.0))
    if cache_rate > bandwidth:  # layers whose data fit a cache are held to this roof
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=np.minimum(peak, cache_rate * xs),
                mode="lines",
                name=f"cache roof (data up to {cache_size / 2**20:.3g} MiB)",
                line={"color": "black", "dash": "dot"},
                hovertemplate="cache roof %{y:.3g} FLOP/s at %{x:.3g} FLOP/byte<extra></extra>",
            )
        )
    theoretical = _ceiling(ceilings, "theoretical_flops_per_s")
    if theoretical:  # the specification's peak over the measured one: the headroom left
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=np.minimum(theoretical, bandwidth * xs),
                mode="lines",
                name="theoretical peak",
                line={"color": "grey", "dash": "dash"},
                hovertemplate="theoretical %{y:.3g} FLOP/s at %{x:.3g} FLOP/byte<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[ridge],
            y=[peak],
            mode="markers",
            name="ridge point",
            marker={"symbol": "x", "size": 10, "color": "black"},
            hovertemplate="ridge %{x:.3g} FLOP/byte, peak %{y:.3g} FLOP/s<extra></extra>",
        )
    )


def _tradeoff_frame(table: Any) -> tuple[pd.DataFrame, str | None]:
    """The rows of a `TradeoffTable` (or DataFrame) with the metric's value in ``metric``.

    A sweep's rows name the metric in ``metric`` and hold its value in ``metric_value``;
    failed points (``error`` set) are dropped.
    """
    frame = getattr(table, "df", table)
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    name = None
    if "metric_value" in frame:
        names = frame["metric"].dropna() if "metric" in frame else pd.Series(dtype=object)
        name = str(names.iloc[0]) if len(names) else None
        frame = frame.drop(columns=["metric"], errors="ignore").rename(
            columns={"metric_value": "metric"}
        )
    if "error" in frame:
        frame = frame[frame["error"].isna()]
    return frame, name


def tradeoff(
    table: Any,
    *,
    metric_name: str | None = None,
    higher_is_better: bool = True,
    selected: str | None = None,
    band: float | None = 0.01,
) -> go.Figure:
    """Metric against median latency, one point per (variant, backend, device), with the front.

    Marker size is model size (bytes), colour the variant's precision and symbol the
    backend; the Pareto front is a step line (computed here, with ties kept, unless the
    table carries its own ``pareto`` column). Points carry ``customdata[0]`` = variant so
    a click handler can tell which was clicked.

    Args:
        table: a `TradeoffTable` (its ``.df``; its ``metric`` and ``higher_is_better``
            win over the arguments) or a DataFrame with columns variant, latency_ms,
            metric (the value) or metric_value (then ``metric`` is its name), and
            optionally backend, latency_p90_ms, size_bytes, precision, pareto, error.
        metric_name: the metric's axis title (defaults to ``table.metric`` or "metric").
        higher_is_better: the metric's direction (accuracy: True; error: False).
        selected: a variant to outline.
        band: half-width of the shaded band around the ``baseline`` row's metric (0.01:
            one accuracy point either side); None draws none.

    The metric axis is fitted to the points and the band (a metric that lies in [0, 1],
    such as accuracy, never runs past them), so variants a point apart stay apart.

    Example:
        >>> viz.tradeoff(wb.sweep(m, backends=["onnxruntime"]))
    """
    frame, named = _tradeoff_frame(table)
    # a DataFrame's ``metric`` is its column, not the metric's name
    owner = None if isinstance(table, pd.DataFrame) else table
    name = metric_name or named or str(getattr(owner, "metric", None) or "metric")
    higher_is_better = bool(getattr(owner, "higher_is_better", higher_is_better))
    title = f"{name} vs latency"
    needed = ("variant", "latency_ms", "metric")
    if frame.empty or any(c not in frame for c in needed):
        return empty_figure("No variants measured yet: build one on the Optimize page.", title)
    frame = frame.dropna(subset=["latency_ms", "metric"]).reset_index(drop=True)
    if frame.empty:
        return empty_figure(f"No variant has both a latency and a {name}.", title)
    frame = _with_display_columns(frame, higher_is_better)
    fig = go.Figure()
    for (precision, backend), part in frame.groupby(["precision", "backend"], sort=False):
        fig.add_trace(_tradeoff_trace(part, precision, backend, selected, name))
    front = frame[frame["pareto"]].sort_values("latency_ms")
    fig.add_trace(
        go.Scatter(
            x=front["latency_ms"],
            y=front["metric"],
            mode="lines",
            line={"shape": "hv" if higher_is_better else "vh", "color": "#333", "dash": "dot"},
            name="Pareto front",
            hoverinfo="skip",
        )
    )
    _fit_metric_axis(fig, frame, band)
    _fit_latency_axis(fig, frame)
    fig.update_layout(
        title=title,
        xaxis_title="median latency (ms) — lower is better",
        yaxis_title=f"{name} — {'higher' if higher_is_better else 'lower'} is better",
        legend_title="technique, backend",
        clickmode="event+select",
        **LAYOUT,
    )
    return fig


def _fit_metric_axis(fig: go.Figure, frame: pd.DataFrame, band: float | None) -> None:
    """Zoom the metric axis to the points (and the baseline's band), inside [0, 1] when
    every value lies there."""
    values = [float(v) for v in frame["metric"]]
    bounded = all(0.0 <= v <= 1.0 for v in values)
    base = frame.loc[frame["variant"] == "baseline", "metric"]
    if band and len(base):
        centre = float(base.iloc[0])
        low, high = centre - band, centre + band
        fig.add_hrect(
            y0=max(low, 0.0) if bounded else low,
            y1=min(high, 1.0) if bounded else high,
            fillcolor="#4C78A8",
            opacity=0.1,
            line_width=0,
            layer="below",
            annotation_text=f"baseline ± {band:g}",
            annotation_position="top left",
            annotation_font={"size": 10, "color": "#4C78A8"},
        )
        values += [low, high]
    low, high = min(values), max(values)
    span = max(high - low, 0.02 if bounded else abs(high) * 0.02 or 1.0)
    low, high = low - 0.15 * span, high + 0.15 * span
    if bounded:
        low, high = max(low, 0.0), min(high, 1.0)
    fig.update_yaxes(range=[low, high])
    fig.update_traces(cliponaxis=False, selector={"type": "scatter"})


def technique_of(variant: str) -> str:
    """A variant's technique, the trade-off plot's colour key: the quantization scheme
    when quantized (``int8-static``, ``int8-dynamic``, ``fp16``...), ``sparse`` when
    only pruned, ``fp32`` for the baseline.

    Example:
        >>> viz.technique_of("prune-channels(50%) → int8-static(entropy)")
        'int8-static'
    """
    text = str(variant).lower()
    for scheme in ("int8-static", "int8-dynamic", "int8-weight", "int4", "fp16", "bf16"):
        if scheme in text:
            return scheme
    if "int8" in text:
        return "int8"
    if "estimate" in text:
        return "estimate"
    return "sparse" if "prune" in text or "sparse" in text else "fp32"


def _with_display_columns(frame: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    frame = frame.copy()
    # a missing backend or precision never drops a point (groupby leaves out NaN keys)
    frame["backend"] = frame["backend"].fillna("") if "backend" in frame else ""
    derived = [technique_of(v) for v in frame["variant"]]
    if "precision" in frame:
        given = frame["precision"].astype(object)
        frame["precision"] = [
            d if (g is None or g != g or str(g) in ("int8", "")) else str(g)
            for g, d in zip(given, derived, strict=True)
        ]
    else:
        frame["precision"] = derived
    if "pareto" not in frame:
        frame["pareto"] = pareto_mask(
            frame["latency_ms"], frame["metric"], higher_is_better=higher_is_better
        )
    frame["pareto"] = frame["pareto"].fillna(False).astype(bool)
    size = frame.get("size_bytes", pd.Series(1.0, index=frame.index)).astype(float)
    frame["size_mib"] = size / 2**20
    largest = float(size.max()) if size.notna().any() else 1.0
    # an unknown size gets the smallest marker, not a failed figure
    frame["marker"] = (10 + 30 * np.sqrt(size / max(largest, 1.0))).fillna(10.0)
    # neighbours in latency take turns above and below their points: labels stay apart
    rank = frame["latency_ms"].rank(method="first").fillna(0).astype(int)
    frame["label_at"] = np.where(rank % 2 == 0, "bottom center", "top center")
    return frame


def _fit_latency_axis(fig: go.Figure, frame: pd.DataFrame) -> None:
    """Fit the latency axis to the medians when a p90 whisker would stretch it past
    twice the slowest median (and twice the medians' spread): the whiskers past the
    edge are clipped and a note names them, so one slow tail cannot squash the points."""
    medians = frame["latency_ms"].astype(float)
    if "latency_p90_ms" not in frame or medians.empty:
        return
    low, high = float(medians.min()), float(medians.max())
    span = max(high - low, 0.25 * high, 1e-9)
    edge = max(high + 2 * span, 2 * high)
    p90 = frame["latency_p90_ms"].astype(float)
    long = frame[p90 > edge]
    if long.empty:
        return
    fig.update_xaxes(range=[max(0.0, low - 0.4 * span), edge])
    names = ", ".join(
        f"{v} (p90 {p:.3g} ms)"
        for v, p in zip(long["variant"], long["latency_p90_ms"], strict=True)
    )
    fig.add_annotation(
        text=textwrap.shorten(f"p90 whiskers clipped at the edge: {names}", 160),
        showarrow=False,
        x=1.0,
        y=1.0,
        xref="paper",
        yref="paper",
        xanchor="right",
        yanchor="bottom",
        font={"size": 10, "color": "#777"},
        name="clipped",
    )


_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x")


def _tradeoff_trace(
    part: pd.DataFrame, precision: str, backend: str, selected: str | None, metric: str
) -> go.Scatter:
    error = None
    if "latency_p90_ms" in part:
        error = {
            "type": "data",
            "symmetric": False,
            "visible": True,
            "array": (part["latency_p90_ms"] - part["latency_ms"]).clip(lower=0),
            "arrayminus": [0] * len(part),
            "thickness": 1,
        }
    symbol = _SYMBOLS[zlib.crc32(str(backend).encode()) % len(_SYMBOLS)]
    return go.Scatter(
        x=part["latency_ms"],
        y=part["metric"],
        mode="markers+text",
        text=[_short_variant(v) for v in part["variant"]],
        textposition=list(part["label_at"]),
        textfont={"size": 10, "color": "#555"},
        name=f"{precision}, {backend}" if backend else precision,
        error_x=error,
        marker={
            "size": part["marker"],
            "color": precision_color(precision),
            "symbol": symbol,
            "line": {
                "width": [3 if v == selected else 1 for v in part["variant"]],
                "color": ["black" if v == selected else "white" for v in part["variant"]],
            },
        },
        customdata=np.stack(
            [
                part["variant"],
                part["size_mib"],
                part["pareto"],
                part.get("latency_p90_ms", part["latency_ms"]),
            ],
            -1,
        ),
        hovertemplate=f"<b>%{{customdata[0]}}</b><br>median %{{x:.4g}} ms (bar to p90 "
        f"%{{customdata[3]:.4g}})<br>{metric} %{{y:.4g}}<br>size %{{customdata[1]:.3g}} MiB"
        "<br>Pareto: %{customdata[2]}<extra></extra>",
    )


def _short_variant(variant: str, width: int = 28) -> str:
    """A point's label: the variant's name, cut to ``width`` characters (hover has all)."""
    text = str(variant)
    return text if len(text) <= width else text[: width - 1] + "…"


def latency_distribution(profiles: Sequence[Profile] | Profile, *, kind: str = "box") -> go.Figure:
    """End-to-end latency samples of each profile as a box or violin, warm-up apart.

    The timed samples of each profile make one box (or violin); its warm-up calls are
    drawn as grey crosses beside it, never mixed into the distribution.

    Args:
        profiles: one profile or several.
        kind: ``"box"`` or ``"violin"``.

    Example:
        >>> viz.latency_distribution([p_ort, p_torch], kind="violin")
    """
    if isinstance(profiles, Profile):
        profiles = [profiles]
    if not profiles:
        return empty_figure("No profiles yet.", "Latency distribution")
    fig = go.Figure()
    for p, name in zip(profiles, labels(profiles), strict=True):
        lat = p.latency
        common = {
            "y": list(lat.samples_ms),
            "name": name,
            "marker_color": run_color(p),
            "line_color": run_color(p),
            "hovertemplate": f"%{{y:.4g}} ms<br>n={lat.n}<extra>{name}</extra>",
        }
        if kind == "violin":
            fig.add_trace(
                go.Violin(points="all", box_visible=True, meanline_visible=True, **common)
            )
        else:
            fig.add_trace(go.Box(boxpoints="all", **common))
        if lat.warmup_ms:
            fig.add_trace(
                go.Scatter(
                    x=[name] * len(lat.warmup_ms),
                    y=list(lat.warmup_ms),
                    mode="markers",
                    marker={"color": WARMUP_COLOR, "symbol": "x", "size": 8},
                    name="warm-up",
                    legendgroup="warm-up",
                    showlegend=p is profiles[0],
                    hovertemplate="warm-up %{y:.4g} ms<extra></extra>",
                )
            )
    fig.update_layout(
        title="End-to-end latency distribution",
        yaxis=_latency_axis([p.latency for p in profiles]),
        **LAYOUT,
    )
    return fig


def _latency_axis(measurements: Sequence[Any]) -> dict[str, Any]:
    """A log axis (1-2-5 ticks in ms) when the samples, warm-up included, span more than
    20x; else a linear one."""
    values = [v for m in measurements for v in (*m.samples_ms, *m.warmup_ms) if v > 0]
    if values and max(values) > 20 * min(values):
        return log_axis(values, "ms", title="latency (ms, log)")
    return {"type": "linear", "title": "latency (ms)"}


def latency_timeline(profile: Profile) -> go.Figure:
    """Each timed call's latency in order, warm-up calls greyed out first; median dashed.

    Example:
        >>> viz.latency_timeline(p)
    """
    lat = profile.latency
    warm = len(lat.warmup_ms)
    fig = go.Figure()
    if warm:
        fig.add_trace(
            go.Scatter(
                x=list(range(1, warm + 1)),
                y=list(lat.warmup_ms),
                mode="markers",
                marker_color=WARMUP_COLOR,
                name="warm-up",
                hovertemplate="warm-up call %{x}: %{y:.4g} ms<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=list(range(warm + 1, warm + lat.n + 1)),
            y=list(lat.samples_ms),
            mode="markers",
            marker_color="#4C78A8",
            name="timed",
            hovertemplate="call %{x}: %{y:.4g} ms<extra></extra>",
        )
    )
    fig.add_hline(y=lat.median, line_dash="dash", annotation_text=f"median {lat.median:.4g} ms")
    fig.update_layout(
        title=f"Latency per call — {profile.label}",
        xaxis_title="call",
        yaxis=_latency_axis([lat]),
        **LAYOUT,
    )
    return fig


def sensitivity(
    report: pd.DataFrame,
    *,
    kept: Sequence[str] = (),
    selected: str | None = None,
    order: Sequence[str] | None = None,
) -> go.Figure:
    """Per-layer quality drop of a transform (bars) and its latency gain (diamonds).

    Each layer was transformed alone (`wb.sensitivity`): the bar is the metric lost in
    points (accuracy: percentage points; above zero is worse), the diamond on the right
    axis the end-to-end latency change in percent (above zero is faster), hover adds
    the output SQNR in dB. Layers ``kept`` in full precision are drawn hollow.

    Args:
        report: a `wb.sensitivity` DataFrame (its ``attrs`` name the metric).
        kept: layers the recipe keeps untransformed.
        selected: a layer to outline.
        order: layer names in execution order (default: the report's order).

    Example:
        >>> viz.sensitivity(wb.sensitivity(m, data), kept=["features.0"])
    """
    title = "Sensitivity per layer"
    if report is None or report.empty or "metric_delta" not in report:
        return empty_figure("No sensitivity yet: press Analyse (it transforms one layer "
                            "at a time and measures each).", title)  # fmt: skip
    rows = report[report["error"].isna()] if "error" in report else report
    if order:
        rank = {name: i for i, name in enumerate(order)}
        rows = rows.sort_values("layer", key=lambda s: s.map(rank).fillna(len(rank)))
    metric = str(report.attrs.get("metric", "metric"))
    scale = 100.0 if metric == "accuracy" else 1.0
    drop = -rows["metric_delta"].astype(float) * scale + 0.0  # no "-0" on the axis
    gain = (rows["speedup"].astype(float) - 1.0) * 100 if "speedup" in rows else None
    hollow = [layer in set(kept) for layer in rows["layer"]]
    fig = go.Figure(
        go.Bar(
            x=rows["layer"],
            y=drop,
            name=f"{metric} drop ({'points' if scale == 100 else 'units'})",
            marker={
                "color": [
                    "white" if h else op_type_color(str(t))
                    for h, t in zip(hollow, rows["op_type"], strict=True)
                ],
                "line": {
                    "color": [op_type_color(str(t)) for t in rows["op_type"]],
                    "width": [3 if x == selected else 1.5 for x in rows["layer"]],
                },
            },
            customdata=np.stack([rows["sqnr_db"].astype(float), hollow], -1),
            hovertemplate="<b>%{x}</b><br>drop %{y:.3g}<br>SQNR %{customdata[0]:.1f} dB"
            "<extra></extra>",
        )
    )
    if gain is not None:
        fig.add_trace(
            go.Scatter(
                x=rows["layer"],
                y=gain,
                yaxis="y2",
                mode="markers",
                name="latency gain (%)",
                marker={"symbol": "diamond", "size": 11, "color": "#333"},
                hovertemplate="<b>%{x}</b><br>%{y:+.1f}% faster end to end<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="layer (execution order); hollow = kept in full precision",
        yaxis={"title": f"{metric} drop — lower is better", "zeroline": True},
        yaxis2={
            "title": "latency gain (%)",
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "zeroline": False,
        },
        legend={"orientation": "h", "y": -0.25},
        clickmode="event",
        **LAYOUT,
    )
    if gain is not None:  # one zero line for both axes: bars and diamonds read alike
        drop_range, gain_range = zero_aligned_ranges(list(drop), list(gain))
        fig.update_layout(yaxis_range=drop_range, yaxis2_range=gain_range)
    return fig


def zero_aligned_ranges(
    left: Sequence[float], right: Sequence[float], pad: float = 0.1
) -> tuple[list[float], list[float]]:
    """Ranges for two y axes that put zero at the same height, each covering its values
    (and zero) with a ``pad`` margin.

    Example:
        >>> zero_aligned_ranges([-1.0, 3.0], [10.0, 20.0])[1][0] < 0
        True
    """

    def extent(values: Sequence[float]) -> tuple[float, float]:
        finite = [float(v) for v in values if v is not None and np.isfinite(v)]
        low, high = min([0.0, *finite]), max([0.0, *finite])
        if low == high:
            high = 1.0
        return -low * (1 + pad), high * (1 + pad)

    axes = [extent(left), extent(right)]
    # the same below-to-above ratio on both: the larger one, stretching the other's ends
    ratio = max((neg / pos for neg, pos in axes if pos > 0), default=1.0)
    if ratio == 0 and any(pos == 0 for _, pos in axes):
        ratio = 1.0  # one axis all below zero, the other all above: zero in the middle
    ranges = [[-(neg if pos == 0 else ratio * pos), neg / ratio if pos == 0 else pos]
              for neg, pos in axes]  # fmt: skip
    return ranges[0], ranges[1]
