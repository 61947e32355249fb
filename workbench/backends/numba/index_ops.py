"""Index arithmetic ops on the CPU: the gather/scatter family and CumSum.

GatherND, GatherElements, ScatterND and ScatterElements turn their index tensors into
NumPy fancy-index tuples (`nd_index`, `element_index`, shared with the CUDA kernels'
checks) and let NumPy's C loops move the data; indices are activations in the models
that use them (BERT's pooled token, a mask's positions), so they are read on every run.
Negative indices count from the end, as the spec says; an index out of range raises
`BackendError` on any run, never reads or writes past a buffer.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from workbench.backends.numba.graph import Node
from workbench.errors import BackendError, UnsupportedModelError

Arrays = list[Any]

#: ScatterND / ScatterElements ``reduction`` -> the ufunc whose ``at`` combines duplicates
#: (``none``: plain assignment, the last write wins, as ONNX Runtime does).
SCATTER_REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _out(outs: Arrays | None, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return outs[0] if outs is not None else np.empty(shape, dtype=dtype)


def _wrapped(index: np.ndarray, size: Any) -> np.ndarray:
    """``index`` with negative entries counted from the end of an axis of ``size``."""
    index = np.asarray(index, dtype=np.int64)
    return np.where(index < 0, index + size, index)


def nd_index(data_shape: tuple[int, ...], indices: np.ndarray, batch_dims: int) -> tuple[Any, ...]:
    """The fancy index of GatherND/ScatterND: ``data[result]`` has shape
    ``indices.shape[:-1] + data_shape[batch_dims + k:]`` for ``k = indices.shape[-1]``."""
    k = indices.shape[-1]
    if batch_dims + k > len(data_shape):
        raise UnsupportedModelError(
            f"GatherND/ScatterND: index depth {k} with batch_dims {batch_dims} exceeds "
            f"the data's rank {len(data_shape)}"
        )
    lead = indices.shape[:-1]
    grid: list[Any] = list(np.indices(lead, sparse=True)[:batch_dims]) if batch_dims else []
    tails = [_wrapped(indices[..., j], data_shape[batch_dims + j]).reshape(lead) for j in range(k)]
    return (*grid, *tails)


def element_index(indices: np.ndarray, axis: int, axis_size: int) -> tuple[Any, ...]:
    """The fancy index of GatherElements/ScatterElements: position ``p`` of ``indices``
    addresses ``data[p[0], ..., indices[p], ..., p[-1]]``."""
    grid: list[Any] = list(np.indices(indices.shape, sparse=True))
    grid[axis] = _wrapped(indices, axis_size)
    return tuple(grid)


def _take(node: Node, data: np.ndarray, index: tuple[Any, ...]) -> np.ndarray:
    """``data[index]``; an index outside the data is a `BackendError` on every run."""
    try:
        return data[index]
    except IndexError as exc:
        what = f"{node.op_type} {node.name!r}"
        raise BackendError(f"{what}: an index is out of range ({exc})") from exc


def gather_nd(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    data, indices = ins
    index = nd_index(data.shape, np.asarray(indices), int(node.attrs.get("batch_dims", 0)))
    values = _take(node, data, index)
    out = _out(outs, values.shape, data.dtype)
    np.copyto(out, values)
    return [out]


def gather_elements(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    data, indices = ins
    axis = int(node.attrs.get("axis", 0)) % data.ndim
    out = _out(outs, indices.shape, data.dtype)
    np.copyto(out, _take(node, data, element_index(np.asarray(indices), axis, data.shape[axis])))
    return [out]


def _scatter(node: Node, data: np.ndarray, index: tuple[Any, ...], updates: np.ndarray,
             outs: Arrays | None) -> Arrays:  # fmt: skip
    out = _out(outs, data.shape, data.dtype)
    np.copyto(out, data)
    reduction = node.attrs.get("reduction", "none")
    if isinstance(reduction, bytes):
        reduction = reduction.decode()
    if reduction not in SCATTER_REDUCTIONS and reduction != "none":
        raise UnsupportedModelError(f"{node.op_type} {node.name!r}: reduction={reduction!r}")
    _take(node, out, index)  # checks the indices before anything is written
    if reduction == "none":
        out[index] = updates
    else:
        SCATTER_REDUCTIONS[reduction].at(out, index, updates)
    return [out]


def scatter_nd(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    data, indices, updates = ins
    return _scatter(node, data, nd_index(data.shape, np.asarray(indices), 0), updates, outs)


def scatter_elements(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    data, indices, updates = ins
    axis = int(node.attrs.get("axis", 0)) % data.ndim
    index = element_index(np.asarray(indices), axis, data.shape[axis])
    return _scatter(node, data, index, updates, outs)


def cumsum(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """CumSum along the axis of input 1, ``exclusive`` and ``reverse`` as attributes."""
    x = ins[0]
    axis = int(np.asarray(ins[1]).reshape(-1)[0]) % x.ndim
    out = _out(outs, x.shape, x.dtype)
    flip = functools.partial(np.flip, axis=axis)
    source = flip(x) if node.attrs.get("reverse", 0) else x
    target = flip(out) if node.attrs.get("reverse", 0) else out
    if node.attrs.get("exclusive", 0) and x.shape[axis]:
        head = (slice(None),) * axis
        target[(*head, 0)] = 0
        np.cumsum(source[(*head, slice(0, -1))], axis=axis, out=target[(*head, slice(1, None))])
    else:
        np.cumsum(source, axis=axis, out=target)
    return [out]


def is_nan(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    out = _out(outs, ins[0].shape, np.bool_)
    np.isnan(ins[0], out=out)
    return [out]


def is_inf(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """IsInf; ``detect_negative``/``detect_positive`` (default 1) pick the signs."""
    x = ins[0]
    out = _out(outs, x.shape, np.bool_)
    negative, positive = inf_signs(node)
    np.isinf(x, out=out)
    if not (negative and positive):
        np.logical_and(out, (x > 0) if positive else (x < 0), out=out)
        if not (negative or positive):
            out.fill(False)
    return [out]


def inf_signs(node: Node) -> tuple[bool, bool]:
    """IsInf's (detect_negative, detect_positive)."""
    attrs = node.attrs
    return bool(attrs.get("detect_negative", 1)), bool(attrs.get("detect_positive", 1))


def reduce_extra(op: str, x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    """ReduceL1/L2/SumSquare/LogSum/LogSumExp of ``x`` over ``axes``, float64 sums."""
    wide = x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x
    if op == "ReduceL1":
        return np.sum(np.abs(wide), axis=axes, keepdims=keep)
    if op == "ReduceL2":
        return np.sqrt(np.sum(wide * wide, axis=axes, keepdims=keep))
    if op == "ReduceSumSquare":
        return np.sum(wide * wide, axis=axes, keepdims=keep)
    with np.errstate(divide="ignore"):  # log(0) is -inf, as the spec has it (empty sets)
        if op == "ReduceLogSum":
            return np.log(np.sum(wide, axis=axes, keepdims=keep))
        # ReduceLogSumExp, shifted by the maximum so exp never overflows
        if not math.prod(x.shape[a] for a in axes):
            return np.log(np.sum(np.exp(wide), axis=axes, keepdims=keep))
        top = np.max(wide, axis=axes, keepdims=True)
        top = np.where(np.isfinite(top), top, 0)
        total = np.log(np.sum(np.exp(wide - top), axis=axes, keepdims=True)) + top
    return total if keep else np.squeeze(total, axis=axes)


#: The reductions `reduce_extra` computes.
EXTRA_REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")
