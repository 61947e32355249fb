"""A float32 GEMM with pre-packed weights, for products with a constant right operand.

Why not BLAS: a transformer at batch 1 multiplies a few dozen token rows by weights of
768 x 768 to 3072. OpenBLAS (SciPy's, which Numba's ``np.dot`` calls) packs the whole
weight again on every call, which with 50 rows costs about as much as the product: it
ran vit_b_32's products at 24-27 multiply-adds per ns on one core of the 2-core AMD
EPYC where ONNX Runtime's MLAS, which packs its weights once, ran them at 80 on two. So
the weight is packed once, at compile time, into panels of `NR` columns
``[N / NR, K, NR]`` (the last zero-padded), and the product is

- the panels cut into one contiguous share per task (a thread's, in the parallel twin);
- within a share, each panel in slices of `KC` depths (a slice: KC x NR floats, 32 KiB
  with AVX-512's `NR`, 16 KiB with AVX2's, stays in L1) while every `MR` rows pass over it;
- a micro-kernel of `MR` rows x `NR` columns whose sums are `MR` x `VECTORS` vectors of
  16 floats (``f32x16``, an LLVM ``<16 x float>``: one zmm register with AVX-512, two ymm
  with AVX2) carried in registers across the slice: per depth `VECTORS` weight loads,
  one broadcast per row and `VECTORS` x `MR` fused multiply-adds;
- after the last slice the bias and the activation run on the panel's tile (in L1) as it
  is copied to the output.

`conv_packed` runs a dense NHWC convolution on the same micro-kernel and packed weight
as an implicit GEMM: a micro-tile's rows are read from the input itself, with no
im2col matrix (the ``"packed"`` candidate of `strategy`'s measured choice).

The vector code is plain LLVM IR (vector loads, ``llvm.fmuladd``), so it compiles and
is exact on any CPU; `worthwhile` says where it is the faster choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils
from numba.extending import intrinsic

from workbench.backends.numba import simd
from workbench.backends.numba.cpu import activate, twin

#: float32 lanes of one vector; vectors per micro-tile row: with AVX-512's 32 registers
#: two (the 12 sums of 6 rows in 12 zmm), with AVX2's 16 one (each 16-lane vector is two
#: ymm halves: 6 sums in 12 ymm, with the weight's two and a broadcast, Haswell's 6x16
#: kernel; two vectors would spill); rows per micro-tile
LANES = simd.LANES
VECTORS = 2 if simd.compiles_for_host("avx512f") else 1
NR = VECTORS * LANES
MR = 6
#: depth of a K slice (a panel's slice: KC x NR x 4 bytes, 16-32 KiB, L1) and the most rows
#: (an A slice of MC x KC floats: 128 KiB, L2)
KC = 256
MC = 128
_F32 = simd.lanes("f32", scalar_align=4)
f32x16, _VECTOR = _F32.type, _F32.vector
zeros, load, broadcast, store = _F32.zeros, _F32.load, _F32.broadcast, _F32.store


def _fma(typingctx: Any, acc: Any, x: Any, y: Any) -> Any:
    """``acc + x * y`` lane by lane (``llvm.fmuladd``: one FMA where the CPU has it)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        kind = ir.FunctionType(_VECTOR, [_VECTOR] * 3)
        fn = cgutils.get_or_insert_function(builder.module, kind, "llvm.fmuladd.v16f32")
        return builder.call(fn, [args[1], args[2], args[0]])

    return f32x16(f32x16, f32x16, f32x16), codegen


fma: Any = intrinsic(_fma)


def _add(typingctx: Any, x: Any, y: Any) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.fadd(args[0], args[1])

    return f32x16(f32x16, f32x16), codegen


add: Any = intrinsic(_add)


