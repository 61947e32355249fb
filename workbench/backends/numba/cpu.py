"""CPU kernels compiled with Numba (``@njit``), cached on disk so a new process reuses them.

Each loop kernel exists twice: parallel (``prange`` over threads) and serial. Starting
a parallel region costs microseconds, more than the whole job on small tensors, so
`pick` chooses by the amount of work. Activations are small integer codes so a
kernel's epilogue can apply them without a second pass over memory.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import types
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from workbench.backends.numba.pool import load_tbb
from workbench.backends.numba.rows import layer_norm_row, lrn_strip, softmax_strip

# importing Numba starts no thread: this still comes first, so the tbb layer is used
# wherever the tbb wheel is installed (see `pool`)
load_tbb()

ACT_NONE, ACT_RELU, ACT_HARD_SWISH, ACT_HARD_SIGMOID, ACT_SIGMOID, ACT_SILU = range(6)
#: Epilogue activations by the name a node's ``activation`` holds. HardSigmoid is
#: torch's (alpha 1/6, beta 1/2, what HardSwish uses too); "Silu" is x * Sigmoid(x),
#: fused from its two nodes (`conv_fusion`).
ACTIVATIONS = {
    "": ACT_NONE,
    "Relu": ACT_RELU,
    "HardSwish": ACT_HARD_SWISH,
    "HardSigmoid": ACT_HARD_SIGMOID,
    "Sigmoid": ACT_SIGMOID,
    "Silu": ACT_SILU,
}

#: Below this much work (elements touched) a serial kernel is faster. High on purpose:
#: measured on 2 cores, parallel regions next to BLAS calls lost, because Numba's OpenMP
#: workers spin after each region while BLAS's own threads need the same cores.
PARALLEL_MIN_WORK = 1 << 22

#: Tile of the hand-written GEMM: a 64x64 float32 accumulator (16 KiB) stays in L1.
GEMM_TILE_M = 64
GEMM_TILE_N = 64
GEMM_TILE_K = 256


def twin(fn: Callable[..., Any], fastmath: Any = True) -> tuple[Any, Any]:
    """Compile ``fn`` parallel and serial; separate names keep their disk caches apart.

    Division follows IEEE (``error_model="numpy"``): a NaN or zero in a tensor gives
    NaN or inf as in ONNX Runtime, never a ZeroDivisionError from inside a kernel (a
    Softmax over a row of NaN raised one). ``fastmath``: Numba's flags (a set keeps
    some, e.g. without ``nnan`` where a kernel tests for NaN).
    """
    serial_fn = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial")
    serial_fn.__qualname__ = fn.__qualname__ + "_serial"
    options = {"fastmath": fastmath, "cache": True, "nogil": True, "error_model": "numpy"}
    parallel = njit(parallel=True, **options)(fn)
    serial = njit(**options)(serial_fn)
    return parallel, serial


def pick(kernels: tuple[Any, Any], work: int, min_work: int = 0) -> Any:
    """The parallel kernel for big jobs (``work`` from ``min_work`` on, by default
    `PARALLEL_MIN_WORK`), the serial one for small."""
    threshold = min_work or PARALLEL_MIN_WORK
    return kernels[0] if work >= threshold and numba.get_num_threads() > 1 else kernels[1]


#: ONNX Runtime's (MLAS's) rational approximation of the logistic function: x p(x^2) /
#: q(x^2) + 1/2 on x clamped to +-18. Within 1.7e-7 of the exact value, as close to
#: ORT's own outputs (1.2e-7); unlike ``exp`` (no SVML here) LLVM vectorises it, which
#: took a fused SiLU convolution of efficientnet_b0 from 8x to a fraction of its GEMM.
_LOGISTIC_P = (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05,
               8.51377133304701e-03, 2.48287947061529e-01)  # fmt: skip
_LOGISTIC_Q = (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06,
               1.70198817374094e-03, 1.16817656904453e-01, 9.93151921023180e-01)  # fmt: skip
_F = np.float32


@njit(inline="always", fastmath=True)
def logistic(value: Any) -> Any:
    """1 / (1 + exp(-value)), vectorisable (see `_LOGISTIC_P`); float32 constants."""
    x = value if value > _F(-18.0) else _F(-18.0)
    x = x if x < _F(18.0) else _F(18.0)
    s = x * x
    p0, p1, p2, p3, p4 = _LOGISTIC_P
    q0, q1, q2, q3, q4, q5 = _LOGISTIC_Q
    p = ((((s * _F(p0) + _F(p1)) * s + _F(p2)) * s + _F(p3)) * s + _F(p4)) * x
    q = ((((s * _F(q0) + _F(q1)) * s + _F(q2)) * s + _F(q3)) * s + _F(q4)) * s + _F(q5)
    r = p / q + _F(0.5)
    r = r if r > _F(0.0) else _F(0.0)
    return r if r < _F(1.0) else _F(1.0)


@njit(inline="always", fastmath=True)
def activate(value: Any, act: int) -> Any:
    """``act`` (an `ACTIVATIONS` code) of ``value``; branch-free per code, so a loop
    applying one activation vectorises (division included, under ``error_model="numpy"``)."""
    if act == ACT_RELU:
        return value if value > 0 else value - value
    if act in (ACT_HARD_SWISH, ACT_HARD_SIGMOID):
        gate = value * _F(1.0 / 6.0) + _F(0.5)
        gate = gate if gate > _F(0.0) else _F(0.0)
        gate = gate if gate < _F(1.0) else _F(1.0)
        return value * gate if act == ACT_HARD_SWISH else gate
    if act == ACT_SIGMOID:
        return logistic(value)
    if act == ACT_SILU:
        return value * logistic(value)
    return value


# ---- GEMM ------------------------------------------------------------------------
#: OpenBLAS threads a GEMM above this many multiply-adds (M*N*K; its
#: ``SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD``); smaller ones run on one thread.
OPENBLAS_THREADED_MIN_WORK = 65536 * 4


@functools.cache
def _scipy_openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get, set) of the thread count of SciPy's OpenBLAS, the BLAS behind Numba's
    ``np.dot``; None when SciPy links another BLAS (then nothing is changed)."""
    import scipy

    folder = os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("", "64_"):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    return get, set_
    return None


