"""CUDA kernels written with Numba-CUDA (``@cuda.jit``).

The heavy kernel is a shared-memory tiled GEMM with register tiling: a block computes
a BM x BN tile of C, each thread a TM x TN sub-tile held in registers, A and B staged
through shared memory BK columns at a time (A transposed there so the inner loop reads
consecutive addresses). The same kernel body serves convolution as an *implicit* GEMM:
its B loader reads the input image through the im2col index map instead of a
materialised matrix. Bias (with broadcast strides), alpha/beta, the activation and,
for convolutions, the NCHW output layout are applied in the epilogue, so a
Conv+BN+Relu is one kernel launch.

Everything else (elementwise with broadcasting, Where, strided copies for Transpose,
Slice, Concat and Expand, pooling, normalisation, LRN, softmax, gathers for Resize, Pad
and Gather) is one thread per output element or row, with grid-stride loops.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from numba import cuda, float32, float64

from workbench.backends.numba.rows import layer_norm_row, lrn_strip, softmax_strip

ACT_NONE, ACT_RELU = 0, 1

#: Elementwise op codes (unary below 16, binary from 16).
UNARY_CODES = {
    "Relu": 0,
    "Sigmoid": 1,
    "Tanh": 2,
    "Erf": 3,
    "Sqrt": 4,
    "Exp": 5,
    "Gelu": 6,
    "GeluTanh": 7,
    "Identity": 8,
    "Neg": 9,
    "Abs": 10,
    "Reciprocal": 11,
    "Log": 12,
    "Floor": 13,
    "Ceil": 14,
}
BINARY_CODES = {"Add": 16, "Sub": 17, "Mul": 18, "Div": 19, "Pow": 20, "Max": 21, "Min": 22}
#: Unary ops of x and two attributes, alpha and beta.
PARAMETRIC_CODES = {"LeakyRelu": 32, "HardSigmoid": 33, "HardSwish": 34}
#: Every op code of `elementwise_nd`.
ELEMENTWISE_CODES = {**UNARY_CODES, **BINARY_CODES, **PARAMETRIC_CODES}
#: Comparisons and logic (`compare_nd`), writing booleans.
LOGICAL_CODES = {
    "Equal": 0,
    "Less": 1,
    "Greater": 2,
    "LessOrEqual": 3,
    "GreaterOrEqual": 4,
    "And": 5,
    "Or": 6,
    "Xor": 7,
    "Not": 8,
    # unary tests (IsNaN, IsInf by the signs it detects, and IsInf detecting neither)
    "IsNaN": 9,
    "IsInf": 10,
    "IsPosInf": 11,
    "IsNegInf": 12,
    "Never": 13,
}
#: From this magnitude on every float is an integer (and math.floor's int64 overflows).
INTEGRAL = 2.0**52


@dataclass(frozen=True)
class GemmConfig:
    """Tile sizes of the GEMM kernel: block tile BM x BN, K step BK, per-thread TM x TN."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)


#: 128x128 tiles, 8x8 outputs per thread (256 threads): the register-tiled kernel.
LARGE = GemmConfig(bm=128, bn=128, bk=8, tm=8, tn=8)
#: 32x32 tiles, 2x2 per thread: more blocks for small problems (and a fast simulator).
SMALL = GemmConfig(bm=32, bn=32, bk=8, tm=2, tn=2)


def pick_config(m: int, n: int) -> GemmConfig:
    """LARGE when it still fills the GPU with blocks; SMALL for small matrices."""
    return LARGE if m * n >= 256 * 128 * 128 // 4 else SMALL


@cuda.jit(device=True, inline=True)
def activate(value: Any, act: int) -> Any:
    if act == ACT_RELU:
        return value if value > 0 else value - value  # NaN stays NaN
    return value


@cuda.jit(device=True)
def _load_b_matrix(b: Any, z: int, k: int, n: int, geo: Any) -> Any:
    """B[z, k, n] of a batched matrix (batch 1 broadcast)."""
    zb = z if b.shape[0] > 1 else 0
    if k < b.shape[1] and n < b.shape[2]:
        return b[zb, k, n]
    return float32(0.0)


