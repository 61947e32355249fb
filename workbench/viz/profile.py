"""Figures of one or several profiles: per-layer latency, time shares, op types, memory,
the latency distribution and timeline.

Pure functions: measured data in, a new ``plotly.graph_objects.Figure`` out; none
measures or changes its input, and missing data gives a figure that says what to do.
The layer helpers here (`layers_with`, `fused_rows`, `note_unattributed`) serve the
compare and roofline figures too.

Example:
    >>> from workbench.viz import profile as viz_profile
    >>> viz_profile.layer_latency(p).show()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.profiling.profile import UNATTRIBUTED, Profile
from workbench.viz.style import (
    LAYOUT,
    WARMUP_COLOR,
    canonical_op_type,
    corner_note,
    empty_figure,
    log_axis,
    op_type_color,
    run_color,
)

__all__ = [
    "fused_rows",
    "labels",
    "latency_distribution",
    "latency_timeline",
    "layer_latency",
    "layers_with",
    "memory",
    "no_layers_figure",
    "note_unattributed",
    "op_type_breakdown",
    "time_share",
    "unattributed_ms",
]


def layers_with(profile: Profile, needed: Sequence[str]) -> pd.DataFrame | None:
    """The profile's layer rows when they have ``needed`` columns, else None."""
    table = profile.layers
    if table is None or table.empty or any(c not in table for c in needed):
        return None
    return table


def no_layers_figure(profile: Profile, title: str) -> go.Figure:
    """The empty figure of a profile measured without its layers, saying how to get them."""
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
    table = layers_with(profile, ("layer", "op_type", "latency_ms"))
    if table is None:
        return no_layers_figure(profile, title)
    real = table[table["layer"] != UNATTRIBUTED]
    fused = fused_rows(real)
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
    note_unattributed(fig, [profile])
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


def fused_rows(table: pd.DataFrame) -> pd.DataFrame:
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
    table = layers_with(profile, ("layer", "latency_ms"))
    if table is None:
        return None
    real = table.loc[table["layer"] != UNATTRIBUTED, "latency_ms"].fillna(0)
    return float(profile.latency.median - real.sum())


def note_unattributed(fig: go.Figure, profiles: Sequence[Profile]) -> None:
    """State the end-to-end versus layer-sum gap of each profile above the plot (``fig``
    gains the note; the profiles are not changed)."""
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
        corner_note(
            fig,
            "<br>".join(parts)
            + "<br><i>(per-layer times come from an instrumented pass; see the note above)</i>",
            "unattributed",
            size=11,
            color="#555",
            align="right",
        )


def time_share(profile: Profile) -> go.Figure:
    """A treemap of per-layer time: op type, then the layers of that type (area = median ms).

    The ``(unattributed)`` row is left out (it can be negative); hover shows each box's
    milliseconds and share of the summed layer time.

    Example:
        >>> viz.time_share(wb.profile(m))
    """
    title = f"Where the time goes — {profile.label}"
    table = layers_with(profile, ("layer", "op_type", "latency_ms"))
    if table is None:
        return no_layers_figure(profile, title)
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
        table = layers_with(p, ("layer", "op_type", "latency_ms"))
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


def memory(profile: Profile) -> go.Figure:
    """Parameter and activation bytes per layer in execution order, with peak memory.

    Bars are stacked (parameters + activations) in MiB; the peak reported by the profile's
    memory report is a dashed horizontal line, and a cumulative parameter line shows
    where the model's weight bytes sit.

    Example:
        >>> viz.memory(wb.profile(m))
    """
    title = f"Memory per layer — {profile.label}"
    table = layers_with(profile, ("layer", "params_bytes", "activation_bytes"))
    if table is None:
        return no_layers_figure(profile, title)
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
    peak = float(profile.memory.model_peak_bytes or 0) / mib
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