@dataclass(frozen=True)
class PackedWeight:
    """A constant ``[K, N]`` float32 weight in panels: ``panels[p, k, :]`` holds columns
    ``p * NR`` to ``p * NR + NR`` of row ``k`` (zeros past ``N``); ``bias`` is padded too."""

    panels: np.ndarray
    bias: np.ndarray
    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The panels' shape; with `nbytes`, what `memory.planned_memory` counts."""
        return tuple(self.panels.shape)

    @property
    def nbytes(self) -> int:
        """Bytes held: the panels and the padded bias."""
        return int(self.panels.nbytes + self.bias.nbytes)


def pack(w: np.ndarray, bias: np.ndarray | None) -> PackedWeight:
    """Pack a ``[K, N]`` weight (any layout, any float dtype: cast to float32) and its
    optional ``[N]`` bias for `gemm_packed`, in one pass over the weight. ``w`` may
    also be ``[K1, K2, ..., N]``, its leading axes flattened into K in C order: a
    convolution's weight as ``w.transpose(2, 3, 1, 0)`` (taps, then channels), packed
    without a transposed copy first (512 -> 512 3x3: 4.0 against 7.9 ms).

    Every plan packs: vit_b_32's 340 MB took 0.4-0.9 s on the 2-core EPYC VM, mostly the
    first touch of the new memory (0.16 s into reused memory). NumPy's copy, not a
    compiled loop: the weights are read-only arrays, and Numba recompiled its read-only
    specialisation in every process (0.34 s) instead of loading it from its cache."""
    lead, n = w.shape[:-1], w.shape[-1]
    k = int(np.prod(lead))
    full, rest = divmod(n, NR)
    panels = np.empty((full + (rest > 0), k, NR), np.float32)
    # panel p, row (k1, k2, ...), lane j = w[k1, k2, ..., p * NR + j]
    split = w[..., : full * NR].reshape(*lead, full, NR)
    panels[:full].reshape(full, *lead, NR)[...] = np.moveaxis(split, -2, 0)
    if rest:
        panels[full, :, rest:] = 0
        panels[full, :, :rest] = w[..., full * NR :].reshape(k, rest)
    padded_bias = np.zeros(panels.shape[0] * NR, np.float32)
    if bias is not None:
        padded_bias[:n] = bias.reshape(-1)
    return PackedWeight(panels, padded_bias, n)


#: the K axis of a GEMM's row: one run (`_sums`' segments)
_ONE_RUN = np.zeros(1, np.int64)


@njit(inline="always")
def _tile(
    a: np.ndarray,
    i0: int,
    rows: int,
    panel: np.ndarray,
    k0: int,
    k1: int,
    first: bool,
    c: np.ndarray,
    c0: int,
    ldc: int,
) -> None:
    """``c[r * ldc + c0 : +NR] (+)= a[i0 + r, k0:k1] @ panel[k0:k1]`` for ``r < rows``
    (``rows`` at most `MR`); ``first``: the sums start at zero, else at what ``c`` holds."""
    k = a.shape[1]
    at = i0 * k + k0
    bases = (at, at + k, at + 2 * k, at + 3 * k, at + 4 * k, at + 5 * k)
    _sums(a.reshape(-1), bases, rows, _ONE_RUN, k1 - k0, panel, k0, first, c, c0, ldc)