def single_threaded_blas(calls: Callable[[], Any]) -> Callable[[], None]:
    """``calls`` with SciPy's OpenBLAS on one thread, the caller's count restored after.

    Why: OpenBLAS splits a GEMM statically between its threads and waits for all of
    them. On a loaded machine one of them is often descheduled for a whole time slice,
    and a convolution makes up to 16 such calls per block (Winograd): measured on 2
    cores at load 12, the sample CNN at batch 32 took 25 ms (median; 240 ms at the 75th
    percentile) with 2 BLAS threads and 0.9 ms with one. ONNX Runtime's caller thread
    takes over work its pool has not started, so it does not collapse. Every GEMM that
    OpenBLAS would thread runs like this: the sample MLP and transformer at batch 32 had
    the same tail (MLP: 0.17 ms median but 29 ms at the 75th percentile with 2 threads,
    0.29 ms median and 0.42 at the 75th with one), though a quiet machine would give
    their larger GEMMs up to 2x with both threads.
    """
    blas = _scipy_openblas()
    if blas is None:
        return calls  # type: ignore[return-value]
    get, set_ = blas

    def run() -> None:
        threads = get()
        set_(1)
        try:
            calls()
        finally:
            set_(threads)

    return run


@njit(cache=True, nogil=True)
def gemm_blas(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` through the BLAS that NumPy links (sgemm/dgemm)."""
    np.dot(a, b, out)


def _gemm_tiled(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b``: 64x64 output tiles in parallel, K in 256-deep panels.

    The innermost loop runs along a contiguous row of ``b`` and of the accumulator,
    which LLVM vectorises; the accumulator tile stays in L1 across the K panel.
    """
    m, k = a.shape
    n = b.shape[1]
    tiles_m = (m + GEMM_TILE_M - 1) // GEMM_TILE_M
    tiles_n = (n + GEMM_TILE_N - 1) // GEMM_TILE_N
    for tile in prange(tiles_m * tiles_n):
        i0 = (tile // tiles_n) * GEMM_TILE_M
        j0 = (tile % tiles_n) * GEMM_TILE_N
        rows = min(GEMM_TILE_M, m - i0)
        cols = min(GEMM_TILE_N, n - j0)
        acc = np.zeros((GEMM_TILE_M, GEMM_TILE_N), dtype=out.dtype)
        for p0 in range(0, k, GEMM_TILE_K):
            p1 = min(p0 + GEMM_TILE_K, k)
            for i in range(rows):
                for p in range(p0, p1):
                    av = a[i0 + i, p]
                    for j in range(cols):
                        acc[i, j] += av * b[p, j0 + j]
        for i in range(rows):
            for j in range(cols):
                out[i0 + i, j0 + j] = acc[i, j]


gemm_tiled = twin(_gemm_tiled)


def _bias_act_rows(y: np.ndarray, bias: np.ndarray, act: int) -> None:
    """In place: ``y[i, j] = act(y[i, j] + bias[j])`` (bias broadcast over rows)."""
    m, n = y.shape
    for i in prange(m):
        for j in range(n):
            y[i, j] = activate(y[i, j] + bias[j], act)


bias_act_rows = twin(_bias_act_rows)


def _gemm_epilogue(
    y: np.ndarray, c: np.ndarray, alpha: float, beta: float, act: int, out: np.ndarray
) -> None:
    """``out = act(alpha * y + beta * c)`` with ``c`` already broadcast to 2-D."""
    m, n = out.shape
    for i in prange(m):
        for j in range(n):
            out[i, j] = activate(alpha * y[i, j] + beta * c[i, j], act)


gemm_epilogue = twin(_gemm_epilogue)


@njit(cache=True, nogil=True)
def bmm_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray, rows: int) -> None:
    """``out[i, :rows] = a[i, :rows] @ b[i]``, BLAS per item: for [B, R, K] arrays whose
    items are padded with spare rows (see `cpu_ops._conv_winograd`)."""
    for i in range(a.shape[0]):
        np.dot(a[i][:rows], b[i], out[i][:rows])


@njit(cache=True, nogil=True)
def bmm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """Batched ``out[i] = a[i] @ b[i]`` over [B, M, K] x [B, K, N], BLAS per item.

    Serial on purpose: BLAS threads each product, and a BLAS call from inside an
    OpenMP parallel loop oversubscribes the cores (OpenBLAS warns it may hang).
    """
    for i in range(a.shape[0]):
        np.dot(a[i], b[i], out[i])


# ---- GEMMs split across threads -----------------------------------------------------
# Each part is one BLAS call on its own thread, with OpenBLAS itself on one thread (the
# caller wraps these in `single_threaded_blas`): OpenBLAS's own split measured slower on
# these shapes (the sample CNN at batch 32: 1.5 ms with 2 BLAS threads, 0.8 with one).


@njit(parallel=True, cache=True, nogil=True)
def gemm_split_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray, parts: int) -> None:
    """``out = a @ b`` with the rows of ``a`` and ``out`` in ``parts`` contiguous blocks."""
    m = a.shape[0]
    step = (m + parts - 1) // parts
    for part in prange(parts):
        first = part * step
        last = min(m, first + step)
        if first < last:
            np.dot(a[first:last], b, out[first:last])


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def gemm_panels(
    a: np.ndarray, panels: np.ndarray, ys: np.ndarray, bias: np.ndarray, act: int, out: np.ndarray
) -> None:
    """``out = act(a @ b + bias)`` for a ``b`` cut into column ``panels`` [P, K, width]
    (the last zero-padded): one product per panel into ``ys`` [P, M, width], and its
    epilogue on the same thread. For products with too few rows to split (a batch
    of 32 through a wide layer)."""
    count, _, width = panels.shape
    m, n = out.shape
    for part in prange(count):
        np.dot(a, panels[part], ys[part])
        first = part * width
        for i in range(m):
            for j in range(min(width, n - first)):
                out[i, first + j] = activate(ys[part, i, j] + bias[first + j], act)


def _gemm_groups(
    x: np.ndarray, taps: np.ndarray, bias: np.ndarray, act: int, ins: np.ndarray,
    sums: np.ndarray, y: np.ndarray,
) -> None:  # fmt: skip
    """A grouped 1x1 convolution's products: ``y[:, g] = act(x[:, g*K : (g+1)*K] @
    taps[g] + bias[g*N : (g+1)*N])`` for ``taps`` [G, K, N] and ``y`` [rows, G, N], a view
    of the output (a channel shuffle's transposed one, `conv_fusion`).

    The rows go in ``len(ins)`` contiguous shares, one task each (a thread's, in the
    parallel twin); a share runs in blocks of ``ins.shape[1]`` rows, each block copying
    one group's channels into ``ins`` [tasks, block, K] (BLAS wants them contiguous)
    and its products ``sums`` [tasks, block, N] into ``y`` with the epilogue, while
    both are in cache. One kernel for the whole layer: the groups' GEMMs were too thin
    to be split over the threads one by one (784 x 34 x 34 at batch 1)."""
    rows = x.shape[0]
    groups, k, n = taps.shape
    shares, block = ins.shape[0], ins.shape[1]
    per_share = -(-rows // shares)
    for share in prange(shares):
        end = min(rows, (share + 1) * per_share)
        for r0 in range(share * per_share, end, block):
            r1 = min(end, r0 + block)
            a, c = ins[share][: r1 - r0], sums[share][: r1 - r0]
            for g in range(groups):
                for i in range(r1 - r0):  # row by row: a 2-D slice copy ran 3-5x slower
                    src, dest = x[r0 + i, g * k : (g + 1) * k], a[i]
                    for j in range(k):
                        dest[j] = src[j]
                np.dot(a, taps[g], c)
                _bias_act_into(c, bias[g * n : (g + 1) * n], act, y[r0:r1, g])


@njit(inline="never", fastmath=True, error_model="numpy", cache=True)
def _bias_act_into(src: np.ndarray, bias: np.ndarray, act: int, dest: np.ndarray) -> None:
    """``dest = act(src + bias)`` (bias broadcast over rows); a function of its own, so
    that LLVM takes the activation's branch out of the loop (inside `_gemm_groups`
    it did not, and no activation cost 1.7x ReLU's time)."""
    for i in range(src.shape[0]):
        row, into = src[i], dest[i]
        for j in range(row.shape[0]):
            into[j] = activate(row[j] + bias[j], act)


gemm_groups = twin(_gemm_groups)


@njit(parallel=True, cache=True, nogil=True)
def bmm_rows_split(a: np.ndarray, b: np.ndarray, out: np.ndarray, rows: int) -> None:
    """`bmm_rows` with the items spread over the threads."""
    for i in prange(a.shape[0]):
        np.dot(a[i][:rows], b[i], out[i][:rows])


# ---- convolution ------------------------------------------------------------------
def _im2col(x: np.ndarray, geometry: tuple[int, ...], col: np.ndarray) -> None:
    """Unfold ``x`` [N, C, H, W] into ``col`` [C*kh*kw, N*OH*OW] (zeros in the padding).

    ``geometry`` is (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow): kernel, strides, leading
    pads, dilations and output size, as `cpu_ops.conv_geometry` makes it.

    Trailing pads only show in ``oh``/``ow``. The valid output columns of each row are
    computed once, so the copy loop has no branch and vectorises (a contiguous copy
    when the stride is 1).
    """
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    n, c, h, w = x.shape
    oh_ow = oh * ow
    for row in prange(c * kh * kw):
        ci = row // (kh * kw)
        ki = (row // kw) % kh
        kj = row % kw
        shift = kj * dw - pw
        # output columns whose input column ox*sw + shift lies inside [0, w)
        lo = min(max(0, (-shift + sw - 1) // sw), ow)
        hi = max(min(ow, (w - 1 - shift) // sw + 1), lo)
        dest = col[row]
        # plain loops, no slice assignments: a slice costs a view per (image, output row),
        # which dominated the copy for the small planes of the samples
        for b in range(n):
            plane = x[b, ci]
            base = b * oh_ow
            for oy in range(oh):
                iy = oy * sh - ph + ki * dh
                start = base + oy * ow
                if iy < 0 or iy >= h:
                    for ox in range(ow):
                        dest[start + ox] = 0
                    continue
                for ox in range(lo):
                    dest[start + ox] = 0
                for ox in range(hi, ow):
                    dest[start + ox] = 0
                for ox in range(lo, hi):
                    dest[start + ox] = plane[iy, ox * sw + shift]


im2col = twin(_im2col)


def _conv_epilogue(y: np.ndarray, bias: np.ndarray, act: int, out: np.ndarray) -> None:
    """``out[b, m, p] = act(y[m, b*P + p] + bias[m])``: GEMM layout back to NCHW."""
    n, m, p = out.shape
    for t in prange(n * m):
        b = t // m
        ch = t % m
        bv = bias[ch]
        for q in range(p):
            out[b, ch, q] = activate(y[ch, b * p + q] + bv, act)


conv_epilogue = twin(_conv_epilogue)


def _conv_direct(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    geometry: tuple[int, ...],
    group: int,
    act: int,
    out: np.ndarray,
) -> None:
    """Direct convolution, one (image, output channel) plane per task (for grouped convs);
    ``geometry`` as for `_im2col`."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    n, _c, h, wid = x.shape
    m, cg = w.shape[0], w.shape[1]
    per_group = m // group
    for t in prange(n * m):
        b = t // m
        oc = t % m
        c0 = (oc // per_group) * cg
        for oy in range(oh):
            for ox in range(ow):
                acc = bias[oc]
                for ci in range(cg):
                    for ki in range(kh):
                        iy = oy * sh - ph + ki * dh
                        if iy < 0 or iy >= h:
                            continue
                        for kj in range(kw):
                            ix = ox * sw - pw + kj * dw
                            if 0 <= ix < wid:
                                acc += x[b, c0 + ci, iy, ix] * w[oc, ci, ki, kj]
                out[b, oc, oy, ox] = activate(acc, act)


conv_direct = twin(_conv_direct)


def _im2col_nhwc(
    x: np.ndarray, geometry: tuple[int, ...], first: int, last: int, col: np.ndarray
) -> None:
    """Unfold output rows ``first:last`` of NHWC ``x`` [N, H, W, C] (row ``t`` is output
    row ``t % OH`` of image ``t // OH``) into ``col`` [(last-first)*OW, kh*kw*C], taps
    then channels. ``geometry`` as for `_im2col`.

    Each tap copies one pixel's C contiguous values. The copies go through views and
    loop indices that start at 0, which LLVM can prove non-negative: with a computed
    flat offset instead, Numba's negative-index check stays in the loop and blocks
    vectorisation (measured 4x slower).
    """
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for t in prange(first, last):
        b = t // oh
        oy = t % oh
        for ox in range(ow):
            row = col[(t - first) * ow + ox]
            for ki in range(kh):
                iy = oy * sh - ph + ki * dh
                for kj in range(kw):
                    ix = ox * sw - pw + kj * dw
                    tap = (ki * kw + kj) * c
                    if c < 8:  # a view per tap costs more than copying a few scalars
                        inside = 0 <= iy < h and 0 <= ix < w
                        for ci in range(c):
                            row[tap + ci] = x[b, iy, ix, ci] if inside else 0
                        continue
                    dest = row[tap : tap + c]
                    if 0 <= iy < h and 0 <= ix < w:
                        pixel = x[b, iy, ix]
                        for ci in range(c):
                            dest[ci] = pixel[ci]
                    else:
                        for ci in range(c):
                            dest[ci] = 0


im2col_nhwc = twin(_im2col_nhwc)


@njit(inline="always")
def _im2col_nchw_rows(
    x: np.ndarray, geometry: tuple[int, ...], first: int, last: int, col: np.ndarray
) -> None:
    """Unfold output rows ``first:last`` (as in `_im2col_nhwc`) of NCHW ``x`` into
    ``col`` [C*kh*kw, (last-first)*OW]: ONNX's weight order in the rows, pixels along
    them, so each copy runs along an image row (contiguous at stride 1)."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    for row in range(c * kh * kw):
        ci = row // (kh * kw)
        ki = (row // kw) % kh
        shift = (row % kw) * dw - pw
        lo = min(max(0, (-shift + sw - 1) // sw), ow)
        hi = max(min(ow, (w - 1 - shift) // sw + 1), lo)
        dest = col[row]
        for t in range(first, last):
            start = (t - first) * ow
            iy = (t % oh) * sh - ph + ki * dh
            if iy < 0 or iy >= h:
                for ox in range(ow):
                    dest[start + ox] = 0
                continue
            line = x[t // oh, ci, iy]
            for ox in range(lo):
                dest[start + ox] = 0
            for ox in range(hi, ow):
                dest[start + ox] = 0
            for ox in range(lo, hi):
                dest[start + ox] = line[ox * sw + shift]


def _conv_nchw_gemm(
    x: np.ndarray, geometry: tuple[int, ...], w2: np.ndarray, bias: np.ndarray, act: int,
    cols: np.ndarray, out: np.ndarray, block_rows: int,
) -> None:  # fmt: skip
    """A dense convolution of NCHW ``x`` into NHWC ``out`` [N*OH*OW, M] by im2col + BLAS,
    for a network's first convolution on its few input channels: ``w2`` is the weight as
    [C*kh*kw, M]. The output rows are cut into one part per workspace of ``cols``
    [parts, C*kh*kw * block_rows*OW]; each part unfolds ``block_rows`` output rows at a
    time, multiplies them (one single-threaded BLAS call: the caller sets OpenBLAS to
    one thread) and runs bias and activation while they are in cache.

    Against the direct loop (`depthwise.conv_nchw_to_nhwc`) on one thread: resnet18's
    7x7 stride-2 conv1 4.7 ms instead of 11.9, mobilenet_v3_small's 3x3 0.48 instead of
    0.85 (2-core AMD EPYC, load 2.5).
    """
    oh, ow = geometry[8], geometry[9]
    k, m = w2.shape
    rows = x.shape[0] * oh
    parts = cols.shape[0]
    step = (rows + parts - 1) // parts
    for part in prange(parts):
        first = part * step
        last = min(rows, first + step)
        buffer = cols[part]
        while first < last:
            end = min(last, first + block_rows)
            count = (end - first) * ow
            col = buffer[: k * count].reshape((k, count))
            _im2col_nchw_rows(x, geometry, first, end, col)
            y = out[first * ow : end * ow]
            np.dot(col.T, w2, y)
            for i in range(count):
                for j in range(m):
                    y[i, j] = activate(y[i, j] + bias[j], act)
            first = end


conv_nchw_gemm = twin(_conv_nchw_gemm)


# Winograd F(2x2, 3x3): a 3x3 convolution computed on 4x4 input tiles, 2x2 outputs
# each, with 16 multiplies per tile and channel pair instead of 36 (2.25x fewer FLOPs).
# Per tile: V = B'.d.B (input), U = G.g.G' (weights, once), M = V * U summed over
# input channels (16 GEMMs), Y = A'.M.A (output).
#: Row i of B' (and so column i of B) is +-row ``_B_ROWS[i, 0]`` +- row ``_B_ROWS[i, 1]``.
_B_ROWS = np.array([[0, 2], [1, 2], [2, 1], [1, 3]], np.int64)
_B_SIGNS = np.array([[1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [1.0, -1.0]], np.float32)


def _winograd_input(xp: np.ndarray, tiles_w: int, first: int, last: int, v: np.ndarray) -> None:
    """``v[16, tiles, C]`` = B'.d.B of the 4x4 tiles of tile rows ``first:last`` of the
    zero-padded NHWC input ``xp`` (tile row ``r`` is row ``r % tiles_h`` of image
    ``r // tiles_h``; ``tiles_h`` follows from ``xp``'s height).

    Each of the 16 entries is a signed sum of 4 input pixels, written by its own loop
    over the channels: with one store stream per loop LLVM vectorises it (one loop
    storing all 16 measured 1.25-1.5x slower).
    """
    _, height, _, c = xp.shape
    tiles_h = (height - 2) // 2
    for r in prange(first, last):
        b = r // tiles_h
        y = (r % tiles_h) * 2
        for tx in range(tiles_w):
            t = (r - first) * tiles_w + tx
            x = tx * 2
            for i in range(4):
                top, bottom = xp[b, y + _B_ROWS[i, 0]], xp[b, y + _B_ROWS[i, 1]]
                s_top, s_bottom = _B_SIGNS[i, 0], _B_SIGNS[i, 1]
                for j in range(4):
                    left, right = x + _B_ROWS[j, 0], x + _B_ROWS[j, 1]
                    s_left, s_right = _B_SIGNS[j, 0], _B_SIGNS[j, 1]
                    tl, tr, bl, br = top[left], top[right], bottom[left], bottom[right]
                    dest = v[4 * i + j, t]
                    for ci in range(c):
                        dest[ci] = s_top * (s_left * tl[ci] + s_right * tr[ci]) + s_bottom * (
                            s_left * bl[ci] + s_right * br[ci]
                        )


winograd_input = twin(_winograd_input)


def _winograd_output(
    m: np.ndarray,
    bias: np.ndarray,
    act: int,
    tiles_h: int,
    tiles_w: int,
    first: int,
    last: int,
    out: np.ndarray,
) -> None:
    """``out`` (NHWC) = act(A'.M.A + bias) for the tiles of tile rows ``first:last``,
    from their products ``m[16, tiles, M]``; outputs past an odd edge are dropped."""
    oh, ow, channels = out.shape[1], out.shape[2], out.shape[3]
    for r in prange(first, last):
        b = r // tiles_h
        y = (r % tiles_h) * 2
        for tx in range(tiles_w):
            t = (r - first) * tiles_w + tx
            x = tx * 2
            tall = y + 1 < oh
            wide = x + 1 < ow
            for k in range(channels):
                s0 = m[0, t, k] + m[4, t, k] + m[8, t, k]
                s1 = m[1, t, k] + m[5, t, k] + m[9, t, k]
                s2 = m[2, t, k] + m[6, t, k] + m[10, t, k]
                s3 = m[3, t, k] + m[7, t, k] + m[11, t, k]
                e0 = m[4, t, k] - m[8, t, k] - m[12, t, k]
                e1 = m[5, t, k] - m[9, t, k] - m[13, t, k]
                e2 = m[6, t, k] - m[10, t, k] - m[14, t, k]
                e3 = m[7, t, k] - m[11, t, k] - m[15, t, k]
                bk = bias[k]
                out[b, y, x, k] = activate(s0 + s1 + s2 + bk, act)
                if wide:
                    out[b, y, x + 1, k] = activate(s1 - s2 - s3 + bk, act)
                if tall:
                    out[b, y + 1, x, k] = activate(e0 + e1 + e2 + bk, act)
                    if wide:
                        out[b, y + 1, x + 1, k] = activate(e1 - e2 - e3 + bk, act)


winograd_output = twin(_winograd_output)


@njit(cache=True, nogil=True)
def winograd_weights(w: np.ndarray, u: np.ndarray) -> None:
    """``u[4i + j, c, m] = (G.g.G')[i, j]`` for each 3x3 filter ``g = w[m, c]``, with
    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]] written out as sums,
    in float64, rounded once to ``u``'s dtype. One pass, no temporaries: NumPy's
    ``einsum`` took 0.47 s of resnet18's 0.9 s planning from the disk cache, NumPy
    sums over whole planes 0.3 s (their float64 temporaries)."""
    t = np.empty((4, 3))
    for c in range(w.shape[1]):
        for m in range(w.shape[0]):  # innermost: u's contiguous axis
            g = w[m, c]
            for col in range(3):
                g0, g1, g2 = np.float64(g[0, col]), np.float64(g[1, col]), np.float64(g[2, col])
                half = 0.5 * (g0 + g2)
                t[0, col], t[1, col], t[2, col], t[3, col] = (
                    g0,
                    half + 0.5 * g1,
                    half - 0.5 * g1,
                    g2,
                )
            for i in range(4):
                a0, a1, a2 = t[i, 0], t[i, 1], t[i, 2]
                half = 0.5 * (a0 + a2)
                u[4 * i, c, m] = a0
                u[4 * i + 1, c, m] = half + 0.5 * a1
                u[4 * i + 2, c, m] = half - 0.5 * a1
                u[4 * i + 3, c, m] = a2


def _pad_interior(x: np.ndarray, top: int, left: int, xp: np.ndarray) -> None:
    """Copy NHWC ``x`` into ``xp`` at offset (top, left); the border is left as it is
    (zeros written once), so only the interior is written each run."""
    n, h, w, c = x.shape
    for t in prange(n * h):
        b = t // h
        y = t % h
        src = x[b, y]
        dest = xp[b, y + top, left : left + w]
        for i in range(w):
            for ci in range(c):
                dest[i, ci] = src[i, ci]


pad_interior = twin(_pad_interior)


def _shuffle_rows(x: np.ndarray, groups: int, out: np.ndarray) -> None:
    """``out[p, j * groups + i] = x[p, i * size + j]`` over [P, groups * size]: each row's
    values seen as [groups, size] and transposed (a channel shuffle in NHWC, a pixel's
    channels per row). Each group is read contiguously and written with a stride, which
    LLVM vectorises as a scatter: one core, loaded, 0.21 against 0.30 ms for the gather
    of a permutation (``out[p, i] = x[p, order[i]]``) on 56x56 x 240 in 3 groups, 0.031
    against 0.052 on 14x14 x 480; the loads strided instead took 0.55. NumPy's strided
    copy of the same transpose had taken 2.5x the gather's time."""
    rows, c = x.shape
    size = c // groups
    for p in prange(rows):
        source = x[p]
        dest = out[p]
        for i in range(groups):
            part = source[i * size : (i + 1) * size]
            for j in range(size):
                dest[j * groups + i] = part[j]


shuffle_rows = twin(_shuffle_rows)


def _copy_columns(part: np.ndarray, out: np.ndarray, start: int) -> None:
    """``out[:, start : start + n] = part`` for ``part`` [rows, n]: one input of a Concat
    along the last axis (channels in NHWC). NumPy's strided copy of the same, a call per
    row, took 1.1-1.9x as long (one core, loaded: 0.054 against 0.056 ms for 55x55 x 64
    into 128 channels, 0.008 against 0.014 for 13x13 x 256 into 512) where ``n`` is a
    multiple of 16; for other widths the loop's scalar remainder lost (58 channels:
    0.020 against 0.015)."""
    rows, n = part.shape
    for r in prange(rows):
        dest = out[r, start : start + n]
        source = part[r]
        for i in range(n):
            dest[i] = source[i]


copy_columns = twin(_copy_columns)


# ---- pooling ---------------------------------------------------------------------
@njit(inline="always")
def taps_inside(start: int, dilation: int, taps: int, size: int) -> tuple[int, int]:
    """The window taps ``k0 <= k < k1`` whose position ``start + k * dilation`` lies in
    ``[0, size)``."""
    return max(0, (-start + dilation - 1) // dilation), min(
        taps, (size - 1 - start) // dilation + 1
    )


@njit(inline="always")
def _average_count(
    ky: tuple[int, int], kx: tuple[int, int], y0: int, x0: int, geometry: tuple[int, ...]
) -> int:
    """How many positions an average divides by: the taps inside the input, or with
    ``count_pad`` those inside the padded input (not past it, which ``ceil_mode`` can
    create). ``geometry`` is (kh, kw, dh, dw, h, w, pb, pr, count_pad)."""
    kh, kw, dh, dw, h, w, pb, pr, count_pad = geometry
    if count_pad:
        # windows start inside the leading pad, so only the far edge clips them
        return min(kh, (h + pb - 1 - y0) // dh + 1) * min(kw, (w + pr - 1 - x0) // dw + 1)
    return max(ky[1] - ky[0], 0) * max(kx[1] - kx[0], 0)


def _pool2d(x: np.ndarray, window: tuple[int, ...], out: np.ndarray) -> None:
    """Max or average pooling over [N, C, H, W]; padding never wins a max.

    ``window`` is (kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, is_max, count_pad): kernel,
    strides, the four pads, dilations, and two flags.
    """
    kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, is_max, count_pad = window
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    geometry = (kh, kw, dh, dw, h, w, pb, pr, count_pad)
    for t in prange(n * c):
        b = t // c
        ch = t % c
        for oy in range(oh):
            y0 = oy * sh - pt
            ky0, ky1 = taps_inside(y0, dh, kh, h)
            for ox in range(ow):
                x0 = ox * sw - pl
                kx0, kx1 = taps_inside(x0, dw, kw, w)
                if is_max:
                    best = x[b, ch, y0 + ky0 * dh, x0 + kx0 * dw]
                    for ki in range(ky0, ky1):
                        for kj in range(kx0, kx1):
                            best = max(best, x[b, ch, y0 + ki * dh, x0 + kj * dw])
                    out[b, ch, oy, ox] = best
                    continue
                total = 0.0
                for ki in range(ky0, ky1):
                    for kj in range(kx0, kx1):
                        total += x[b, ch, y0 + ki * dh, x0 + kj * dw]
                count = _average_count((ky0, ky1), (kx0, kx1), y0, x0, geometry)
                out[b, ch, oy, ox] = total / max(count, 1)


pool2d = twin(_pool2d)


def _max_pool2d_unpadded(
    x: np.ndarray, kh: int, kw: int, sh: int, sw: int, out: np.ndarray
) -> None:
    """Max pooling with no padding and no dilation: every window lies inside the input.

    The general kernel clips each window against the padding with floor divisions per
    output; this common case needs none of that, which makes it several times faster.
    """
    n, c = x.shape[0], x.shape[1]
    oh, ow = out.shape[2], out.shape[3]
    for t in prange(n * c):
        plane = x[t // c, t % c]
        dest = out[t // c, t % c]
        for oy in range(oh):
            for ox in range(ow):
                best = plane[oy * sh, ox * sw]
                for ki in range(kh):
                    for kj in range(kw):
                        value = plane[oy * sh + ki, ox * sw + kj]
                        if value > best:
                            best = value
                dest[oy, ox] = best


max_pool2d_unpadded = twin(_max_pool2d_unpadded)


def _pool2d_nhwc(x: np.ndarray, window: tuple[int, ...], out: np.ndarray) -> None:
    """`_pool2d` over NHWC [N, H, W, C]: the window is clipped once per output pixel and
    the innermost loop runs over the contiguous channels."""
    kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, is_max, count_pad = window
    n, h, w, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    geometry = (kh, kw, dh, dw, h, w, pb, pr, count_pad)
    for t in prange(n * oh):
        b = t // oh
        oy = t % oh
        y0 = oy * sh - pt
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        for ox in range(ow):
            x0 = ox * sw - pl
            kx0, kx1 = taps_inside(x0, dw, kw, w)
            dest = out[b, oy, ox]
            first = x[b, y0 + ky0 * dh, x0 + kx0 * dw]
            for ci in range(c):
                dest[ci] = first[ci] if is_max else 0
            for ki in range(ky0, ky1):
                for kj in range(kx0, kx1):
                    pixel = x[b, y0 + ki * dh, x0 + kj * dw]
                    if is_max:
                        for ci in range(c):
                            dest[ci] = max(dest[ci], pixel[ci])
                    else:
                        for ci in range(c):
                            dest[ci] += pixel[ci]
            if is_max:
                continue
            count = _average_count((ky0, ky1), (kx0, kx1), y0, x0, geometry)
            scale = 1.0 / max(count, 1)
            for ci in range(c):
                dest[ci] *= scale


pool2d_nhwc = twin(_pool2d_nhwc)


def _mean_middle(x: np.ndarray, out: np.ndarray) -> None:
    """``out[b, c] = mean(x[b, :, c])`` over [N, P, C] (GlobalAveragePool on NHWC)."""
    n, p, c = x.shape
    for b in prange(n):
        dest = out[b]
        for ci in range(c):
            dest[ci] = 0
        for q in range(p):
            pixel = x[b, q]
            for ci in range(c):
                dest[ci] += pixel[ci]
        for ci in range(c):
            dest[ci] /= p


mean_middle = twin(_mean_middle)


def _mean_last(x: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = mean(x[i, :])`` for a 2-D view (GlobalAveragePool on [N*C, H*W])."""
    rows, cols = x.shape
    for i in prange(rows):
        acc = 0.0
        for j in range(cols):
            acc += x[i, j]
        out[i] = acc / cols


mean_last = twin(_mean_last)


# ---- normalisation and softmax ----------------------------------------------------
def _softmax(x: np.ndarray, out: np.ndarray) -> None:
    """Softmax over the middle axis of [outer, n, inner] (see `rows.softmax_strip`)."""
    for t in prange(x.shape[0] * x.shape[2]):
        softmax_strip(x, out, t)


softmax = twin(_softmax)


def _layer_norm(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    eps: float,
    out: np.ndarray,
    mean_out: np.ndarray,
    inv_out: np.ndarray,
) -> None:
    """LayerNormalization over rows of [rows, n] (see `rows.layer_norm_row`)."""
    for i in prange(x.shape[0]):
        layer_norm_row(x, scale, bias, eps, out, mean_out, inv_out, i)


layer_norm = twin(_layer_norm)


def _lrn(x: np.ndarray, size: int, alpha: float, beta: float, bias: float, out: np.ndarray) -> None:
    """LRN across the middle axis of [outer, channels, inner] (see `rows.lrn_strip`)."""
    for t in prange(x.shape[0] * x.shape[2]):
        lrn_strip(x, out, t, size, alpha, beta, bias)


lrn = twin(_lrn)


def _channel_affine(x: np.ndarray, mul: np.ndarray, add: np.ndarray, out: np.ndarray) -> None:
    """``out[b, c, p] = x[b, c, p] * mul[c] + add[c]`` (inference BatchNormalization)."""
    n, c, p = x.shape
    for t in prange(n * c):
        b = t // c
        ch = t % c
        for q in range(p):
            out[b, ch, q] = x[b, ch, q] * mul[ch] + add[ch]


channel_affine = twin(_channel_affine)


def _gather4(
    x: np.ndarray,
    i0: np.ndarray,
    i1: np.ndarray,
    i2: np.ndarray,
    i3: np.ndarray,
    fill: Any,
    out: np.ndarray,
) -> None:
    """``out[a, b, c, d] = x[i0[a], i1[b], i2[c], i3[d]]``, or ``fill`` where an index is
    negative (nearest-neighbour Resize; Pad, whose ``-1`` marks the padding)."""
    n0, n1, n2, n3 = out.shape
    for t in prange(n0 * n1):
        a = t // n1
        b = t % n1
        for c in range(n2):
            for d in range(n3):
                if i0[a] < 0 or i1[b] < 0 or i2[c] < 0 or i3[d] < 0:
                    out[a, b, c, d] = fill
                else:
                    out[a, b, c, d] = x[i0[a], i1[b], i2[c], i3[d]]


gather4 = twin(_gather4)
