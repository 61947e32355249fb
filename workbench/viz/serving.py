"""Plotly figures of serving results: SLO searches, batch sweeps and scenario runs.

Pure functions, as in `workbench.viz`: each takes a result object and returns a new
figure; none measures anything or changes its input.

Example:
    >>> from workbench.viz import serving as viz_serving
    >>> viz_serving.slo_figure(wb.slo("digits-cnn", p99_ms=5)).show()
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from workbench.viz.style import LAYOUT, corner_note, empty_figure, log_axis_vline

__all__ = ["batch_sweep_figure", "lm_load_figure", "lm_slo_figure", "scenario_figure", "slo_figure"]


def slo_figure(result: Any) -> go.Figure:
    """p99 latency against offered rate, one line per configuration, the budget as a line.

    Filled markers are points that passed (valid run, p99 within the budget); open ones
    failed, with the reason on hover.

    Args:
        result: a `workbench.scenarios.SloResult`.
    """
    points = result.points
    title = f"p99 latency against offered rate (budget {result.p99_ms:g} ms)"
    if points.empty:
        return empty_figure("No server runs: every configuration failed to compile.", title)
    fig = go.Figure()
    keys = ["variant", "backend", "device", "configuration"]
    for key, group in points.groupby(keys, sort=False):
        group = group.sort_values("rate_per_s")
        fig.add_trace(
            go.Scatter(
                x=group["rate_per_s"],
                y=group["p99_ms"],
                mode="lines+markers",
                name=" ".join(str(k) for k in key),
                marker={
                    "symbol": ["circle" if ok else "circle-open" for ok in group["passed"]],
                    "size": 9,
                },
                customdata=group[["reasons"]].to_numpy(),
                hovertemplate="%{x:.4g} queries/s<br>p99 %{y:.4g} ms<br>%{customdata[0]}"
                "<extra></extra>",
            )
        )
    fig.add_hline(
        y=result.p99_ms,
        line_dash="dash",
        line_color="#c33",
        annotation_text=f"budget {result.p99_ms:g} ms",
    )
    fig.update_layout(
        title=title,
        xaxis_title="offered rate (queries/s)",
        yaxis_title="p99 latency (ms)",
        yaxis_type="log",
        **LAYOUT,
    )
    return fig


def batch_sweep_figure(sweep: Any) -> go.Figure:
    """Latency (p50, p99) and throughput against batch size, the knee marked.

    Args:
        sweep: a `workbench.scenarios.BatchSweep`.
    """
    table = sweep.table
    fig = go.Figure()
    for column, dash in (("p50_ms", "solid"), ("p99_ms", "dot")):
        fig.add_trace(
            go.Scatter(
                x=table["batch_size"],
                y=table[column],
                name=f"latency {column.removesuffix('_ms')} (ms)",
                line_dash=dash,
                line_color="#4C78A8",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=table["batch_size"],
            y=table["throughput_per_s"],
            name="throughput (samples/s)",
            yaxis="y2",
            line_color="#F58518",
        )
    )
    log_axis_vline(fig, sweep.knee_batch_size, f"knee: batch {sweep.knee_batch_size}")
    fig.update_layout(
        title=f"{sweep.model} {sweep.backend}/{sweep.device}: latency and throughput by batch size",
        xaxis={"title": "batch size", "type": "log", "dtick": 0.30103},
        yaxis_title="latency (ms)",
        yaxis2={"title": "throughput (samples/s)", "overlaying": "y", "side": "right"},
        **LAYOUT,
    )
    return fig


def scenario_figure(result: Any) -> go.Figure:
    """Each query's latency against its issue time; dropped queries marked at the axis.

    Args:
        result: a `workbench.scenarios.ScenarioResult`.
    """
    queries = result.queries
    column = "service_ms" if result.kind == "offline" else "latency_ms"
    ran = queries[~queries["dropped"]]
    fig = go.Figure(
        go.Scatter(
            x=ran["start_s" if result.kind == "offline" else "issue_s"],
            y=ran[column],
            mode="markers",
            name="per batch" if result.kind == "offline" else "completed",
            marker={"color": ["#E45756" if late else "#4C78A8" for late in ran["late"]], "size": 4},
        )
    )
    dropped = queries[queries["dropped"]]
    if len(dropped):
        fig.add_trace(
            go.Scatter(
                x=dropped["issue_s"],
                y=[0.0] * len(dropped),
                mode="markers",
                name=f"dropped ({len(dropped)})",
                marker={"symbol": "x", "color": "#c33"},
            )
        )
    target = result.settings.get("target_latency_ms")
    if target is not None:
        fig.add_hline(y=target, line_dash="dash", annotation_text=f"target {target:g} ms")
    verdict = "valid" if result.valid else "INVALID"
    fig.update_layout(
        title=f"{result.label}: {verdict}, p99 {result.p99_ms:.4g} ms",
        xaxis_title="time since start (s)",
        yaxis_title="latency (ms)",
        **LAYOUT,
    )
    return fig


#: colours of a request that met both objectives, missed one, and failed
_MET, _MISSED, _FAILED = "#4C78A8", "#F58518", "#c33"


def lm_load_figure(result: Any) -> go.Figure:
    """Each request's TTFT (top) and TPOT (bottom) against the time it was issued, the
    objectives as dashed lines; requests that missed one are orange, failed ones are
    crosses on the time axis (hover: why).

    Args:
        result: a `workbench.scenarios.lm_load.LmLoadResult`.
    """
    from plotly.subplots import make_subplots

    frame = result.requests
    goal = result.objective
    verdict = "meets" if result.meets_objective else "misses"
    title = (
        f"{len(frame)} requests: {verdict} {goal.describe()} (p99); goodput "
        f"{result.goodput_per_s:.3g} requests/s"
    )
    if frame.empty:
        return empty_figure("No requests were sent.", title)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    ok = frame[frame["ok"]]
    good = result.good[frame["ok"]]
    colours = [_MET if g else _MISSED for g in good]
    for row, column, limit in ((1, "ttft_ms", goal.ttft_ms), (2, "tpot_ms", goal.tpot_ms)):
        name = column.removesuffix("_ms").upper()
        fig.add_trace(
            go.Scatter(
                x=ok["issue_s"],
                y=ok[column],
                mode="markers",
                name=f"{name} per request",
                showlegend=False,  # the axis says which; the legend keeps the failures
                marker={"color": colours, "size": 6},
                customdata=ok[["request", "output_tokens"]].to_numpy(),
                hovertemplate=f"request %{{customdata[0]}}<br>{name} %{{y:.4g}} ms<br>"
                "%{customdata[1]} tokens<extra></extra>",
            ),
            row=row,
            col=1,
        )
        fig.add_hline(
            y=limit,
            line_dash="dash",
            line_color="#c33",
            annotation_text=f"{name} objective {limit:g} ms",
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text=f"{name} (ms)", rangemode="tozero", row=row, col=1)
    failed = frame[~frame["ok"]]
    if len(failed):
        fig.add_trace(
            go.Scatter(
                x=failed["issue_s"].fillna(failed["scheduled_s"]),
                y=[0.0] * len(failed),
                mode="markers",
                name=f"failed ({len(failed)})",
                marker={"symbol": "x", "color": _FAILED, "size": 9},
                customdata=failed[["request", "error"]].to_numpy(),
                hovertemplate="request %{customdata[0]} failed: %{customdata[1]}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.update_xaxes(title_text="issued at (s from the start)", row=2, col=1)
    corner_note(
        fig,
        "blue: met both objectives · orange: missed one · ×: failed",
        "legend",
        size=10,
        color="#777",
    )
    fig.update_layout(title=title, **LAYOUT)
    return fig


def lm_slo_figure(result: Any) -> go.Figure:
    """A rate search: p99 TTFT (top) and p99 TPOT (bottom) against the offered rate, the
    objectives as dashed lines, the rate found as a vertical line; filled points passed,
    open ones failed (hover: why).

    Args:
        result: a `workbench.scenarios.lm_load.LmSloResult`.
    """
    from plotly.subplots import make_subplots

    points = result.points.sort_values("rate_per_s")
    goal = result.objective
    title = f"Highest rate within {goal.describe()} (p99): {result.max_rate_per_s:.3g} requests/s"
    if points.empty:
        return empty_figure("The search ran no load points.", title)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    symbols = ["circle" if ok else "circle-open" for ok in points["passed"]]
    for row, column, limit in ((1, "ttft_p99_ms", goal.ttft_ms), (2, "tpot_p99_ms", goal.tpot_ms)):
        name = column.split("_")[0].upper()
        fig.add_trace(
            go.Scatter(
                x=points["rate_per_s"],
                y=points[column],
                mode="lines+markers",
                name=f"{name} p99",
                marker={"symbol": symbols, "size": 10},
                customdata=points[["goodput_per_s", "reasons"]].to_numpy(),
                hovertemplate=f"%{{x:.3g}} requests/s<br>{name} p99 %{{y:.4g}} ms<br>goodput "
                "%{customdata[0]:.3g}/s<br>%{customdata[1]}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        fig.add_hline(
            y=limit,
            line_dash="dash",
            line_color="#c33",
            annotation_text=f"objective {limit:g} ms",
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text=f"{name} p99 (ms)", type="log", row=row, col=1)
    if result.max_rate_per_s > 0:
        fig.add_vline(
            x=result.max_rate_per_s,
            line_dash="dot",
            line_color="#54A24B",
            annotation_text=f"found {result.max_rate_per_s:.3g}/s",
        )
    fig.update_xaxes(title_text="offered rate (requests/s, Poisson)", row=2, col=1)
    fig.update_layout(title=title, **LAYOUT)
    return fig
