"""Every figure of workbench: pure functions from result objects to pictures.

Two kinds, one style (`workbench.viz.style`: palettes, fonts, axis formats):

- **plotly figures** (`figures`: profile, compare, roofline, trade-off, sensitivity;
  `graph`, `serving`, `runtimes`, `plan`): interactive, for the dashboard and reports.
  Each takes measured data and returns a new ``plotly.graph_objects.Figure``; none
  measures anything or mutates its input; missing data gives a figure that says so.
- **inline SVG figures** (`inline` draws, `reprs` picks each result's key figure): the
  figure in a result's notebook view. Plain SVG text, so it renders offline, on GitHub
  and nbviewer and in exported HTML without JavaScript, and needs no plotting library.

The plotly names below (``viz.layer_latency``...) load plotly on first use, so importing
this package, or its inline figures, costs nothing.

Example:
    >>> import workbench as wb
    >>> from workbench import viz
    >>> p = wb.profile(wb.samples.load("digits-cnn"), "onnxruntime", batch_size=32)
    >>> viz.layer_latency(p).show()
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.viz.figures import (
        OP_TYPE_ALIASES,
        OP_TYPE_COLORS,
        PRECISION_COLORS,
        canonical_op_type,
        empty_figure,
        labels,
        latency_distribution,
        latency_timeline,
        layer_comparison,
        layer_latency,
        log_axis,
        memory,
        op_type_breakdown,
        op_type_color,
        pareto_mask,
        precision_color,
        precision_of,
        roofline,
        run_color,
        sensitivity,
        technique_of,
        time_share,
        tradeoff,
        unattributed_ms,
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


def __getattr__(name: str) -> Any:
    # a submodule is imported as itself (``from workbench.viz import inline`` must not
    # load plotly); any other name is one of the plotly figures'
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    return getattr(importlib.import_module("workbench.viz.figures"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
