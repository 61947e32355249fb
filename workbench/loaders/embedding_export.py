"""``nn.EmbeddingBag`` in an ONNX form the runtimes execute fast: Gather + a reduction.

torch's exporters emit an ``nn.EmbeddingBag`` as a ``Loop`` over the bags, which ONNX
Runtime runs many times slower than torch (docs/recommendation.md). While a model is
exported, `gather_bags` swaps each bag for `GatherBag`, the same computation written as
an embedding lookup followed by a sum, mean or max over the bag axis (fixed-size bags:
2-D ids) or a scatter-add over segments (1-D ids with offsets). The swap sits at the
same module path and holds the same weight, so every node keeps its canonical layer
name (``tables.3``); the original modules are put back afterwards.

Left to torch's own op (and so exported as the ``Loop``): bags with ``padding_idx``
(kept as they are), and ``max`` over offsets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["GatherBag", "gather_bags", "reduce_bags"]


def _module_class() -> type:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class GatherBag(nn.Module):
        """An ``nn.EmbeddingBag`` as Gather + ReduceSum/ReduceMean/ReduceMax (or a
        segment sum for offsets); the same weight tensor, not a copy."""

        def __init__(self, bag: nn.EmbeddingBag) -> None:
            super().__init__()
            self.weight = bag.weight
            self.mode = bag.mode
            self.include_last_offset = bag.include_last_offset

        def forward(
            self,
            input: torch.Tensor,
            offsets: torch.Tensor | None = None,
            per_sample_weights: torch.Tensor | None = None,
        ) -> torch.Tensor:
            if input.dim() == 1 and self.mode == "max":  # no scatter-max: torch's op (the Loop)
                assert offsets is not None  # torch requires offsets with 1-D input
                return F.embedding_bag(
                    input,
                    self.weight,
                    offsets,
                    mode="max",
                    include_last_offset=self.include_last_offset,
                )
            rows = F.embedding(input, self.weight)
            return reduce_bags(
                rows, input, offsets, per_sample_weights, self.mode, self.include_last_offset
            )

    return GatherBag


def reduce_bags(
    rows: Any,
    input: Any,
    offsets: Any,
    per_sample_weights: Any,
    mode: str,
    include_last_offset: bool,
) -> Any:
    """Looked-up ``rows`` of ``input``'s ids reduced into their bags, in export-friendly ops.

    2-D ids (fixed-size bags): a sum, mean or max over the bag axis. 1-D ids with
    ``offsets``: a scatter-add over segments, ``sum`` or ``mean`` (empty bags give zeros).
    Shared with `workbench.optimize.embeddings`, whose compressed tables look rows up
    their own way.
    """
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.unsqueeze(-1)
    if input.dim() == 2:
        if mode == "sum":
            return rows.sum(dim=1)
        if mode == "mean":
            return rows.mean(dim=1)
        return rows.amax(dim=1)
    assert offsets is not None  # torch requires offsets with 1-D input
    starts = offsets[:-1] if include_last_offset else offsets
    bags = starts.shape[0]
    # bag of each id: count the bag starts at or before it (empty bags repeat a start, so
    # they are skipped)
    marks = input.new_zeros(input.shape[0] + 1).scatter_add(0, starts[1:], input.new_ones(bags - 1))
    segment = marks.cumsum(0)[:-1]
    index = segment.unsqueeze(-1).expand(-1, rows.shape[1])
    total = rows.new_zeros(bags, rows.shape[1]).scatter_add(0, index, rows)
    if mode == "sum":
        return total
    counts = rows.new_zeros(bags).scatter_add(0, segment, rows.new_ones(segment.shape))
    return total / counts.clamp(min=1.0).unsqueeze(-1)


GatherBag: Any = None  # the class, built on first use (torch is imported lazily)


def _convertible(bag: Any) -> bool:
    return bag.padding_idx is None


@contextlib.contextmanager
def gather_bags(module: Any) -> Iterator[list[str]]:
    """While in the block, each convertible ``nn.EmbeddingBag`` in ``module`` is a
    `GatherBag` at the same path; yields those paths. Restores the originals on exit."""
    global GatherBag
    from torch import nn

    swapped: list[tuple[Any, str, Any]] = []
    paths = []
    for path, sub in list(module.named_modules()):
        if type(sub) is not nn.EmbeddingBag or not _convertible(sub):
            continue
        if GatherBag is None:
            GatherBag = _module_class()
        parent_path, _, attr = path.rpartition(".")
        parent = module.get_submodule(parent_path) if parent_path else module
        swapped.append((parent, attr, sub))
        paths.append(path)
        setattr(parent, attr, GatherBag(sub))
    try:
        yield paths
    finally:
        for parent, attr, sub in reversed(swapped):
            setattr(parent, attr, sub)
