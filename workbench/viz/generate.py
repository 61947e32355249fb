"""Plotly figures of generation profiles (`workbench.profiling.generate.GenerationProfile`).

Pure functions, as everywhere in `workbench.viz`: each takes measured generation
profiles and returns a new figure; none measures anything or changes its input, and
missing data gives a figure that says how to get it.

- `token_latency`: each generated token's latency, the first one being the prefill
  (TTFT), every timed run and their median, the decode steps' p50 and p90;
- `phase_layer_latency`: the per-layer tables of the prefill and of one decode step;
- `context_depth`: TTFT and TPOT against the context depth, with the KV cache's bytes;
- `decode_roofline`: decoding's attained memory traffic against the measured bandwidth;
- `phase_roofline`: the prefill's (or a decode step's) modules on the roofline.

Example:
    >>> from workbench import viz
    >>> g = wb.generate_profile(model, backend="onnxruntime", output_length=32)
    >>> viz.token_latency(g).show()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz.style import (
    LAYOUT,
    MUTED,
    PALETTE,
    QUALITATIVE,
    empty_figure,
    log_axis,
    op_type_color,
)

if TYPE_CHECKING:
    from workbench.profiling.generate import GenerationProfile

__all__ = [
    "context_depth",
    "decode_roofline",
    "phase_layer_latency",
    "phase_roofline",
    "token_latency",
]

#: the prefill's colour, apart from the decode steps'
PREFILL_COLOR = PALETTE[1]
DECODE_COLOR = PALETTE[0]


def token_latency(profile: GenerationProfile) -> go.Figure:
    """Each generated token's latency over the sequence: the prefill (TTFT) first, then
    one decode step per token.

    Every timed run is a thin grey line, their median per token the coloured one; the
    first token's point is the prefill, marked and shaded; dashed lines give the decode
    steps' p50 and p90 (the inter-token latency distribution). The latency axis is
    logarithmic when the prefill is more than 20 times a step.

    Args:
        profile: a `GenerationProfile`; not changed.

    Example:
        >>> viz.token_latency(g).data[-1].name
        'prefill (TTFT)'
    """
    times = profile.token_times()
    tokens = list(range(1, times.shape[1] + 1))
    fig = go.Figure()
    for i, run in enumerate(times):
        fig.add_trace(
            go.Scatter(
                x=tokens,
                y=run.tolist(),
                mode="lines",
                line={"color": MUTED, "width": 1},
                opacity=0.5,
                name="each timed run",
                legendgroup="runs",
                showlegend=i == 0,
                hovertemplate=f"run {i + 1}, token %{{x}}: %{{y:.4g}} ms<extra></extra>",
            )
        )
    median = np.median(times, axis=0)
    if len(tokens) > 1:
        fig.add_trace(
            go.Scatter(
                x=tokens[1:],
                y=median[1:].tolist(),
                mode="lines+markers",
                marker={"color": DECODE_COLOR, "size": 5},
                line={"color": DECODE_COLOR},
                name="decode step (median of runs)",
                hovertemplate="token %{x}: %{y:.4g} ms<extra>decode</extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[1],
            y=[profile.ttft.median],
            mode="markers",
            marker={"color": PREFILL_COLOR, "size": 11, "symbol": "diamond"},
            name="prefill (TTFT)",
            hovertemplate=(
                f"prefill of {profile.prompt_length} tokens × {profile.batch_size}: "
                "%{y:.4g} ms<extra>TTFT (median)</extra>"
            ),
        )
    )
    fig.add_vrect(x0=0.5, x1=1.5, fillcolor=PREFILL_COLOR, opacity=0.08, line_width=0)
    values = times.ravel().tolist()
    positive = [v for v in values if v > 0]
    wide = bool(positive) and max(positive) > 20 * min(positive)
    if profile.inter_token is not None:
        for value, label in ((profile.inter_token.median, "p50"), (profile.inter_token.p90, "p90")):
            fig.add_hline(
                y=value, line={"dash": "dash" if label == "p50" else "dot", "color": DECODE_COLOR}
            )
            # plotly places a line in ms but an annotation on a log axis in log10 units
            fig.add_annotation(
                x=1,
                xref="x domain",
                y=math.log10(value) if wide and value > 0 else value,
                text=f"decode {label} {value:.4g} ms",
                showarrow=False,
                xanchor="right",
                yanchor="bottom",
            )
    yaxis = log_axis(values, "ms", title="latency") if wide else {"title": "latency (ms)"}
    fig.update_layout(
        title=f"Latency per token — {profile.model} on {profile.backend}, batch "
        f"{profile.batch_size}, prompt {profile.prompt_length}"
        + (f", depth {profile.depth}" if profile.depth else ""),
        xaxis={"title": "generated token (1 = prefill)", "dtick": _tick_step(len(tokens))},
        yaxis=yaxis,
        **LAYOUT,
    )
    return fig


def _tick_step(count: int) -> int:
    return max(1, count // 16)


def phase_layer_latency(profile: GenerationProfile, top: int = 12) -> go.Figure:
    """The per-layer tables of the prefill and of one decode step, side by side.

    The ``top`` slowest layers of either phase (each phase's median, in its own scale:
    a prefill runs the whole prompt, a step one token), coloured by op type, slowest at
    the top, and each phase's ``(unattributed)`` row (its median minus the layers' sum:
    what the hooks and the code between modules cost).

    Args:
        profile: a `GenerationProfile` generated with ``layers=True``; not changed.
        top: how many layers.

    Example:
        >>> [bar.name for bar in viz.phase_layer_latency(g).data][:2]
        ['prefill', 'decode step']
    """
    from workbench.profiling.table import UNATTRIBUTED

    phases = [
        (name, table)
        for name, table in (
            ("prefill", profile.prefill_layers),
            ("decode step", profile.decode_layers),
        )
        if table is not None and len(table)
    ]
    title = f"Per-layer latency by phase — {profile.model} on {profile.backend}"
    if not phases:
        why = "; ".join(profile.notes) or "generate with layers=True (--layers)"
        return empty_figure(f"No per-layer tables: {why}.", title)
    shares: dict[str, float] = {}
    for _, table in phases:
        timed = table[table["layer"] != UNATTRIBUTED]
        for layer, share in zip(timed["layer"], timed["share"].fillna(0.0), strict=True):
            shares[str(layer)] = max(shares.get(str(layer), 0.0), float(share))
    chosen = sorted(shares, key=lambda name: -shares[name])[:top]
    # plotly stacks categories from the bottom: the gap lowest, the slowest on top
    order = [UNATTRIBUTED, *reversed(chosen)]
    fig = make_subplots(
        rows=1,
        cols=len(phases),
        shared_yaxes=True,
        subplot_titles=[f"{name} (median {_phase_ms(profile, name):.4g} ms)" for name, _ in phases],
    )
    for col, (name, table) in enumerate(phases, start=1):
        rows = table.set_index("layer").reindex(order)
        ops = [str(op) if isinstance(op, str) else "?" for op in rows.get("op_type", [])]
        fig.add_trace(
            go.Bar(
                x=rows["latency_ms"].tolist(),
                y=order,
                orientation="h",
                name=name,
                marker_color=[
                    MUTED if layer == UNATTRIBUTED else op_type_color(op)
                    for layer, op in zip(order, ops, strict=True)
                ],
                customdata=np.column_stack([ops, rows["share"].fillna(0.0) * 100]),
                hovertemplate="%{y} (%{customdata[0]}): %{x:.4g} ms, "
                "%{customdata[1]:.3g}% of the phase<extra>" + name + "</extra>",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="latency (ms)", row=1, col=col)
    fig.update_layout(title=title, height=max(320, 24 * len(order) + 120), **LAYOUT)
    return fig


def _phase_ms(profile: GenerationProfile, phase: str) -> float:
    if phase == "prefill" or profile.inter_token is None:
        return profile.ttft.median
    return profile.inter_token.median


def context_depth(profiles: Sequence[GenerationProfile]) -> go.Figure:
    """TTFT and TPOT against the context depth (as llama-bench ``-d``), one colour per
    backend, with the KV cache's bytes at the end of each generation as grey bars on a
    second axis.

    Args:
        profiles: generation profiles at several depths (e.g. `depth_sweep`'s); not changed.

    Example:
        >>> viz.context_depth(depth_sweep(model, [0, 64, 128]))
    """
    title = "Context depth: TTFT and TPOT"
    if not profiles:
        return empty_figure("No generation profiles: run depth_sweep(model).", title)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    by_depth = {g.depth: g.kv_cache_bytes for g in profiles}
    depths = sorted(by_depth)
    fig.add_trace(
        go.Bar(
            x=depths,
            y=[by_depth[d] for d in depths],
            name="KV cache",
            marker_color=MUTED,
            opacity=0.35,
            hovertemplate="depth %{x}: %{y:.4s}B of KV cache<extra></extra>",
        ),
        secondary_y=True,
    )
    backends: dict[str, list[GenerationProfile]] = {}
    for g in sorted(profiles, key=lambda g: g.depth):
        backends.setdefault(g.backend, []).append(g)
    for i, (backend, rows) in enumerate(backends.items()):
        color = QUALITATIVE[i % len(QUALITATIVE)]
        series: list[tuple[str, list[Any], str]] = [
            ("TTFT", [g.ttft.median for g in rows], "solid"),
            ("TPOT", [None if g.tpot is None else g.tpot.median for g in rows], "dash"),
        ]
        for what, values, dash in series:
            fig.add_trace(
                go.Scatter(
                    x=[g.depth for g in rows],
                    y=values,
                    mode="lines+markers",
                    line={"color": color, "dash": dash},
                    name=f"{backend} {what}",
                    hovertemplate=f"{backend} {what} at depth %{{x}}: %{{y:.4g}} ms<extra></extra>",
                ),
                secondary_y=False,
            )
    fig.update_layout(title=title, xaxis_title="context depth (tokens cached)", **LAYOUT)
    fig.update_yaxes(title_text="median latency (ms)", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="KV cache (bytes)", showgrid=False, secondary_y=True)
    return fig


def decode_roofline(profiles: Sequence[GenerationProfile]) -> go.Figure:
    """The decode roofline: each profile's attained memory traffic while decoding (bytes a
    step reads over the median TPOT) against this machine's measured bandwidth, the
    fraction of the bound written on each bar.

    Args:
        profiles: generation profiles made with ``roofline=True`` (others are left out,
            and the figure says how to get them); not changed.

    Example:
        >>> viz.decode_roofline([g_torch, g_ort])
    """
    title = "Decode roofline: memory traffic against the measured bandwidth"
    rows = [g for g in profiles if g.bandwidth_fraction is not None]
    if not rows:
        return empty_figure(
            "No decode roofline: generate with roofline=True (--roofline) and N ≥ 2.", title
        )
    labels = [
        f"{g.model} {g.backend} b{g.batch_size}" + (f" d{g.depth}" if g.depth else "") for g in rows
    ]
    attained = [float(g.decode_bytes_per_s or 0.0) / 1e9 for g in rows]
    fig = go.Figure(
        go.Bar(
            x=attained,
            y=labels,
            orientation="h",
            marker_color=DECODE_COLOR,
            text=[f"{g.bandwidth_fraction:.0%}" for g in rows],
            textposition="outside",
            hovertemplate="%{y}: %{x:.3g} GB/s, %{text} of the bound<extra></extra>",
            showlegend=False,
        )
    )
    bound = max(float(g.bandwidth_bytes_per_s or 0.0) for g in rows) / 1e9
    fig.add_vline(
        x=bound,
        line={"dash": "dash", "color": MUTED},
        annotation_text=f"measured bandwidth {bound:.3g} GB/s",
        annotation_position="top left",
    )
    fig.update_layout(
        title=title,
        xaxis={"title": "attained while decoding (GB/s)", "range": [0, bound * 1.1]},
        height=max(260, 40 * len(rows) + 140),
        **LAYOUT,
    )
    return fig


def phase_roofline(profile: GenerationProfile, phase: str = "prefill") -> go.Figure:
    """One phase's modules on the roofline (as `workbench.viz.rooflines.roofline` draws a
    profile's layers): the prefill mostly near the compute roof, a decode step's matrix
    products on the bandwidth roof.

    Args:
        profile: a generation profile made with ``layers=True`` (its phase tables carry
            each module's FLOPs and bytes) and ``roofline=True`` (the measured ceilings
            draw the roofs); not changed.
        phase: ``"prefill"`` or ``"decode"``.

    Example:
        >>> viz.phase_roofline(g, "prefill")
    """
    from workbench.viz.rooflines import table_roofline

    table = profile.prefill_layers if phase == "prefill" else profile.decode_layers
    title = f"Roofline of the {phase}: {profile.model} on {profile.backend}"
    if table is None or "flops" not in table or table["flops"].isna().all():
        return empty_figure(f"No {phase} costs: generate with layers=True (--layers).", title)
    missing = "no measured ceilings: generate with roofline=True (--roofline)"
    return table_roofline(table, title, profile.machine_ceilings, missing=missing)