@njit(inline="always")
def _sums(
    src: np.ndarray,
    bases: Any,
    rows: int,
    segments: np.ndarray,
    length: int,
    panel: np.ndarray,
    d0: int,
    first: bool,
    c: np.ndarray,
    c0: int,
    ldc: int,
) -> None:
    """The micro-kernel: ``c[r * ldc + c0 : +NR] (+)= A[r] @ panel[d0 : d0 + depth]`` for
    ``r < rows`` (at most `MR`; fewer rows take the one-row loop), where row ``r`` of A
    is the flat ``src``'s runs ``bases[r] + segments[s]`` of ``length`` values in turn
    (a GEMM's row: one run; a convolution's pixel: one per kernel row or tap) and
    ``bases`` a tuple of `MR` offsets; ``first``: the sums start at zero, else at what
    ``c`` holds."""
    flat_p = panel.reshape(-1)
    if rows == MR and VECTORS == 1:
        s0, s1, s2, s3, s4, s5 = zeros(), zeros(), zeros(), zeros(), zeros(), zeros()
        d = d0
        for s in range(segments.shape[0]):
            r0, r1, r2, r3, r4, r5 = _starts(bases, segments[s])
            for e in range(length):
                w0 = load(flat_p, d * NR)
                s0 = fma(s0, broadcast(src, r0 + e), w0)
                s1 = fma(s1, broadcast(src, r1 + e), w0)
                s2 = fma(s2, broadcast(src, r2 + e), w0)
                s3 = fma(s3, broadcast(src, r3 + e), w0)
                s4 = fma(s4, broadcast(src, r4 + e), w0)
                s5 = fma(s5, broadcast(src, r5 + e), w0)
                d += 1
        _put_one(c, c0, first, s0)
        _put_one(c, c0 + ldc, first, s1)
        _put_one(c, c0 + 2 * ldc, first, s2)
        _put_one(c, c0 + 3 * ldc, first, s3)
        _put_one(c, c0 + 4 * ldc, first, s4)
        _put_one(c, c0 + 5 * ldc, first, s5)
        return
    if rows == MR:
        s00, s01, s10, s11, s20, s21 = zeros(), zeros(), zeros(), zeros(), zeros(), zeros()
        s30, s31, s40, s41, s50, s51 = zeros(), zeros(), zeros(), zeros(), zeros(), zeros()
        d = d0
        for s in range(segments.shape[0]):
            r0, r1, r2, r3, r4, r5 = _starts(bases, segments[s])
            for e in range(length):
                w0 = load(flat_p, d * NR)
                w1 = load(flat_p, d * NR + LANES)
                x = broadcast(src, r0 + e)
                s00, s01 = fma(s00, x, w0), fma(s01, x, w1)
                x = broadcast(src, r1 + e)
                s10, s11 = fma(s10, x, w0), fma(s11, x, w1)
                x = broadcast(src, r2 + e)
                s20, s21 = fma(s20, x, w0), fma(s21, x, w1)
                x = broadcast(src, r3 + e)
                s30, s31 = fma(s30, x, w0), fma(s31, x, w1)
                x = broadcast(src, r4 + e)
                s40, s41 = fma(s40, x, w0), fma(s41, x, w1)
                x = broadcast(src, r5 + e)
                s50, s51 = fma(s50, x, w0), fma(s51, x, w1)
                d += 1
        _put(c, c0, first, s00, s01)
        _put(c, c0 + ldc, first, s10, s11)
        _put(c, c0 + 2 * ldc, first, s20, s21)
        _put(c, c0 + 3 * ldc, first, s30, s31)
        _put(c, c0 + 4 * ldc, first, s40, s41)
        _put(c, c0 + 5 * ldc, first, s50, s51)
        return
    for r in range(rows):
        s0, s1 = zeros(), zeros()
        d = d0
        for s in range(segments.shape[0]):
            base = bases[r] + segments[s]
            for e in range(length):
                x = broadcast(src, base + e)
                s0 = fma(s0, x, load(flat_p, d * NR))
                if VECTORS == 2:
                    s1 = fma(s1, x, load(flat_p, d * NR + LANES))
                d += 1
        if VECTORS == 2:
            _put(c, c0 + r * ldc, first, s0, s1)
        else:
            _put_one(c, c0 + r * ldc, first, s0)


@njit(inline="always")
def _starts(bases: Any, shift: int) -> Any:
    """The `MR` rows' offsets in ``src`` for the run ``shift`` past each row's start."""
    return (bases[0] + shift, bases[1] + shift, bases[2] + shift,
            bases[3] + shift, bases[4] + shift, bases[5] + shift)  # fmt: skip


@njit(inline="always")
def _put(c: np.ndarray, at: int, first: bool, s0: Any, s1: Any) -> None:
    _put_one(c, at, first, s0)
    _put_one(c, at + LANES, first, s1)


