"""CUDA kernels of the index and QDQ ops (the CPU's `index_ops` and `quant_ops`).

One thread per output (or update) element with grid-stride loops, as in `cuda`. Index
tensors are device arrays, read where they are; negative indices count from the end.
Scatter with ``reduction="add"`` adds atomically; ``mul``/``max``/``min`` run their
updates in order on one thread (duplicate indices must combine, and CUDA has no atomic
multiply), which is slow but rare. CumSum scans one (outer, inner) strip per thread.
"""

from __future__ import annotations

import math

from numba import cuda, float32, float64

#: Scatter reductions, by the node's ``reduction`` attribute.
SCATTER_CODES = {"none": 0, "add": 1, "mul": 2, "max": 3, "min": 4}
#: `norm_rows` op codes (the reductions that `cuda.reduce_rows` does not do).
NORM_CODES = {
    "ReduceL1": 0,
    "ReduceL2": 1,
    "ReduceSumSquare": 2,
    "ReduceLogSum": 3,
    "ReduceLogSumExp": 4,
}


@cuda.jit(device=True)
def _wrap(index, size):
    return index + size if index < 0 else index


@cuda.jit(device=True)
def _combine(code, old, new):
    if code == 2:
        return old * new
    if code == 3:
        return new if new > old else old
    if code == 4:
        return new if new < old else old
    return new


@cuda.jit(device=True)
def _element_offset(e, shape, strides, axis, index, axis_size):
    """The offset in the data of element ``e`` of an index tensor of ``shape``, with the
    coordinate along ``axis`` replaced by ``index`` (GatherElements/ScatterElements)."""
    offset = 0
    rest = e
    for d in range(shape.size - 1, -1, -1):
        coord = rest % shape[d]
        rest //= shape[d]
        if d == axis:
            coord = _wrap(index, axis_size)
        offset += coord * strides[d]
    return offset


@cuda.jit
def gather_elements(x, index, out, shape, strides, axis, axis_size):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        out[e] = x[_element_offset(e, shape, strides, axis, index[e], axis_size)]


@cuda.jit
def scatter_elements(out, index, updates, shape, strides, axis, axis_size, code):
    """``out[offset(e)] = updates[e]`` (or combined): parallel for none/add, one thread
    in order for mul/max/min."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    if code >= 2:
        if start == 0:
            for e in range(updates.size):
                at = _element_offset(e, shape, strides, axis, index[e], axis_size)
                out[at] = _combine(code, out[at], updates[e])
        return
    for e in range(start, updates.size, stride):
        at = _element_offset(e, shape, strides, axis, index[e], axis_size)
        if code == 1:
            cuda.atomic.add(out, at, updates[e])
        else:
            out[at] = updates[e]


@cuda.jit(device=True)
def _nd_offset(index, n, dims, strides):
    """The offset (in slices) that row ``n`` of an [N, k] index tensor addresses."""
    offset = 0
    for j in range(dims.size):
        offset += _wrap(index[n, j], dims[j]) * strides[j]
    return offset


@cuda.jit
def gather_nd(data, index, out, dims, strides):
    """``out[b, n, s] = data[b, offset(index[b, n]), s]`` over [B, N, slice] (GatherND)."""
    _batch, rows, width = out.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        s = e % width
        n = (e // width) % rows
        b = e // (width * rows)
        out[b, n, s] = data[b, _nd_offset(index[b], n, dims, strides), s]


@cuda.jit
def scatter_nd(out, index, updates, dims, strides, code):
    """``out[offset(index[n]), s] = updates[n, s]`` (or combined) over [N, slice]."""
    rows, width = updates.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    if code >= 2:
        if start == 0:
            for n in range(rows):
                at = _nd_offset(index, n, dims, strides)
                for s in range(width):
                    out[at, s] = _combine(code, out[at, s], updates[n, s])
        return
    for e in range(start, updates.size, stride):
        s = e % width
        n = e // width
        at = _nd_offset(index, n, dims, strides)
        if code == 1:
            cuda.atomic.add(out, (at, s), updates[n, s])
        else:
            out[at, s] = updates[n, s]


@cuda.jit
def cumsum(x, out, exclusive, reverse):
    """Running sums along the middle axis of [outer, n, inner], one thread per strip."""
    outer, n, inner = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, outer * inner, stride):
        o, i = t // inner, t % inner
        acc = x[o, 0, i] - x[o, 0, i]
        for step in range(n):
            j = n - 1 - step if reverse else step
            if exclusive:
                out[o, j, i] = acc
                acc += x[o, j, i]
            else:
                acc += x[o, j, i]
                out[o, j, i] = acc


@cuda.jit
def norm_rows(x, out, code):
    """``out[i]`` = L1, L2, sum of squares, log-sum or log-sum-exp of ``x[i, :]``
    (`NORM_CODES`), in float64; empty rows give 0 or -inf."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    cols = x.shape[1]
    for i in range(start, x.shape[0], stride):
        top = float64(0.0)
        if code == 4 and cols:
            top = float64(x[i, 0])
            for j in range(1, cols):
                v = float64(x[i, j])
                top = v if v > top else top
            if math.isinf(top):
                top = 0.0
        acc = float64(0.0)
        for j in range(cols):
            v = float64(x[i, j])
            if code == 0:
                acc += abs(v)
            elif code <= 2:
                acc += v * v
            elif code == 3:
                acc += v
            else:
                acc += math.exp(v - top)
        if code == 1:
            acc = math.sqrt(acc)
        elif code >= 3:
            acc = (math.log(acc) if acc > 0 else -math.inf) + top
        out[i] = acc


