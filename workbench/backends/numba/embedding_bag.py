"""A fused gather-reduce embedding bag: ``out[b] = reduce(w[k] * table[ids[k]] for k in bag b)``.

One pass reads each looked-up row once and accumulates it into its bag's output (no
``(ids, width)`` intermediate as Gather then ReduceSum makes). The CPU kernel runs the
bags in parallel (``prange``) when the batch pays for a parallel region
(`workbench.backends.numba.cpu.pick`), serially otherwise; the CUDA kernel runs one
thread per (bag, column), grid-stride, so a warp reads consecutive columns of one row.
Bags are given torch's way: 2-D ids ``(bags, size)`` (fixed-size bags) or 1-D ids with
``offsets`` (bag ``b`` is ``ids[offsets[b]:offsets[b + 1]]``; an empty bag gives zeros).
Modes ``sum`` and ``mean``; ``per_sample_weights`` with ``sum``, as in torch.

Ids and offsets are checked on the host before any kernel runs: a bad id would read
outside the table inside a kernel, where no clear error can be raised.

The numba backend's executor runs an exported bag (Gather + ReduceSum/ReduceMean, see
`workbench.backends.numba.embedding_bag_graph`) through the same kernel
(`bind_embedding_bag`), checking the ids of every run with one pass before it. The CUDA
kernel is `workbench.backends.numba.embedding_bag_cuda`, a function only (the numba-cuda
executor still runs the Gather and the reduction apart).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from workbench.backends.numba.cpu import pick, twin
from workbench.errors import InputError

__all__ = ["MODES", "bind_embedding_bag", "checked_bags", "embedding_bag"]

MODES = {"sum": 0, "mean": 1}

#: Elements (lookups x width) from which the bags run in parallel. Lower than the other
#: kernels' `cpu.PARALLEL_MIN_WORK`: bags are independent reads of scattered rows, with
#: no BLAS call beside them whose threads would want the same cores.
BAG_PARALLEL_MIN_WORK = 1 << 16


#: Lookups ahead whose row is prefetched (FBGEMM's default distance): the rows of a
#: batch are scattered over the table, so the hardware prefetcher cannot guess them.
PREFETCH_AHEAD = 16


@intrinsic
def _prefetch_row(typingctx, table, row):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``llvm.prefetch`` of the first cache line of ``table[row]`` (a read, kept in cache)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer2(
            context,
            builder,
            data=array.data,
            shape=cgutils.unpack_tuple(builder, array.shape),
            strides=cgutils.unpack_tuple(builder, array.strides),
            layout=array_type.layout,
            inds=[args[1], context.get_constant(types.intp, 0)],
        )
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        prefetch = cgutils.get_or_insert_function(
            builder.module, function_type, "llvm.prefetch.p0i8"
        )
        builder.call(prefetch, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(table, types.intp), codegen


def _bags(table, ids, offsets, weights, weighted, mode, out):  # pragma: no cover - jitted
    # the first row of a bag is written, the others added: no zeroing pass over the output
    width, n = table.shape[1], ids.size
    for b in prange(out.shape[0]):
        start, end = offsets[b], offsets[b + 1]
        dst = out[b]
        if end == start:
            for c in range(width):
                dst[c] = 0.0
        for k in range(start, end):
            if k + PREFETCH_AHEAD < n:
                _prefetch_row(table, ids[k + PREFETCH_AHEAD])
            row = table[ids[k]]
            scale = weights[k] if weighted else 1.0
            if k == start:
                for c in range(width):
                    dst[c] = scale * row[c]
            else:
                for c in range(width):
                    dst[c] += scale * row[c]
        if mode == 1 and end > start:
            for c in range(width):
                dst[c] /= end - start


#: parallel over bags, and serial
_KERNELS = twin(_bags)


@njit(cache=True, nogil=True)
def _first_bad(ids, rows):  # pragma: no cover - jitted
    for k in range(ids.size):
        if ids[k] < 0 or ids[k] >= rows:
            return k
    return -1


def _check_run(ids: np.ndarray, rows: int, table: str) -> None:
    """One pass over a run's ids; the first outside ``[0, rows)`` raises, named."""
    bad = _first_bad(ids.reshape(-1), rows)
    if bad >= 0:
        where = [int(i) for i in np.unravel_index(bad, ids.shape)]
        raise InputError(
            f"table {table} ({rows} rows) got id {int(ids.flat[bad])} at {where}; "
            f"ids must be in [0, {rows})"
        )


