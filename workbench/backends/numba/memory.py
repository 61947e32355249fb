"""The memory a Numba session holds for one input shape: its planned, bound buffers.

The executor allocates everything at planning time (see `workbench.backends.numba.executor`)
and a run allocates nothing, so the plan's buffers *are* the model's memory: the arena of
intermediate values (reused by liveness), the input buffers, the constants, and the
kernels' caches (packed weights, im2col and Winograd workspaces) made when binding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from workbench.backends.base import MemoryReport
from workbench.backends.numba.executor import Plan


def planned_memory(plan: Plan, consts: dict[str, Any]) -> MemoryReport:
    """Sum the buffers a bound plan holds.

    Args:
        plan: a plan after binding (the session staged and ran its inputs).
        consts: the graph's constants (weights), as the executor uploads them.

    Returns:
        A `MemoryReport` whose activation peak is the arena plus the kernels' caches (the
        run allocates nothing else), with each layer's planned output bytes.
    """
    caches = sum(_array_bytes(step.node.cache.values()) for step in plan.steps)
    by_layer: dict[str, int] = {}
    for step in plan.steps:
        if step.outs:  # views (Reshape, Flatten) own no buffer
            by_layer[step.node.layer] = by_layer.get(step.node.layer, 0) + _array_bytes(step.outs)
    return MemoryReport(
        source="numba executor's planned buffers (arena + kernel caches, allocated once)",
        activation_peak_bytes=plan.arena_bytes + caches,
        weights_bytes=_array_bytes(consts.values()),
        input_bytes=_array_bytes(plan.inputs.values()),
        by_layer_bytes=by_layer,
        notes=(
            f"activation peak = arena {plan.arena_bytes:,} B (intermediates, reused by "
            f"liveness) + kernel caches {caches:,} B (packed weights, workspaces)",
        ),
    )


def _array_bytes(values: Iterable[Any]) -> int:
    """Bytes of the arrays among ``values`` (host or device); other cached facts skipped."""
    return sum(int(v.nbytes) for v in values if hasattr(v, "shape") and hasattr(v, "nbytes"))
