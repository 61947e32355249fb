"""The key figure of each result's notebook view, as inline SVG (`workbench.viz.inline`).

A result's ``_repr_html_`` is its compact summary, this figure, then its table; the
summary and the table are formatting (`workbench.profiling.formatting`), the figure is
drawn here. The package root (``workbench/__init__``) registers each function for its
class by name with `workbench.profiling.results.register_figure`, so the result classes
never import this module and ``import workbench`` does not either.

Every function takes a result (not changed) and returns an ``<svg>`` element, or "" when
there is nothing to draw.

Example:
    >>> from workbench.viz.reprs import profile_svg
    >>> profile_svg(p).count("class='bar'")  # the slowest timed layers, up to 8
    8
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.units import format_count, format_ms, format_share
from workbench.viz.inline import Bar, Point, bars_svg, colors_for, scatter_svg

if TYPE_CHECKING:
    from workbench.evaluation.compare_backends import BackendComparison
    from workbench.evaluation.sweep import TradeoffTable
    from workbench.optimize.sensitivity import SensitivityReport
    from workbench.profiling.compare import Comparison
    from workbench.profiling.compare_runtimes import RuntimeComparison
    from workbench.profiling.generate import GenerationProfile
    from workbench.profiling.profile import Profile
    from workbench.profiling.timer import Measurement

__all__ = [
    "backend_comparison_svg",
    "comparison_svg",
    "generation_svg",
    "measurement_svg",
    "profile_svg",
    "runtime_comparison_svg",
    "sensitivity_svg",
    "tradeoff_svg",
]


def profile_svg(profile: Profile, top: int = 8) -> str:
    """A profile's slowest layers as bars, coloured by op type.

    Fused layers (timed inside another) and the ``(unattributed)`` row are left out.

    Args:
        profile: the `Profile` to draw.
        top: how many layers (the slowest first).

    Returns:
        An inline ``<svg>``, or "" without layer times.
    """
    from workbench.profiling.table import UNATTRIBUTED

    layers = profile.layers
    if layers.empty or "latency_ms" not in layers:
        return ""
    timed = layers[layers["layer"] != UNATTRIBUTED]
    if "fused_into" in timed:
        fused = timed["fused_into"].fillna("").astype(str) != ""
        timed = timed[~fused]
    timed = timed.sort_values("latency_ms", ascending=False).head(top)
    ops = [str(op or "?") for op in timed.get("op_type", ["?"] * len(timed))]
    colors = colors_for(ops)
    bars = [
        Bar(str(layer), latency, color=colors[op], note=f"{op}, {format_share(share)}")
        for layer, latency, op, share in zip(
            timed["layer"],
            timed["latency_ms"],
            ops,
            timed.get("share", [None] * len(timed)),
            strict=True,
        )
    ]
    axis = f"layer latency, slowest {len(bars)} ({profile.layer_method or 'instrumented'})"
    return bars_svg([("", bars)], axis, format_ms, legend=list(colors.items()))


def measurement_svg(measurement: Measurement) -> str:
    """How a measurement's timed runs spread: runs per latency bin (none for one run)."""
    import numpy as np

    if measurement.n < 2:
        return ""
    counts, edges = np.histogram(measurement.samples_ms, bins=min(8, measurement.n))
    bars = [
        Bar(f"{format_ms(lo)} – {format_ms(hi)}", float(count))
        for count, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True)
    ]
    return bars_svg([("", bars)], "runs per latency bin", fmt=format_count)


def comparison_svg(comparison: Comparison) -> str:
    """Each compared profile's end-to-end median, with the 95% CI of the median."""
    pairs = list(zip(comparison.labels, comparison.profiles, strict=False))
    colors = colors_for(comparison.labels)
    bars = [
        Bar(label, profile.latency.median, *profile.latency.median_ci, colors[label])
        for label, profile in pairs
    ]
    return bars_svg([("", bars)], "end-to-end median latency; whisker: 95% CI of the median")


