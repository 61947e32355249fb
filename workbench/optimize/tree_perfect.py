"""Hummingbird's perfect-tree-traversal strategy (``perf_tree_trav``) for tree tensors.

Every tree is padded to a perfect tree of the ensemble's depth
(`workbench.loaders.tree_graph.perfect_trees`, the layout the Numba kernel walks), so
that a walk is ``depth`` identical steps with no branch and no leaf test: at level
``L`` a row's position in tree ``t`` is ``p = t * 2**L + i`` (slot ``i`` of the level),
and the step is ``p = 2 * p + (x[feature[p]] >= threshold[p])``, which is the position
at level ``L + 1`` with no offset to add. Each level keeps its own flat tables, so a
step is five tensor ops over ``(rows, trees)``: two table lookups, one gather of the
rows' features, one comparison, one multiply-add. The first level reads one feature
per tree, so it is a column selection instead of a gather. The leaves found are summed
by a product with each tree's one-hot target column (one GEMM) when every tree adds to
one target (boosted models), else gathered with all their targets and summed.

Missing values need no test of their own: the input is widened to ``[x | x]`` with NaN
read as -inf in the first copy and +inf in the second, and a split whose missing values
go left reads the first copy (-inf is below every threshold), one whose missing values
go right the second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.loaders.tree_graph import PerfectTrees, TreeArrays, perfect_trees

__all__ = ["perfect_ensemble"]


def perfect_ensemble(trees: TreeArrays) -> Any | None:
    """The ``perf_tree_trav`` ensemble module of ``trees`` (rows in, ``(rows, targets)``
    float32 sums out, like the other strategies), or None where the trees do not pad
    into perfect trees (see `perfect_trees`; also a ``<`` split at -inf whose missing
    values go left, which the -inf reading of NaN cannot express)."""
    padded = perfect_trees(trees, np.float32)
    if padded is None or padded.columns.size == 0:
        return None
    slots = (1 << padded.depth) - 1
    left_at_minus_inf = (padded.threshold[:, :slots] == -np.inf) & padded.missing_left
    if left_at_minus_inf.any():
        return None
    return _module_class()(padded, trees.n_targets)


def _module_class() -> type:
    """The torch module, built on first use so that importing this file needs no torch."""
    import torch
    from torch import nn

    class PerfTreeTrav(nn.Module):
        """All rows down all perfect trees, one computed step a level (no branch)."""

        fill: torch.Tensor
        trees: torch.Tensor
        leaf: torch.Tensor
        to_targets: torch.Tensor

        def __init__(self, p: PerfectTrees, n_targets: int) -> None:
            super().__init__()
            n_trees, n_features = p.feature.shape[0], int(p.feature.max(initial=0)) + 1
            self.depth, self.n_trees, self.n_targets = p.depth, n_trees, n_targets
            self.compare_double = p.threshold.dtype == np.float64
            # which copies of x the splits read: NaN as -inf (missing left), as +inf (right)
            sides = [s for s in (True, False) if (p.missing_left == s).any()] or [True]
            self.copies = len(sides)
            fill = np.concatenate([np.full(n_features, -np.inf if s else np.inf) for s in sides])
            self.n_features = n_features
            self.register_buffer("fill", torch.from_numpy(fill.astype(p.threshold.dtype)))
            right_copy = n_features * (~p.missing_left) if self.copies == 2 else 0
            feature = p.feature.astype(np.int64) + right_copy
            for level in range(p.depth):
                first, last = (1 << level) - 1, (1 << (level + 1)) - 1
                table = np.ascontiguousarray(feature[:, first:last].reshape(-1))
                self.register_buffer(f"feature{level}", torch.from_numpy(table))
                limits = np.ascontiguousarray(p.threshold[:, first:last].reshape(-1))
                self.register_buffer(f"threshold{level}", torch.from_numpy(limits))
            self.register_buffer("trees", torch.arange(n_trees, dtype=torch.int32))
            self._leaves(p, n_targets)

        def _leaves(self, p: PerfectTrees, n_targets: int) -> None:
            import torch

            writes = (p.leaves != 0).any(1)  # (trees, columns): the targets each tree adds to
            self.one_target = bool((writes.sum(1) <= 1).all())
            if self.one_target:  # each bottom slot's one value; a GEMM routes trees to targets
                leaf = p.leaves.sum(2).reshape(-1)
                to_targets = np.zeros((self.n_trees, n_targets), np.float32)
                to_targets[np.arange(self.n_trees), p.columns[writes.argmax(1)]] = 1.0
            else:
                leaf = np.zeros((p.leaves.shape[0] * p.leaves.shape[1], n_targets))
                leaf[:, p.columns] = p.leaves.reshape(-1, p.columns.size)
                to_targets = np.zeros((0, n_targets), np.float32)
            self.register_buffer("leaf", torch.from_numpy(leaf.astype(np.float32)))
            self.register_buffer("to_targets", torch.from_numpy(to_targets))

        def extra_repr(self) -> str:
            return f"strategy=perf_tree_trav, trees={self.n_trees}, depth={self.depth}"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            x = x[:, : self.n_features]
            x = x.to(torch.float64) if self.compare_double else x
            if self.copies == 2:
                x = torch.cat([x, x], 1)
            x = torch.where(torch.isnan(x), self.fill, x)
            position = self.trees.expand(n, -1)
            for level in range(self.depth):
                feature = getattr(self, f"feature{level}")
                threshold = getattr(self, f"threshold{level}")
                if level == 0:  # one split per tree: the same columns for every row
                    right = x.index_select(1, feature) >= threshold
                else:
                    at = position.reshape(-1)
                    value = x.gather(1, feature.index_select(0, at).view(n, -1))
                    right = value >= threshold.index_select(0, at).view(n, -1)
                position = torch.add(right, position, alpha=2)
            if self.one_target:
                return self.leaf.index_select(0, position.reshape(-1)).view(n, -1) @ self.to_targets
            found = self.leaf.index_select(0, position.reshape(-1))
            return found.view(n, self.n_trees, self.n_targets).sum(1)

    return PerfTreeTrav
