"""Grouped and depthwise 2-D convolutions on channels-last (NHWC) data, for the CPU.

A depthwise convolution (one input channel per group) has nothing for a GEMM to
share: each output channel reads one input channel through its own small filter. Run
as im2col + GEMM per group, or as the NCHW direct kernel with its innermost loop over
a few taps, it was most of mobilenet_v3_small's time (one 5x5 layer 9 ms of 22 at
batch 1, and a transpose to NCHW and back around every one). In NHWC a pixel's
channels are contiguous, so the kernel here accumulates whole pixels: for each output
pixel, bias, then every tap inside the input adds ``pixel[c] * filter[tap, c]`` over
the channels, a loop LLVM vectorises, and the activation runs on the row while it is
in cache. Work is split over output rows (image, row) when it is large enough.

A grouped convolution with several channels per group (or a channel multiplier) runs
the same way, its innermost loop over a group's output channels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

from workbench.backends.numba import cpu, simd
from workbench.backends.numba.cpu import activate, taps_inside, twin
from workbench.backends.numba.packed_gemm import LANES, broadcast, fma, load, store


@njit(fastmath=True, cache=True, nogil=True, error_model="numpy")
def _activate_all(values: np.ndarray, act: int) -> None:
    """``values = act(values)`` in place. Its own small function so that LLVM takes the
    activation's branch out of the loop and vectorises it: written inside the pixel
    loop of a kernel it stayed scalar (SiLU: 8 ns an element, 6x the convolution)."""
    if act == cpu.ACT_NONE:
        return
    for i in range(values.size):
        values[i] = activate(values[i], act)


@njit(inline="always")
def _columns_inside(shift: int, stride: int, size: int, count: int) -> tuple[int, int]:
    """The outputs ``lo <= o < hi`` (of ``count``) whose input ``o * stride + shift``
    lies in ``[0, size)``."""
    lo = min(max(0, (-shift + stride - 1) // stride), count)
    return lo, max(min(count, (size - 1 - shift) // stride + 1), lo)


def _depthwise_nhwc(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...], act: int,
    out: np.ndarray,
) -> None:  # fmt: skip
    """``out[b, y, x, c] = act(bias[c] + sum over taps of x[b, y', x', c] * w[ki, kj, c])``:
    a depthwise convolution (one channel per group, multiplier 1). ``w`` is [kh, kw, C];
    ``geometry`` as for `cpu._im2col`. Taps in the padding are skipped, not multiplied.

    A task is one output row: each tap adds its input row, shifted, to the whole output
    row (in L1), so views are made per tap, not per pixel: with a few channels (16 in
    mobilenet's first blocks) the per-pixel views had cost more than the arithmetic.
    """
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    n, h, wid, c = x.shape
    for t in prange(n * oh):
        b = t // oh
        oy = t % oh
        y0 = oy * sh - ph
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        row = out[b, oy]
        for ox in range(ow):
            for ci in range(c):
                row[ox, ci] = bias[ci]
        for ki in range(ky0, ky1):
            source = x[b, y0 + ki * dh]
            for kj in range(kw):
                shift = kj * dw - pw
                lo, hi = _columns_inside(shift, sw, wid, ow)
                tap = w[ki, kj]
                for ox in range(lo, hi):
                    pixel = source[ox * sw + shift]
                    dest = row[ox]
                    for ci in range(c):
                        dest[ci] += pixel[ci] * tap[ci]
        _activate_all(row.reshape(-1), act)


depthwise_nhwc = twin(_depthwise_nhwc)


def _depthwise_rows_nhwc(
    x: np.ndarray, tiled: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...], act: int,
    out: np.ndarray,
) -> None:  # fmt: skip
    """`_depthwise_nhwc` at horizontal stride 1, each tap one loop along whole rows.

    At stride 1 a tap reads a run of input pixels as long as the output row, so output
    row and input row, both flat, line up value for value: with ``tiled`` [kh, kw,
    OW*C] (each tap's filter repeated OW times) the tap is one ``dest[j] += src[j] *
    tiled[j]`` loop of OW*C values. Over the channels alone that loop was C values long,
    too short for the vector loop LLVM makes (16-88 channels in mobilenet_v3_small,
    which ran its remainder scalar): measured on one core, 0.055 instead of 0.14 ms for
    56x56x16 (3x3), 0.046 instead of 0.063 for 14x14x120 (5x5), the same at 240
    channels and more.
    """
    kh, kw, sh, _sw, ph, pw, dh, dw, oh, ow = geometry
    n, h, wid, c = x.shape
    for t in prange(n * oh):
        b = t // oh
        y0 = (t % oh) * sh - ph
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        row = out[b, t % oh].reshape(-1)
        for ox in range(ow):
            for ci in range(c):
                row[ox * c + ci] = bias[ci]
        for ki in range(ky0, ky1):
            source = x[b, y0 + ki * dh].reshape(-1)
            for kj in range(kw):
                shift = kj * dw - pw
                lo, hi = _columns_inside(shift, 1, wid, ow)
                if hi > lo:
                    dest = row[lo * c : hi * c]
                    src = source[(lo + shift) * c : (hi + shift) * c]
                    taps = tiled[ki, kj]
                    for j in range(dest.size):
                        dest[j] += src[j] * taps[j]
        _activate_all(row, act)


depthwise_rows_nhwc = twin(_depthwise_rows_nhwc)


def _depthwise_rows_s2_nhwc(
    x: np.ndarray, planes: np.ndarray, tiled: np.ndarray, bias: np.ndarray,
    geometry: tuple[int, ...], act: int, out: np.ndarray,
) -> None:  # fmt: skip
    """`_depthwise_rows_nhwc` at horizontal stride 2: the input is first split into its
    even and odd columns, ``planes`` [N, H, 2, ceil(W/2), C] (one pass over it), after
    which the input pixels a tap reads are again one contiguous run: column ``2 * ox +
    shift`` is column ``ox + shift // 2`` of plane ``shift % 2``."""
    kh, kw, sh, _sw, ph, pw, dh, dw, oh, ow = geometry
    n, h, wid, c = x.shape
    for t in prange(n * h):
        b = t // h
        y = t % h
        for i in range(wid):
            dest = planes[b, y, i % 2, i // 2]
            pixel = x[b, y, i]
            for ci in range(c):
                dest[ci] = pixel[ci]
    for t in prange(n * oh):
        b = t // oh
        y0 = (t % oh) * sh - ph
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        row = out[b, t % oh].reshape(-1)
        for ox in range(ow):
            for ci in range(c):
                row[ox * c + ci] = bias[ci]
        for ki in range(ky0, ky1):
            for kj in range(kw):
                shift = kj * dw - pw
                lo, hi = _columns_inside(shift, 2, wid, ow)
                if hi > lo:
                    parity = shift % 2
                    first = (lo + (shift - parity) // 2) * c
                    source = planes[b, y0 + ki * dh, parity].reshape(-1)
                    src = source[first : first + (hi - lo) * c]
                    dest = row[lo * c : hi * c]
                    taps = tiled[ki, kj]
                    for j in range(dest.size):
                        dest[j] += src[j] * taps[j]
        _activate_all(row, act)


depthwise_rows_s2_nhwc = twin(_depthwise_rows_s2_nhwc)


def _depthwise_vector_nhwc(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...], act: int,
    out: np.ndarray,
) -> None:  # fmt: skip
    """`_depthwise_nhwc` for float32 with at least 16 channels, its sums in vector
    registers (`packed_gemm`'s ``f32x16``, one zmm with AVX-512): for each output pixel
    and block of 16 channels, bias, then one fused multiply-add per tap, one store.
    Where 16 does not divide the channels the last block overlaps the one before it
    (channels 56-71 of 72): those are computed twice, to the same values.
    Inside the image four neighbouring pixels are summed at once, four independent
    chains that hide the FMA's latency (one chain at a time: 0.47 against 0.35 ms on
    112x112x32, 3x3), each input row and filter row taken as a view first (indexing
    the flat arrays from their starts kept more integers live than registers: 0.23
    against 0.31 ms). The loops over the channels (`_depthwise_nhwc`,
    `_depthwise_rows_nhwc`) load and store every sum once per tap."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    n, h, wid, c = x.shape
    xf, wf, step = x.reshape(-1), w.reshape(-1), sw * c
    blocks = (c + LANES - 1) // LANES
    for t in prange(n * oh):
        b = t // oh
        y0 = (t % oh) * sh - ph
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        flat = out[b, t % oh].reshape(-1)
        ox = 0
        while ox < ow:
            x0 = ox * sw - pw
            kx0, kx1 = taps_inside(x0, dw, kw, wid)
            inside = kx0 == 0 and kx1 == kw and x0 + 3 * sw + (kw - 1) * dw < wid
            if inside and ox + 3 < ow:
                for block in range(blocks):
                    c0 = min(block * LANES, c - LANES)
                    s0 = s1 = s2 = s3 = load(bias, c0)
                    for ki in range(ky0, ky1):
                        line = xf[((b * h + y0 + ki * dh) * wid + x0) * c + c0 :]
                        taps = wf[ki * kw * c + c0 :]
                        for kj in range(kw):
                            at = kj * dw * c
                            tap = load(taps, kj * c)
                            s0 = fma(s0, load(line, at), tap)
                            s1 = fma(s1, load(line, at + step), tap)
                            s2 = fma(s2, load(line, at + 2 * step), tap)
                            s3 = fma(s3, load(line, at + 3 * step), tap)
                    at = ox * c + c0
                    store(flat, at, s0)
                    store(flat, at + c, s1)
                    store(flat, at + 2 * c, s2)
                    store(flat, at + 3 * c, s3)
                ox += 4
                continue
            for block in range(blocks):
                c0 = min(block * LANES, c - LANES)
                total = load(bias, c0)
                for ki in range(ky0, ky1):
                    # from the row's start: x0 is negative at the left edge
                    line = xf[(b * h + y0 + ki * dh) * wid * c + c0 :]
                    taps = wf[ki * kw * c + c0 :]
                    for kj in range(kx0, kx1):
                        total = fma(total, load(line, (x0 + kj * dw) * c), load(taps, kj * c))
                store(flat, ox * c + c0, total)
            ox += 1
        _activate_all(flat, act)


depthwise_vector_nhwc = twin(_depthwise_vector_nhwc)

#: `depthwise_vector_nhwc` on outputs at least this wide: on a 7x7 map a 5x5 filter
#: leaves no four pixels inside the image, and one chain of sums at a time lost to the
#: loop over the channels (576 channels: 0.061 against 0.052 ms on one core).
VECTOR_MIN_WIDTH = 8

#: The vector kernels (`depthwise_vector_nhwc`, `conv_nchw_vector`) and the depthwise
#: channel loop run on the threads from this many multiply-adds, lower than
#: `cpu.PARALLEL_MIN_WORK` (whose reason, BLAS threads beside Numba's, does not apply:
#: they call no BLAS). Alternating two sessions in one process (2-core AMD EPYC, load
#: 1-1.2): mobilenet_v3_small at batch 1 3.14 and 3.25 ms at 2^22, 2.95 and 3.06 at
#: 2^19; efficientnet_b0 14.6 against 13.0, then 18.7 both. The channel loop on a 7x7
#: map, one core against two: 576 channels (5x5) 0.048 against 0.039 ms, 1152 0.096
#: against 0.067.
PARALLEL_MIN_WORK = 1 << 19

#: Depthwise convolutions with fewer channels than this, by horizontal stride, run along
#: rows (`depthwise_rows_nhwc`, `depthwise_rows_s2_nhwc`). Measured on one core: at
#: stride 1 the channel loop vectorises as well from 240 channels up, and the tiled
#: filters (kh*kw*OW*C values) only cost memory; at stride 2 splitting the columns costs
#: what the long loops gain from 72 channels up (16 channels, 112x112 in: 0.10 instead
#: of 0.15 ms).
ROWS_MAX_CHANNELS = {1: 192, 2: 64}


def _grouped_nhwc(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...], group: int,
    act: int, out: np.ndarray,
) -> None:  # fmt: skip
    """A grouped convolution on NHWC data; ``w`` is [kh, kw, C/group, M] (M = output
    channels): each input value of a group is spread over that group's output channels."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    n, h, wid, _ = x.shape
    cg, m = w.shape[2], w.shape[3]
    per_group = m // group
    for t in prange(n * oh):
        b = t // oh
        oy = t % oh
        y0 = oy * sh - ph
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        for ox in range(ow):
            x0 = ox * sw - pw
            kx0, kx1 = taps_inside(x0, dw, kw, wid)
            dest = out[b, oy, ox]
            for oc in range(m):
                dest[oc] = bias[oc]
            for ki in range(ky0, ky1):
                for kj in range(kx0, kx1):
                    pixel = x[b, y0 + ki * dh, x0 + kj * dw]
                    for g in range(group):
                        part = dest[g * per_group : (g + 1) * per_group]
                        for ci in range(cg):
                            value = pixel[g * cg + ci]
                            taps = w[ki, kj, ci, g * per_group : (g + 1) * per_group]
                            for j in range(per_group):
                                part[j] += value * taps[j]
            _activate_all(dest, act)


grouped_nhwc = twin(_grouped_nhwc)


def _conv_nchw_to_nhwc(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...], act: int,
    out: np.ndarray,
) -> None:  # fmt: skip
    """A dense convolution reading NCHW ``x`` and writing NHWC ``out``; ``w`` is
    [C, kh, kw, M]. For a network's first convolution on its few input channels (an
    RGB image): no transpose of the input, and no im2col whose rows would be 27 values
    long; each input value is spread over the M output channels of its output pixel."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    n, c, h, wid = x.shape
    m = w.shape[3]
    for t in prange(n * oh):
        b = t // oh
        oy = t % oh
        y0 = oy * sh - ph
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        row = out[b, oy]
        for ox in range(ow):
            for j in range(m):
                row[ox, j] = bias[j]
        for ci in range(c):
            for ki in range(ky0, ky1):
                source = x[b, ci, y0 + ki * dh]
                for kj in range(kw):
                    shift = kj * dw - pw
                    lo, hi = _columns_inside(shift, sw, wid, ow)
                    taps = w[ci, ki, kj]
                    for ox in range(lo, hi):
                        value = source[ox * sw + shift]
                        dest = row[ox]
                        for j in range(m):
                            dest[j] += value * taps[j]
        _activate_all(row.reshape(-1), act)


conv_nchw_to_nhwc = twin(_conv_nchw_to_nhwc)


def _conv_nchw_vector(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...], act: int,
    out: np.ndarray,
) -> None:  # fmt: skip
    """`_conv_nchw_to_nhwc` for float32 with at least 16 output channels, its sums in
    vector registers as in `_depthwise_vector_nhwc`: per output pixel and block of 16
    output channels, one fused multiply-add per input value (broadcast) and tap, four
    neighbouring pixels at once inside the image; the last block overlaps the one
    before where 16 does not divide the channels. ``w`` is [C, kh, kw, M]."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    n, c, h, wid = x.shape
    m = w.shape[3]
    xf, wf = x.reshape(-1), w.reshape(-1)
    blocks = (m + LANES - 1) // LANES
    for t in prange(n * oh):
        b = t // oh
        y0 = (t % oh) * sh - ph
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        flat = out[b, t % oh].reshape(-1)
        ox = 0
        while ox < ow:
            x0 = ox * sw - pw
            kx0, kx1 = taps_inside(x0, dw, kw, wid)
            if kx0 == 0 and kx1 == kw and x0 + 3 * sw + (kw - 1) * dw < wid and ox + 3 < ow:
                for block in range(blocks):
                    m0 = min(block * LANES, m - LANES)
                    s0 = s1 = s2 = s3 = load(bias, m0)
                    for ci in range(c):
                        for ki in range(ky0, ky1):
                            line = xf[((b * c + ci) * h + y0 + ki * dh) * wid + x0 :]
                            taps = wf[(ci * kh + ki) * kw * m + m0 :]
                            for kj in range(kw):
                                tap = load(taps, kj * m)
                                at = kj * dw
                                s0 = fma(s0, broadcast(line, at), tap)
                                s1 = fma(s1, broadcast(line, at + sw), tap)
                                s2 = fma(s2, broadcast(line, at + 2 * sw), tap)
                                s3 = fma(s3, broadcast(line, at + 3 * sw), tap)
                    at = ox * m + m0
                    store(flat, at, s0)
                    store(flat, at + m, s1)
                    store(flat, at + 2 * m, s2)
                    store(flat, at + 3 * m, s3)
                ox += 4
                continue
            for block in range(blocks):
                m0 = min(block * LANES, m - LANES)
                total = load(bias, m0)
                for ci in range(c):
                    for ki in range(ky0, ky1):
                        # from the row's start: x0 is negative at the left edge
                        line = xf[((b * c + ci) * h + y0 + ki * dh) * wid :]
                        taps = wf[(ci * kh + ki) * kw * m + m0 :]
                        for kj in range(kx0, kx1):
                            at = x0 + kj * dw
                            total = fma(total, broadcast(line, at), load(taps, kj * m))
                store(flat, ox * m + m0, total)
            ox += 1
        _activate_all(flat, act)


conv_nchw_vector = twin(_conv_nchw_vector)


def bind(
    node: Any, x: np.ndarray, w: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...],
    out: np.ndarray, cached: Callable[[str, Callable[[], np.ndarray]], np.ndarray],
    nchw_input: bool = False, *, vector: bool = False,
) -> Callable[[], Any]:  # fmt: skip
    """The bound call of a direct NHWC Conv with its fused activation: grouped (``group
    > 1``), or dense on an NCHW input with few channels (``nchw_input``).

    Args:
        node: the Conv node (its ``group`` attribute and ``activation``).
        x: the NHWC input [N, H, W, C] (NCHW with ``nchw_input``).
        w: the ONNX weight [M, C/group, kh, kw].
        bias: [M].
        geometry: (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow), see `cpu._im2col`.
        out: the NHWC output [N, OH, OW, M].
        cached: ``cached(key, make)``, the rearranged weight made once per constant.
        nchw_input: ``x`` is NCHW (a network's first convolution, see `layout`).
        vector: with ``nchw_input``, `conv_nchw_vector` (float32, 16 or more output
            channels, AVX-512: the caller checks) instead of `conv_nchw_to_nhwc`.
    """
    group = int(node.attrs.get("group", 1))
    m, cg, kh, kw = w.shape
    act = cpu.ACTIVATIONS[node.activation]
    work = out.size * cg * kh * kw
    if nchw_input:
        spread = cached("nchw_w", lambda: np.ascontiguousarray(w.transpose(1, 2, 3, 0)))
        kernel = cpu.pick(conv_nchw_to_nhwc, work)
        if vector:  # its sums start from a vector load of the bias
            bias = np.ascontiguousarray(bias, np.float32)
            kernel = cpu.pick(conv_nchw_vector, work, PARALLEL_MIN_WORK)
        return functools.partial(kernel, x, spread, bias, geometry, act, out)
    if cg == 1 and m == group:  # depthwise: one filter per channel, over the channels
        taps = cached("depthwise_w", lambda: np.ascontiguousarray(w[:, 0].transpose(1, 2, 0)))
        flat = x.flags.c_contiguous and x.dtype == np.float32  # read as one flat array
        if simd.VECTORS and m >= LANES and geometry[9] >= VECTOR_MIN_WIDTH and flat:
            kernel = cpu.pick(depthwise_vector_nhwc, work, PARALLEL_MIN_WORK)
            return functools.partial(
                kernel, x, taps, np.ascontiguousarray(bias, np.float32), geometry, act, out
            )
        stride, ow = geometry[3], geometry[9]
        if m < ROWS_MAX_CHANNELS.get(stride, 0):
            tiled = cached(f"depthwise_rows_w{ow}", lambda: np.tile(taps, (1, 1, ow)))
            if stride == 1:
                kernel = cpu.pick(depthwise_rows_nhwc, work)
                return functools.partial(kernel, x, tiled, bias, geometry, act, out)
            n, h, wid, c = x.shape
            split = (n, h, 2, -(-wid // 2), c)
            planes = cached(f"depthwise_planes{split}", lambda: np.empty(split, x.dtype))
            kernel = cpu.pick(depthwise_rows_s2_nhwc, work)
            return functools.partial(kernel, x, planes, tiled, bias, geometry, act, out)
        kernel = cpu.pick(depthwise_nhwc, work, PARALLEL_MIN_WORK)
        return functools.partial(kernel, x, taps, bias, geometry, act, out)
    spread = cached("grouped_w", lambda: np.ascontiguousarray(w.transpose(2, 3, 1, 0)))
    kernel = cpu.pick(grouped_nhwc, work)
    return functools.partial(kernel, x, spread, bias, geometry, group, act, out)