def bind_embedding_bag(
    node: Any, ins: list[Any], outs: list[Any] | None
) -> tuple[Callable[[], None], list[np.ndarray]]:
    """The executor's kernel for a fused bag node (`embedding_bag_graph.FUSED_OP`).

    ``ins`` is ``[table, ids, weights or None]``: 2-D ids ``(bags, size)`` run the fused
    kernel over fixed-size bags (parallel over bags for big batches); other ranks run the
    Gather and the reduction as the graph wrote them. Every run first checks its ids.

    Returns:
        ``(run, outputs)``: a callable doing one run into ``outputs``.

    Raises:
        InputError: an id outside the table (negative included: ONNX's Gather would count
            it from the end), or weights that do not match the ids, naming the table.
    """
    table, ids, weights = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    rows, width = table.shape
    name, mode = node.layer, node.attrs["mode"]
    if weights is not None and weights.shape != ids.shape:
        raise InputError(
            f"per-sample weights of table {name} have shape {list(weights.shape)}; its ids "
            f"have {list(ids.shape)} (one weight per id)"
        )
    keep = bool(node.attrs["keepdims"])
    if ids.ndim != 2:
        return _bind_unfused(table, ids, weights, mode, keep, name, outs)
    bags, size = ids.shape
    out = (
        outs[0]
        if outs is not None
        else np.empty((bags, 1, width) if keep else (bags, width), table.dtype)
    )
    flat_out = out.reshape(bags, width)
    offsets = np.arange(bags + 1, dtype=np.int64) * size
    dummy = np.zeros(1, table.dtype)
    kernel = _KERNELS[0] if bags * size * width >= BAG_PARALLEL_MIN_WORK else _KERNELS[1]
    code = MODES[mode]

    def run() -> None:
        _check_run(ids, rows, name)
        scale = dummy if weights is None else weights.reshape(-1)
        kernel(table, ids.reshape(-1), offsets, scale, weights is not None, code, flat_out)

    return run, [out]


def _bind_unfused(
    table: np.ndarray,
    ids: np.ndarray,
    weights: np.ndarray | None,
    mode: str,
    keep: bool,
    name: str,
    outs: list[Any] | None,
) -> tuple[Callable[[], None], list[np.ndarray]]:
    """Gather then reduce over axis 1, as the graph wrote them (ids not 2-D)."""

    def value() -> np.ndarray:
        _check_run(ids, table.shape[0], name)
        rows = np.take(table, ids, axis=0)
        if weights is not None:
            rows = rows * weights[..., None]
        reduce = np.sum if mode == "sum" else np.mean
        return np.asarray(reduce(rows, axis=1, keepdims=keep), table.dtype)

    out = outs[0] if outs is not None else np.empty_like(value())

    def run() -> None:
        np.copyto(out, value())

    return run, [out]


def checked_bags(
    ids: np.ndarray, offsets: np.ndarray | None, weights: np.ndarray | None, rows: int, table: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """1-D ids, offsets with the end appended, weights (or a dummy) and whether weighted;
    checked, so that no kernel can read outside the table."""
    ids = np.asarray(ids)
    if ids.ndim == 2:
        if offsets is not None:
            raise InputError(f"table {table}: 2-D ids are fixed-size bags; give no offsets")
        offsets = np.arange(0, ids.size + 1, max(ids.shape[1], 1), dtype=np.int64)
        if ids.shape[1] == 0:
            offsets = np.zeros(ids.shape[0] + 1, np.int64)
    elif ids.ndim == 1:
        if offsets is None:
            raise InputError(f"table {table}: 1-D ids need offsets (where each bag starts)")
        offsets = np.append(np.asarray(offsets, np.int64), ids.size)
    else:
        raise InputError(f"table {table}: ids must be 1-D (with offsets) or 2-D, got {ids.ndim}-D")
    flat = ids.reshape(-1).astype(np.int64)
    bad = np.flatnonzero((flat < 0) | (flat >= rows))
    if bad.size:
        raise InputError(
            f"table {table} ({rows} rows) got id {int(flat[bad[0]])} at position {int(bad[0])}; "
            f"ids must be in [0, {rows})"
        )
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise InputError(
            f"offsets of table {table} must start at 0 and never decrease, and stay within "
            f"its {flat.size} ids; got {offsets[:-1][:8].tolist()}"
        )
    if weights is None:
        return flat, offsets, np.zeros(1, np.float32), False
    weights = np.asarray(weights, np.float32).reshape(-1)
    if weights.size != flat.size:
        raise InputError(
            f"per-sample weights of table {table}: {weights.size} for {flat.size} ids "
            "(one weight per id)"
        )
    return flat, offsets, weights, True


def checked_mode(mode: str, weighted: bool, table: str) -> int:
    if mode not in MODES:
        raise InputError(f"table {table}: mode must be one of {list(MODES)}, got {mode!r}")
    if weighted and mode != "sum":
        raise InputError(f"table {table}: per-sample weights need mode 'sum', as in torch")
    return MODES[mode]


def embedding_bag(
    table: np.ndarray,
    ids: np.ndarray,
    offsets: np.ndarray | None = None,
    per_sample_weights: np.ndarray | None = None,
    mode: str = "sum",
    name: str = "table",
) -> np.ndarray:
    """The bags of ``ids`` reduced over ``table`` on the CPU, like ``F.embedding_bag``.

    Args:
        table: float ``(rows, width)``.
        ids: 2-D ``(bags, size)`` or 1-D with ``offsets``.
        offsets: start of each bag in 1-D ``ids``.
        per_sample_weights: one weight per id (mode ``sum``).
        mode: ``"sum"`` or ``"mean"``.
        name: the table's layer name, for error messages.

    Returns:
        ``(bags, width)`` in the table's dtype.

    Raises:
        InputError: an id outside the table, bad offsets or weights, an unknown mode.
    """
    table = np.ascontiguousarray(table)
    flat, ends, weights, weighted = checked_bags(
        ids, offsets, per_sample_weights, table.shape[0], name
    )
    code = checked_mode(mode, weighted, name)
    out = np.empty((ends.size - 1, table.shape[1]), table.dtype)
    # a parallel region costs more than a small batch of lookups (`cpu.PARALLEL_MIN_WORK`)
    pick(_KERNELS, flat.size * table.shape[1])(table, flat, ends, weights, weighted, code, out)
    return out
