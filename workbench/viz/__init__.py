"""Every figure of workbench: pure functions from result objects to pictures.

One module per family, one style (`style`: palettes, ink, font, axis formats, the empty
figure):

- **plotly figures**, interactive, for the dashboard and reports: `profile` (per-layer
  latency, time shares, op types, memory, latency distribution and timeline), `compare`
  (aligned layers of several profiles), `embeddings` (cache cliffs of embedding lookups,
  bytes per table), `generate` (generation profiles: per-token
  latency, per-layer per phase, context depth, decode roofline), `rooflines`, `tradeoffs`
  (Pareto front, sensitivity), `graph`, `serving`, `runtimes`, `plan`. Each takes measured data and
  returns a new ``plotly.graph_objects.Figure``; none measures anything or mutates its
  input; missing data gives a figure that says so.
- **inline SVG figures** (`inline` draws, `reprs` picks each result's key figure): the
  figure in a result's notebook view. Plain SVG text, so it renders offline, on GitHub
  and nbviewer and in exported HTML without JavaScript, and needs no plotting library.

The names below (``viz.layer_latency``, ``viz.op_type_color``...) load their module on
first use, so importing this package, or its inline figures, loads no plotly. A module
is never named like a figure (``rooflines`` holds ``roofline``): an imported submodule
would hide the function of the same name.

Example:
    >>> import workbench as wb
    >>> from workbench import viz
    >>> p = wb.profile(wb.samples.load("digits-cnn"), "onnxruntime", batch_size=32)
    >>> viz.layer_latency(p).show()
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.evaluation.pareto import pareto_mask
    from workbench.viz.compare import layer_comparison
    from workbench.viz.embeddings import cache_cliffs, table_bytes
    from workbench.viz.generate import (
        context_depth,
        decode_roofline,
        phase_layer_latency,
        phase_roofline,
        token_latency,
    )
    from workbench.viz.placement import placement_figure
    from workbench.viz.plan import plan_cost_figure
    from workbench.viz.profile import (
        labels,
        latency_distribution,
        latency_timeline,
        layer_latency,
        memory,
        op_type_breakdown,
        time_share,
        unattributed_ms,
    )
    from workbench.viz.rooflines import roofline
    from workbench.viz.style import (
        OP_TYPE_ALIASES,
        OP_TYPE_COLORS,
        PRECISION_COLORS,
        canonical_op_type,
        empty_figure,
        log_axis,
        op_type_color,
        precision_color,
        precision_of,
        run_color,
    )
    from workbench.viz.tradeoffs import lm_tradeoff_figure, sensitivity, technique_of, tradeoff

#: each public name -> the module that defines it (imported when the name is first used)
_HOMES: dict[str, str] = {
    **dict.fromkeys(
        ("OP_TYPE_ALIASES", "OP_TYPE_COLORS", "PRECISION_COLORS", "canonical_op_type",
         "empty_figure", "log_axis", "op_type_color", "precision_color", "precision_of",
         "run_color"),
        "workbench.viz.style",
    ),
    **dict.fromkeys(
        ("labels", "latency_distribution", "latency_timeline", "layer_latency", "memory",
         "op_type_breakdown", "time_share", "unattributed_ms"),
        "workbench.viz.profile",
    ),
    "layer_comparison": "workbench.viz.compare",
    **dict.fromkeys(
        (
            "context_depth", "decode_roofline", "phase_layer_latency", "phase_roofline",
            "token_latency",
        ),
        "workbench.viz.generate",
    ),
    "roofline": "workbench.viz.rooflines",
    "placement_figure": "workbench.viz.placement",
    "plan_cost_figure": "workbench.viz.plan",
    **dict.fromkeys(("cache_cliffs", "table_bytes"), "workbench.viz.embeddings"),
    **dict.fromkeys(
        ("lm_tradeoff_figure", "sensitivity", "technique_of", "tradeoff"), "workbench.viz.tradeoffs"
    ),
    "pareto_mask": "workbench.evaluation.pareto",
}  # fmt: skip
__all__ = [
    "OP_TYPE_ALIASES",
    "OP_TYPE_COLORS",
    "PRECISION_COLORS",
    "cache_cliffs",
    "canonical_op_type",
    "context_depth",
    "decode_roofline",
    "empty_figure",
    "labels",
    "latency_distribution",
    "latency_timeline",
    "layer_comparison",
    "layer_latency",
    "lm_tradeoff_figure",
    "log_axis",
    "memory",
    "op_type_breakdown",
    "op_type_color",
    "pareto_mask",
    "phase_layer_latency",
    "phase_roofline",
    "placement_figure",
    "plan_cost_figure",
    "precision_color",
    "precision_of",
    "roofline",
    "run_color",
    "sensitivity",
    "table_bytes",
    "technique_of",
    "time_share",
    "token_latency",
    "tradeoff",
    "unattributed_ms",
]


def __getattr__(name: str) -> Any:
    # a figure's name loads its module (plotly with it), a submodule's name the submodule
    # (``from workbench.viz import inline`` loads no plotly); any other name gets the
    # module's own AttributeError, so hasattr() keeps working
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    return object.__getattribute__(sys.modules[__name__], name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