def runtime_comparison_svg(comparison: RuntimeComparison) -> str:
    """Each runtime's median of the round medians, with its range over the rounds; a
    runtime that measured nothing has a label and no bar."""
    table = comparison.table
    colors = colors_for(str(name) for name in table.index)
    bars = [
        Bar(str(name), row["median_ms"], row["min_ms"], row["max_ms"], colors[str(name)])
        for name, row in table.iterrows()
    ]
    return bars_svg([("", bars)], "median of the round medians; whisker: range over rounds")


def backend_comparison_svg(comparison: BackendComparison) -> str:
    """Small multiples: per batch size, each runtime's median latency and its range."""
    table = comparison.table
    colors, hosts = colors_for(table["runtime"]), "host" in table
    groups = [
        (
            f"batch {batch}",
            [
                Bar(
                    f"{row['runtime']} @ {row['host']}" if hosts else row["runtime"],
                    row["latency_ms"],
                    row["latency_min_ms"],
                    row["latency_max_ms"],
                    colors[row["runtime"]],
                )
                for row in rows.to_dict(orient="records")
            ],
        )
        for batch, rows in table.groupby("batch_size", sort=True)
    ]
    axis = "median of the round medians per batch; whisker: range over rounds"
    return bars_svg(groups, axis)


def tradeoff_svg(table: TradeoffTable) -> str:
    """The metric against the median latency, the Pareto front highlighted and joined."""
    import pandas as pd

    from workbench.evaluation.metrics import metric_text

    df = table.df
    if not {"latency_ms", "metric_value"} <= set(df):
        return ""
    front = df.get("pareto", pd.Series(False, index=df.index)).fillna(False).astype(bool)
    points = [
        Point(
            row["latency_ms"],
            row["metric_value"],
            f"{row.get('variant', '?')} on {row.get('backend', '?')}/{row.get('device', '?')}",
            on_front,
        )
        for row, on_front in zip(df.to_dict(orient="records"), list(front), strict=True)
    ]
    return scatter_svg(
        points,
        "median latency",
        table.metric,
        y_fmt=lambda v: metric_text(table.metric, v),
        highlight="Pareto front",
    )


def sensitivity_svg(report: SensitivityReport) -> str:
    """The layers whose transform alone costs the most of the metric (points), at most 8."""
    import pandas as pd

    if "metric_delta" not in report or not report["metric_delta"].notna().any():
        return ""
    # a drop is a fall of the metric, in points (x100); a rise shows as no drop
    drops = (-100 * report["metric_delta"].astype(float)).clip(lower=0) + 0.0  # no -0.00
    rows = pd.DataFrame(report).assign(drop=drops).dropna(subset=["drop"])
    if "error" in rows:  # a layer whose transform failed measured nothing
        rows = rows[rows["error"].isna()]
    rows = rows.sort_values("drop", ascending=False).head(8)
    colors = colors_for(str(op) for op in rows["op_type"])
    bars = [
        Bar(str(r.layer), float(r.drop), color=colors[str(r.op_type)]) for r in rows.itertuples()
    ]
    metric = report.attrs.get("metric", "metric")
    return bars_svg(
        [("", bars)],
        f"{metric} drop with only this layer transformed (points)",
        fmt=lambda v: f"{v:.2f}",
        legend=sorted(colors.items()),
    )


def generation_svg(profile: GenerationProfile, tokens: int = 16) -> str:
    """A generation's first ``tokens`` tokens, one bar each: the prefill (TTFT) first,
    then each decode step; the median over the timed runs, whiskers their range.

    Args:
        profile: the `GenerationProfile` to draw.
        tokens: how many tokens from the start (a long generation is cut, and says so).
    """
    import numpy as np

    times = profile.token_times()[:, :tokens]
    colors = colors_for(["prefill", "decode"])
    bars = [
        Bar(
            "token 1 (prefill)" if i == 0 else f"token {i + 1}",
            float(np.median(column)),
            float(column.min()),
            float(column.max()),
            colors["prefill" if i == 0 else "decode"],
        )
        for i, column in enumerate(times.T)
    ]
    cut = f", first {tokens} of {profile.output_length}" if profile.output_length > tokens else ""
    axis = f"latency per generated token{cut}: median of {profile.ttft.n} runs; whisker: range"
    return bars_svg([("", bars)], axis, legend=list(colors.items()))