@cuda.jit(device=True)
def _load_b_im2col(x: Any, z: int, k: int, n: int, geo: Any) -> Any:
    """Element (k, n) of the im2col matrix of image batch ``x`` [N, C, H, W], never stored.

    ``geo`` = (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow); column n = (image, oy, ox).
    """
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geo
    ohw = oh * ow
    if k >= x.shape[1] * kh * kw or n >= x.shape[0] * ohw:
        return float32(0.0)
    ci = k // (kh * kw)
    ki = (k // kw) % kh
    kj = k % kw
    img = n // ohw
    p = n % ohw
    iy = (p // ow) * sh - ph + ki * dh
    ix = (p % ow) * sw - pw + kj * dw
    if iy < 0 or iy >= x.shape[2] or ix < 0 or ix >= x.shape[3]:
        return float32(0.0)
    return x[img, ci, iy, ix]


@cuda.jit(device=True)
def _store(
    c: Any,
    row: int,
    col: int,
    z: int,
    m: int,
    n: int,
    value: Any,
    bias: Any,
    rs: int,
    cs: int,
    alpha: float,
    beta: float,
    act: int,
    plane: int,
) -> None:
    """The GEMM epilogue for one element: scale, bias, activation, layout, bounds."""
    if row >= m or col >= n:
        return
    value = float32(alpha) * value
    if bias.size > 0:
        value += float32(beta) * bias[row * rs + col * cs]
    value = activate(value, act)
    if plane > 0:
        c[((col // plane) * m + row) * plane + col % plane] = value
    else:
        c[(z * m + row) * n + col] = value


_GEMM_TEMPLATE = """
def kernel(a, b, c, m, n, k, geo, bias, rs, cs, alpha, beta, act, plane):
    a_tile = cuda.shared.array(({bk}, {bm}), dtype=float32)
    b_tile = cuda.shared.array(({bk}, {bn}), dtype=float32)
    tid = cuda.threadIdx.x
    row0 = cuda.blockIdx.y * {bm}
    col0 = cuda.blockIdx.x * {bn}
    z = cuda.blockIdx.z
    za = z if a.shape[0] > 1 else 0
    ty = tid // {cols_per_row}
    tx = tid % {cols_per_row}
{zero}
    for k0 in range(0, k, {bk}):
        for e in range(tid, {bm} * {bk}, {threads}):
            r = e // {bk}
            q = e % {bk}
            value = float32(0.0)
            if row0 + r < m and k0 + q < k:
                value = a[za, row0 + r, k0 + q]
            a_tile[q, r] = value
        for e in range(tid, {bk} * {bn}, {threads}):
            r = e // {bn}
            q = e % {bn}
            b_tile[r, q] = load_b(b, z, k0 + r, col0 + q, geo)
        cuda.syncthreads()
        for kk in range({bk}):
{loads}
{fmas}
        cuda.syncthreads()
{stores}
"""


@functools.cache
def gemm_kernel(config: GemmConfig, implicit_conv: bool) -> Any:
    """The tiled GEMM kernel for ``config``; B read as a matrix or through im2col.

    Launch with grid (ceil(N/BN), ceil(M/BM), batch) and ``config.threads`` threads.
    Computes ``C = act(alpha * A @ B + beta * bias)``, where ``bias[row*rs + col*cs]``
    broadcasts a vector or matrix; when ``plane`` > 0, column ``n`` of C is stored at
    ``[n // plane, row, n % plane]`` (the NCHW layout of a convolution's output).

    The source is generated so that each thread's TM x TN accumulators and its TM + TN
    operands are separate scalars: Numba keeps scalars in registers, whereas a local
    array indexed in a loop that LLVM does not fully unroll lives in local memory.
    Out-of-range elements load as zero, so edge tiles need no special case.
    """
    tm, tn = config.tm, config.tn
    pad = " " * 12
    source = _GEMM_TEMPLATE.format(
        bm=config.bm,
        bn=config.bn,
        bk=config.bk,
        threads=config.threads,
        cols_per_row=config.bn // tn,
        zero="\n".join(f"    acc_{i}_{j} = float32(0.0)" for i in range(tm) for j in range(tn)),
        loads="\n".join(
            [f"{pad}a_{i} = a_tile[kk, ty * {tm} + {i}]" for i in range(tm)]
            + [f"{pad}b_{j} = b_tile[kk, tx * {tn} + {j}]" for j in range(tn)]
        ),
        fmas="\n".join(f"{pad}acc_{i}_{j} += a_{i} * b_{j}" for i in range(tm) for j in range(tn)),
        stores="\n".join(
            f"    store(c, row0 + ty * {tm} + {i}, col0 + tx * {tn} + {j}, z, m, n, acc_{i}_{j}, "
            "bias, rs, cs, alpha, beta, act, plane)"
            for i in range(tm)
            for j in range(tn)
        ),
    )
    namespace = {
        "cuda": cuda,
        "float32": float32,
        "store": _store,
        "load_b": _load_b_im2col if implicit_conv else _load_b_matrix,
    }
    exec(compile(source, f"<gemm {config} conv={implicit_conv}>", "exec"), namespace)
    return cuda.jit(namespace["kernel"])


@cuda.jit
def conv_direct(x, w, bias, geo, group, act, out):
    """Direct convolution, one thread per output element (grouped and depthwise convs).

    ``geo`` = (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow).
    """
    _n, m, oh, ow = out.shape
    cg = w.shape[1]
    kh, kw, sh, sw, ph, pw, dh, dw = geo[:8]
    per_group = m // group
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        ox = e % ow
        oy = (e // ow) % oh
        oc = (e // (ow * oh)) % m
        b = e // (ow * oh * m)
        c0 = (oc // per_group) * cg
        acc = bias[oc] if bias.size > 0 else 0.0
        for ci in range(cg):
            for ki in range(kh):
                iy = oy * sh - ph + ki * dh
                if iy < 0 or iy >= x.shape[2]:
                    continue
                for kj in range(kw):
                    ix = ox * sw - pw + kj * dw
                    if 0 <= ix < x.shape[3]:
                        acc += x[b, c0 + ci, iy, ix] * w[oc, ci, ki, kj]
        out[b, oc, oy, ox] = activate(acc, act)


@cuda.jit(device=True)
def _scalar_op(code: int, x: Any, y: Any, alpha: float, beta: float) -> Any:
    if code == 0:
        return x if x > 0 else x - x
    if code == 1:
        return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    if code == 2:
        return math.tanh(x)
    if code == 3:
        return math.erf(x)
    if code == 4:
        return math.sqrt(x)
    if code == 5:
        return math.exp(x)
    if code == 6:
        return 0.5 * x * (1.0 + math.erf(x * 0.7071067811865476))
    if code == 7:
        return 0.5 * x * (1.0 + math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
    if code == 9:
        return -x
    if code == 10:
        return abs(x)
    if code == 11:
        return 1 / x
    if code == 12:
        return math.log(x)
    if code == 13:
        return math.floor(x) if abs(x) < INTEGRAL else x
    if code == 14:
        return math.ceil(x) if abs(x) < INTEGRAL else x
    if code == 16:
        return x + y
    if code == 17:
        return x - y
    if code == 18:
        return x * y
    if code == 19:
        return x / y
    if code == 20:
        return x**y
    if code == 21:  # a NaN operand is the result, as on the CPU
        return x if x >= y or x != x else y
    if code == 22:
        return x if x <= y or x != x else y
    if code == 32:
        return x if x >= 0 else alpha * x
    if code >= 33:  # HardSigmoid, and HardSwish: x times it (no max/min: NVVM typing)
        hard = alpha * x + beta
        hard = 0.0 if hard < 0.0 else (1.0 if hard > 1.0 else hard)
        return hard if code == 33 else x * hard
    return x


@cuda.jit(device=True)
def _compare(code: int, x: Any, y: Any) -> bool:
    if code == 0:
        return x == y
    if code == 1:
        return x < y
    if code == 2:
        return x > y
    if code == 3:
        return x <= y
    if code == 4:
        return x >= y
    if code == 5:
        return bool(x) and bool(y)
    if code == 6:
        return bool(x) or bool(y)
    if code == 7:
        return bool(x) != bool(y)
    if code == 9:
        return x != x
    if code == 13:
        return False
    if code >= 10:
        return (code != 12 and x == math.inf) or (code != 11 and x == -math.inf)
    return not x


@cuda.jit
def elementwise_nd(a, b, out, shape, a_strides, b_strides, code, act, alpha, beta):
    """``out = act(op(a, b))`` over ``shape``, with per-operand strides (0 = broadcast).

    ``a``, ``b`` and ``out`` are flat; unary ops ignore ``b``, parametric ones (LeakyRelu,
    HardSigmoid, HardSwish) read ``alpha`` and ``beta``.
    """
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        ia, ib = _offsets(e, shape, a_strides, b_strides)
        out[e] = activate(_scalar_op(code, a[ia], b[ib], alpha, beta), act)


@cuda.jit(device=True)
def _offsets(e: int, shape: Any, a_strides: Any, b_strides: Any) -> tuple[int, int]:
    """Flat positions in two broadcast operands of output element ``e``."""
    rest = e
    ia = 0
    ib = 0
    for d in range(shape.size - 1, -1, -1):
        coord = rest % shape[d]
        rest //= shape[d]
        ia += coord * a_strides[d]
        ib += coord * b_strides[d]
    return ia, ib


@cuda.jit
def compare_nd(a, b, out, shape, a_strides, b_strides, code):
    """``out = op(a, b)`` for comparisons and logic (booleans out), as `elementwise_nd`."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        ia, ib = _offsets(e, shape, a_strides, b_strides)
        out[e] = _compare(code, a[ia], b[ib])


@cuda.jit
def where_nd(condition, a, b, out, shape, c_strides, a_strides, b_strides):
    """``out = a if condition else b`` over ``shape``, with per-operand strides (0 =
    broadcast); all four arrays flat."""
    rank = shape.size
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        rest = e
        ic = 0
        ia = 0
        ib = 0
        for d in range(rank - 1, -1, -1):
            coord = rest % shape[d]
            rest //= shape[d]
            ic += coord * c_strides[d]
            ia += coord * a_strides[d]
            ib += coord * b_strides[d]
        out[e] = a[ia] if condition[ic] else b[ib]


@cuda.jit
def copy_nd(src, dst, shape, src_strides, src_offset, dst_strides, dst_offset):
    """``dst[dst_offset + i.dst_strides] = src[src_offset + i.src_strides]`` over ``shape``.

    One kernel for Transpose (permuted strides), Slice (scaled strides and an offset),
    Expand (zero strides), Concat (a destination offset) and Cast (dtype conversion).
    """
    rank = shape.size
    total = 1
    for d in range(rank):
        total *= shape[d]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, total, stride):
        rest = e
        i_src = src_offset
        i_dst = dst_offset
        for d in range(rank - 1, -1, -1):
            coord = rest % shape[d]
            rest //= shape[d]
            i_src += coord * src_strides[d]
            i_dst += coord * dst_strides[d]
        dst[i_dst] = src[i_src]


@cuda.jit
def pool2d(x, geo, is_max, count_pad, out):
    """Max/average pooling, one thread per output.

    ``geo`` = (kh, kw, sh, sw, pt, pl, pb, pr, dh, dw).
    """
    _n, c, oh, ow = out.shape
    h, w = x.shape[2], x.shape[3]
    kh, kw, sh, sw, pt, pl, pb, pr, dh, dw = geo
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        ox = e % ow
        oy = (e // ow) % oh
        ch = (e // (ow * oh)) % c
        b = e // (ow * oh * c)
        y0 = oy * sh - pt
        x0 = ox * sw - pl
        best = -math.inf
        total = 0.0
        count = 0
        padded = 0
        for ki in range(kh):
            iy = y0 + ki * dh
            for kj in range(kw):
                ix = x0 + kj * dw
                if 0 <= iy < h and 0 <= ix < w:
                    v = x[b, ch, iy, ix]
                    best = v if v > best else best
                    total += v
                    count += 1
                elif iy < h + pb and ix < w + pr:
                    padded += 1
        if is_max:
            out[b, ch, oy, ox] = best
        else:
            divisor = count + padded if count_pad else count
            out[b, ch, oy, ox] = total / (divisor if divisor > 0 else 1)


#: `reduce_rows` op codes.
REDUCE_CODES = {"ReduceMean": 0, "ReduceSum": 1, "ReduceMax": 2, "ReduceMin": 3, "ReduceProd": 4}


@cuda.jit
def reduce_rows(x, out, code, empty):
    """``out[i] = op(x[i, :])``: mean, sum, max, min or product (`REDUCE_CODES`), or
    ``empty`` for rows of length 0 (GlobalAveragePool, Reduce* over trailing axes)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    cols = x.shape[1]
    for i in range(start, x.shape[0], stride):
        if cols == 0:
            out[i] = empty
            continue
        acc = x[i, 0]
        for j in range(1, cols):
            v = x[i, j]
            if code <= 1:
                acc += v
            elif code == 2:
                acc = v if v > acc or v != v else acc
            elif code == 3:
                acc = v if v < acc or v != v else acc
            else:
                acc *= v
        out[i] = acc / cols if code == 0 else acc


@cuda.jit
def arg_rows(x, out, is_max, last):
    """``out[i]`` = the index of the largest (``is_max``) or smallest value of ``x[i, :]``,
    the first one or, with ``last``, the last one among equals."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    cols = x.shape[1]
    for i in range(start, x.shape[0], stride):
        best = 0
        for j in range(1, cols):
            v = x[i, j]
            b = x[i, best]
            if (v > b if is_max else v < b) or (last and v == b):
                best = j
        out[i] = best


@cuda.jit
def softmax(x, out):
    """Softmax over the middle axis of [outer, n, inner], one thread per (outer, inner)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, x.shape[0] * x.shape[2], stride):
        softmax_strip(x, out, t)


@cuda.jit
def layer_norm(x, scale, bias, eps, out, mean_out, inv_out):
    """LayerNormalization over rows of [rows, n], one thread per row."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.shape[0], stride):
        layer_norm_row(x, scale, bias, eps, out, mean_out, inv_out, i)


@cuda.jit
def lrn(x, size, alpha, beta, bias, out):
    """LRN across the middle axis of [outer, channels, inner], one thread per strip."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, x.shape[0] * x.shape[2], stride):
        lrn_strip(x, out, t, size, alpha, beta, bias)


@cuda.jit
def channel_affine(x, mul, add, out):
    """``out[b, c, p] = x[b, c, p] * mul[c] + add[c]`` (inference BatchNormalization)."""
    _n, c, p = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, x.size, stride):
        q = e % p
        ch = (e // p) % c
        b = e // (p * c)
        out[b, ch, q] = x[b, ch, q] * mul[ch] + add[ch]


@cuda.jit
def batch_norm_affine(scale, beta, mean, var, eps, params):
    """Per channel, ``params[0] = scale / sqrt(var + eps)`` and ``params[1] = beta - mean *
    params[0]`` (inference BatchNormalization from statistics computed in the graph), in
    float64 as the host does for constant statistics."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for c in range(start, scale.size, stride):
        mul = float64(scale[c]) / math.sqrt(float64(var[c]) + eps)
        params[0, c] = mul
        params[1, c] = float64(beta[c]) - float64(mean[c]) * mul


@cuda.jit
def gather4(x, i0, i1, i2, i3, fill, out):
    """``out[a, b, c, d] = x[i0[a], i1[b], i2[c], i3[d]]``, or ``fill`` where an index is
    negative (nearest-neighbour Resize; Pad, whose ``-1`` marks the padding)."""
    _n0, n1, n2, n3 = out.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        d = e % n3
        c = (e // n3) % n2
        b = (e // (n3 * n2)) % n1
        a = e // (n3 * n2 * n1)
        if i0[a] < 0 or i1[b] < 0 or i2[c] < 0 or i3[d] < 0:
            out[a, b, c, d] = fill
        else:
            out[a, b, c, d] = x[i0[a], i1[b], i2[c], i3[d]]


@cuda.jit
def gather_axis(x, index, out):
    """``out[o, j, i] = x[o, index[j], i]`` over [outer, len(index), inner] (Gather)."""
    _outer, count, inner = out.shape
    size = x.shape[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        i = e % inner
        j = (e // inner) % count
        o = e // (inner * count)
        src = index[j]
        if src < 0:
            src += size
        out[o, j, i] = x[o, src, i]


@cuda.jit
def fill(out, value):
    """``out[:] = value`` on a flat array (ConstantOfShape)."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, stride):
        out[e] = value


def launch_1d(size: int) -> tuple[int, int]:
    """Grid and block for a grid-stride kernel over ``size`` items.

    Blocks shrink for tiny jobs (the simulator runs every thread) and the grid is capped:
    the loops stride over the rest.
    """
    threads = min(256, max(32, 1 << max(size - 1, 1).bit_length()))
    return max(1, min((size + threads - 1) // threads, 4096)), threads
