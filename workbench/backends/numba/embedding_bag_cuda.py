"""The fused embedding bag on the GPU: one thread per (bag, column), grid-stride, so a
warp reads consecutive columns of one row; the host checks (`embedding_bag.checked_bags`)
are the CPU kernel's own."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from workbench.backends.numba.embedding_bag import checked_bags, checked_mode

__all__ = ["embedding_bag_cuda"]

#: threads per block
THREADS = 128


@cuda.jit
def _bags(table, ids, offsets, weights, weighted, mode, out):  # pragma: no cover - jitted
    width = table.shape[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.shape[0] * width, stride):
        b, c = i // width, i % width
        first, end = offsets[b], offsets[b + 1]
        acc = 0.0
        for k in range(first, end):
            acc += (weights[k] if weighted else 1.0) * table[ids[k], c]
        if mode == 1 and end > first:
            acc /= end - first
        out[b, c] = acc


def embedding_bag_cuda(
    table: Any,
    ids: np.ndarray,
    offsets: np.ndarray | None = None,
    per_sample_weights: np.ndarray | None = None,
    mode: str = "sum",
    name: str = "table",
) -> np.ndarray:
    """`embedding_bag` on the GPU (``table`` a host array or a Numba device array, kept
    on the device between calls); the ids are checked on the host first."""
    flat, ends, weights, weighted = checked_bags(
        ids, offsets, per_sample_weights, table.shape[0], name
    )
    code = checked_mode(mode, weighted, name)
    on_host = isinstance(table, np.ndarray)
    device_table = cuda.to_device(np.ascontiguousarray(table)) if on_host else table
    out = cuda.device_array((ends.size - 1, table.shape[1]), dtype=device_table.dtype)
    total = out.shape[0] * out.shape[1]
    if total:
        blocks = min((total + THREADS - 1) // THREADS, 1024)
        _bags[blocks, THREADS](
            device_table, cuda.to_device(flat), cuda.to_device(ends), cuda.to_device(weights),
            weighted, code, out,
        )  # fmt: skip
    result: np.ndarray = out.copy_to_host()
    return result