@njit(inline="always")
def _put_one(c: np.ndarray, at: int, first: bool, s0: Any) -> None:
    if not first:
        s0 = add(s0, load(c, at))
    store(c, at, s0)


def _gemm_packed(
    a: np.ndarray,
    panels: np.ndarray,
    bias: np.ndarray,
    act: int,
    tiles: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out = act(a @ w + bias)`` for ``a`` [M, K] (C-contiguous float32, M at most
    `MC`) and ``w`` packed into ``panels`` [P, K, NR] with its ``bias`` (`pack`); ``out``
    [M, N] may be any view whose rows are contiguous.

    The panels are cut into ``len(tiles)`` contiguous shares, one task each (a thread's
    share, in the parallel twin); ``tiles`` [tasks, MC, NR] is each task's scratch: one
    panel's sums, which the epilogue copies to ``out`` with the bias and activation.
    """
    m, k = a.shape
    count = panels.shape[0]
    shares = tiles.shape[0]
    per_share = -(-count // shares)
    for share in prange(shares):
        tile = tiles[share].reshape(-1)
        for p in range(share * per_share, min(count, (share + 1) * per_share)):
            panel = panels[p]
            for k0 in range(0, k, KC):
                k1 = min(k, k0 + KC)
                for i0 in range(0, m, MR):
                    _tile(a, i0, min(MR, m - i0), panel, k0, k1, k0 == 0, tile, i0 * NR, NR)
            _epilogue(tile, m, bias, act, out, 0, p * NR)


gemm_packed = twin(_gemm_packed)


@njit(inline="always")
def _epilogue(
    tile: np.ndarray, rows: int, bias: np.ndarray, act: int, out: np.ndarray, i0: int, j0: int
) -> None:
    """``out[i0 + i, j0 : j0 + NR] = act(tile[i * NR : +NR] + bias[j0 : j0 + NR])`` for
    ``i < rows``, the columns cut at ``out``'s width."""
    width = min(NR, out.shape[1] - j0)
    for i in range(rows):
        row = tile[i * NR : i * NR + width]
        dest = out[i0 + i, j0 : j0 + width]
        shift = bias[j0 : j0 + width]
        for j in range(width):
            dest[j] = activate(row[j] + shift[j], act)


@dataclass(frozen=True)
class ImplicitPlan:
    """Where `conv_packed` reads a convolution's input: the input zero-bordered into
    ``padded`` (an NHWC shape; None where every tap lies inside the input) at ``top``,
    ``left``, and the K axis (taps, then channels) as ``len(segments)`` runs of
    ``length`` contiguous values, run ``s`` starting ``segments[s]`` floats after an
    output pixel's first tap."""

    padded: tuple[int, int, int, int] | None
    top: int
    left: int
    segments: np.ndarray
    length: int


def implicit_plan(shape: tuple[int, ...], geometry: tuple[int, ...]) -> ImplicitPlan:
    """The `ImplicitPlan` of a convolution of an NHWC input of ``shape`` (``geometry``
    as for `cpu._im2col`; trailing pads show only in its output size)."""
    n, h, w, c = shape
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    rows = max(h + ph, (oh - 1) * sh + (kh - 1) * dh + 1)
    cols = max(w + pw, (ow - 1) * sw + (kw - 1) * dw + 1)
    padded = None if (rows, cols, ph, pw) == (h, w, 0, 0) else (n, rows, cols, c)
    if dw == 1:  # a row's kw taps are adjacent pixels: one run of kw * C values
        starts = [ki * dh * cols * c for ki in range(kh)]
        return ImplicitPlan(padded, ph, pw, np.array(starts, np.int64), kw * c)
    starts = [(ki * dh * cols + kj * dw) * c for ki in range(kh) for kj in range(kw)]
    return ImplicitPlan(padded, ph, pw, np.array(starts, np.int64), c)


def _conv_packed(
    xp: np.ndarray,
    geometry: tuple[int, ...],
    segments: np.ndarray,
    length: int,
    panels: np.ndarray,
    bias: np.ndarray,
    act: int,
    tiles: np.ndarray,
    out: np.ndarray,
) -> None:
    """A dense NHWC convolution as an implicit GEMM on the packed weight: ``out``
    [N*OH*OW, M] ``= act(im2col(x) @ w + bias)``, ``w`` packed (`pack`) from the
    ``[kh*kw*C, M]`` operand (taps, then channels), without an im2col matrix.

    ``xp`` is the input, zero-bordered where a tap falls outside it, and ``segments``
    and ``length`` say where a pixel's taps lie (`implicit_plan`). The output pixels are
    cut into ``len(tiles)`` contiguous shares of whole micro-tiles of `MR` pixels (a
    short one runs its rows one at a time), one task each (a thread's, in the parallel
    twin); each micro-tile runs every panel over the whole depth, its `MR` rows of
    input in L1 and the weight streamed from L2, then the epilogue. ``tiles`` [tasks,
    MR * NR] is each task's scratch.

    Against im2col blocks unfolded into each thread's cache and multiplied by the same
    micro-kernel (one core of the 2-core AMD EPYC, loaded, batch 32, 3x3): 49 against
    42 multiply-adds per ns on 8x8 maps of 32 -> 64 channels, 46 against 34 on 24x24
    maps of 32 -> 32, 51 against 50 on 6x6 maps of 128 -> 128: the unfold's copies
    weighed most where the channels were few.
    """
    oh, ow, sh, sw = geometry[8], geometry[9], geometry[2], geometry[3]
    src = xp.reshape(-1)
    # a pixel's first tap in ``src``: (image, row, column) of the zero-bordered input
    plane = (xp.shape[1], xp.shape[2], xp.shape[3], oh, ow, sh, sw)
    pixels = out.shape[0]
    shares = tiles.shape[0]
    per_share = MR * -(-pixels // (shares * MR))
    for share in prange(shares):
        tile = tiles[share]
        end = min(pixels, (share + 1) * per_share)
        for q0 in range(share * per_share, end, MR):
            rows = min(MR, end - q0)
            bases = (
                _first_tap(q0, plane), _first_tap(q0 + 1, plane), _first_tap(q0 + 2, plane),
                _first_tap(q0 + 3, plane), _first_tap(q0 + 4, plane), _first_tap(q0 + 5, plane),
            )  # fmt: skip
            for p in range(panels.shape[0]):
                _sums(src, bases, rows, segments, length, panels[p], 0, True, tile, 0, NR)
                _epilogue(tile, rows, bias, act, out, q0, p * NR)


conv_packed = twin(_conv_packed)


@njit(inline="always")
def _first_tap(q: int, plane: tuple[int, ...]) -> int:
    """Where output pixel ``q``'s first tap lies in the flat zero-bordered input
    (``plane``: its rows, columns and channels, the output's rows and columns, the
    strides); a pixel past the last gives an offset that is never read."""
    rows_in, cols_in, c, oh, ow, sh, sw = plane
    t = q // ow
    b = t // oh
    return ((b * rows_in + (t - b * oh) * sh) * cols_in + (q - t * ow) * sw) * c


#: a micro-kernel whose sums and operands fit the vector registers: AVX-512's two
#: vectors a row, or AVX2's one (`VECTORS`)
AVAILABLE = VECTORS == 2 or simd.compiles_for_host("fma")


def worthwhile(m: int, k: int, n: int, dtype: Any) -> bool:
    """Whether `gemm_packed` beats BLAS on ``[m, k] @ [k, n]`` here.

    Measured on the 2-core AMD EPYC (one thread each, min of 15 calls): 0.49-0.85x
    OpenBLAS's time from 8 to 128 rows at K = 512 and 768, 1.06-1.17x at 256-512 rows
    (OpenBLAS packs the rows too), 1.3x on one row (its GEMV), and 2-3x below K = 64
    (each tile's epilogue weighs more than its few depths).
    """
    return AVAILABLE and dtype == np.float32 and 2 <= m <= MC and k >= KC and n >= NR