@cuda.jit(device=True)
def _param(values, o, d, i, steps):
    """A scale or zero point for element (o, d, i) of [outer, dim, inner]: ``steps`` is
    (outer stride, block stride, inner stride, block) in ``values``."""
    return values[o * steps[0] + (d // steps[3]) * steps[1] + i * steps[2]]


@cuda.jit(device=True)
def _round_half_even(v):
    r = math.floor(v)
    diff = v - r
    if diff > 0.5 or (diff == 0.5 and r % 2 != 0):
        r += 1
    return r


@cuda.jit(device=True)
def _clamp(v, low, high):
    # no min/max: NVVM rejects the builtins' typing here (see `cuda._scalar_op`)
    return low if v < low else (high if v > high else v)


@cuda.jit
def quantize(x, scale, zero, steps, low, high, out):
    """``out = clip(round_half_even(x / scale) + zero, low, high)`` over [outer, dim, inner]."""
    _outer, dim, inner = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, x.size, stride):
        i = e % inner
        d = (e // inner) % dim
        o = e // (inner * dim)
        q = float64(_round_half_even(x[o, d, i] / _param(scale, o, d, i, steps)))
        q += float64(_param(zero, o, d, i, steps))  # in floats: no 8-bit wrap-around
        out[o, d, i] = _clamp(q, low, high)


@cuda.jit
def dequantize(x, scale, zero, steps, out):
    """``out = (x - zero) * scale`` over [outer, dim, inner], the difference in float64."""
    _outer, dim, inner = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, x.size, stride):
        i = e % inner
        d = (e // inner) % dim
        o = e // (inner * dim)
        shifted = float64(x[o, d, i]) - float64(_param(zero, o, d, i, steps))
        out[o, d, i] = shifted * _param(scale, o, d, i, steps)


@cuda.jit
def dynamic_parameters(x, scale, zero, divisor):
    """DynamicQuantizeLinear's uint8 ``scale`` and ``zero`` point from the range of flat
    ``x`` (which always includes 0), and the ``divisor`` that quantizing uses (1 for an
    all-zero tensor, whose scale is 0). One thread: the range is one reduction."""
    if cuda.grid(1) == 0:
        low = float64(0.0)
        high = float64(0.0)
        for e in range(x.size):
            v = float64(x[e])
            low = v if v < low else low
            high = v if v > high else high
        s = float64(float32((high - low) / 255.0))  # the float32 scale, as the CPU's
        scale[0] = s
        divisor[0] = s if s > 0 else 1.0
        zero[0] = _clamp(float64(_round_half_even(-low / s)), 0.0, 255.0) if s > 0 else 0.0


@cuda.jit
def matmul_integer(a, b, a_zero, b_zero, out):
    """int32 ``out[z] = (a[z] - a_zero) @ (b[z] - b_zero)`` over [batch, M, K] x [batch,
    K, N] (a batch of one broadcasts), zero points per row / column or scalars."""
    _count, m, n = out.shape
    k = a.shape[2]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        j = e % n
        i = (e // n) % m
        z = e // (n * m)
        za = z if a.shape[0] > 1 else 0
        zb = z if b.shape[0] > 1 else 0
        az = a_zero[i if a_zero.size > 1 else 0]
        bz = b_zero[j if b_zero.size > 1 else 0]
        acc = 0
        for p in range(k):
            acc += (int(a[za, i, p]) - int(az)) * (int(b[zb, p, j]) - int(bz))
        out[z, i, j] = acc
