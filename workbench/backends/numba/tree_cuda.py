"""Tree ensembles on the GPU: one CUDA thread walks every tree for one row.

The walk and the leaf accumulation are the CPU kernel's own Python functions
(`tree_ops.walk`, `tree_ops.accumulate`) compiled as CUDA device functions, so the two
devices cannot drift apart. The per-row sums come back to the host, where
`tree_ops.finish_rows` applies base values, post-transform and labels exactly as on the
CPU, and the results go back up (a tree node's outputs are small: a few numbers a row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from workbench.backends.numba import tree_ops
from workbench.backends.numba.graph import Node

_walk = cuda.jit(device=True)(tree_ops.walk)
_accumulate = cuda.jit(device=True)(tree_ops.accumulate)
#: threads per block of the row kernel
THREADS = 128


@cuda.jit
def _sums(x, roots, feature, threshold, mode, false_child, missing_true, leaf_start,
          leaf_count, leaf_target, leaf_weight, aggregate, acc, has):  # fmt: skip
    """``acc[r]`` = the aggregated leaf weights of row ``r`` (grid-stride over rows)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for r in range(start, x.shape[0], stride):
        for t in range(roots.shape[0]):
            leaf = _walk(x, r, roots[t], feature, threshold, mode, false_child, missing_true)
            _accumulate(acc[r], has[r], leaf_start[leaf], leaf_count[leaf], leaf_target,
                        leaf_weight, aggregate)  # fmt: skip


def tree_ensemble(node: Node, ins: list[Any], outs: list[Any] | None) -> list[Any]:
    """The CUDA kernel of the three tree ops (outputs as in `tree_ops.bind_tree_ensemble`)."""
    plan = tree_ops.plan_of(node)
    trees = plan.trees
    arrays = node.cache.get("tree_device")
    if arrays is None:  # the trees go up once per session
        names = ("roots", "feature", "threshold", "mode", "false_child", "missing_true",
                 "leaf_start", "leaf_count", "leaf_target", "leaf_weight")  # fmt: skip
        arrays = [cuda.to_device(np.ascontiguousarray(getattr(trees, n))) for n in names]
        node.cache["tree_device"] = arrays
    x = ins[0]
    rows = x.shape[0]
    acc = cuda.to_device(np.zeros((rows, trees.n_targets)))
    has = cuda.to_device(np.zeros((rows, trees.n_targets), dtype=np.bool_))
    blocks = max(1, min(1024, (rows + THREADS - 1) // THREADS))
    _sums[blocks, THREADS](x, *arrays, trees.aggregate, acc, has)
    scores = np.empty((rows, plan.out_width), np.float32)
    label = np.empty(rows, dtype=np.int64)
    labels = trees.class_labels if len(trees.class_labels) else np.zeros(1, np.int64)
    tree_ops.finish_rows(acc.copy_to_host(), trees.n_trees, trees.aggregate,
                         trees.post_transform, np.asarray(trees.base_values, np.float64),
                         plan.kind, plan.scored, plan.binary_case, plan.all_positive, labels,
                         scores, label)  # fmt: skip
    results = [label, scores] if plan.kind == 1 else [scores]
    if outs is None:
        return [cuda.to_device(a) for a in results]
    for out, host in zip(outs, results, strict=True):
        out.copy_to_device(host)
    return outs
