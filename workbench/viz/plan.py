"""Plotly figure of a plan: what each candidate fleet costs as traffic changes.

A pure function, as in `workbench.viz`: it takes a `Plan` and returns a new figure; the
costs are the plan's own arithmetic replayed at other rates (`cost_against_traffic`),
nothing is measured.

Example:
    >>> from workbench.viz import plan as viz_plan
    >>> viz_plan.plan_cost_figure(wb.plan([("box.toml", "slo.json")], 2000, 5)).show()
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from workbench.viz.style import LAYOUT, empty_figure, log_axis_vline

__all__ = ["plan_cost_figure"]


def plan_cost_figure(plan: Any) -> go.Figure:
    """Cost over the plan's horizon against average traffic, one step line per candidate.

    Steps are whole machines; points past the plan's machine limit are left out. A
    dashed line marks the plan's own target rate.

    Args:
        plan: a `workbench.planning.Plan`.
    """
    from workbench.planning.what_if import cost_against_traffic

    w = plan.workload
    currency = plan.table["currency"].iloc[0] if len(plan.table) else ""
    title = f"{w.years}-year cost against traffic (p99 <= {w.p99_ms:g} ms, N+{w.redundancy})"
    curve = cost_against_traffic(plan)
    curve = curve[curve["meets"]]
    if curve.empty:
        return empty_figure("No candidate sustains a rate within the objective.", title)
    fig = go.Figure()
    for label, group in curve.groupby("candidate", sort=False):
        fig.add_trace(
            go.Scatter(
                x=group["target_rate_per_s"],
                y=group["tco_horizon"],
                mode="lines+markers",
                line_shape="hv",
                name=str(label),
                customdata=group[["machines"]].to_numpy(),
                hovertemplate=f"%{{x:.4g}} {plan.unit}/s: %{{customdata[0]}} machines, %{{y:,.0f}} "
                + str(currency)
                + "<extra></extra>",
            )
        )
    log_axis_vline(fig, w.target_rate_per_s, f"target {w.target_rate_per_s:g}/s")
    fig.update_layout(
        title=title,
        xaxis_title=f"average traffic ({plan.unit}/s)",
        yaxis_title=f"cost over {w.years} years ({currency})",
        xaxis_type="log",
        **LAYOUT,
    )
    return fig
