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

from workbench.backends.numba import cpu
from workbench.backends.numba.cpu import _activate, _taps_inside, twin


@njit(fastmath=True, cache=True, nogil=True, error_model="numpy")
def _activate_all(values: np.ndarray, act: int) -> None:
    """``values = act(values)`` in place. Its own small function so that LLVM takes the
    activation's branch out of the loop and vectorises it: written inside the pixel
    loop of a kernel it stayed scalar (SiLU: 8 ns an element, 6x the convolution)."""
    if act == cpu.ACT_NONE:
        return
    for i in range(values.size):
        values[i] = _activate(values[i], act)


def _depthwise_nhwc(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...], act: int,
    out: np.ndarray,
) -> None:  # fmt: skip
    """``out[b, y, x, c] = act(bias[c] + sum over taps of x[b, y', x', c] * w[ki, kj, c])``:
    a depthwise convolution (one channel per group, multiplier 1). ``w`` is [kh, kw, C];
    ``geometry`` as for `cpu._im2col`. Taps in the padding are skipped, not multiplied."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    n, h, wid, c = x.shape
    for t in prange(n * oh):
        b = t // oh
        oy = t % oh
        y0 = oy * sh - ph
        ky0, ky1 = _taps_inside(y0, dh, kh, h)
        for ox in range(ow):
            x0 = ox * sw - pw
            kx0, kx1 = _taps_inside(x0, dw, kw, wid)
            dest = out[b, oy, ox]
            for ci in range(c):
                dest[ci] = bias[ci]
            for ki in range(ky0, ky1):
                row = x[b, y0 + ki * dh]
                for kj in range(kx0, kx1):
                    pixel = row[x0 + kj * dw]
                    tap = w[ki, kj]
                    for ci in range(c):
                        dest[ci] += pixel[ci] * tap[ci]
            _activate_all(dest, act)


depthwise_nhwc = twin(_depthwise_nhwc)


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
        ky0, ky1 = _taps_inside(y0, dh, kh, h)
        for ox in range(ow):
            x0 = ox * sw - pw
            kx0, kx1 = _taps_inside(x0, dw, kw, wid)
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


def bind(
    node: Any, x: np.ndarray, w: np.ndarray, bias: np.ndarray, geometry: tuple[int, ...],
    out: np.ndarray, cached: Callable[[str, Callable[[], np.ndarray]], np.ndarray],
) -> Callable[[], Any]:  # fmt: skip
    """The bound call of a grouped NHWC Conv (``group > 1``) with its fused activation.

    Args:
        node: the Conv node (its ``group`` attribute and ``activation``).
        x: the NHWC input [N, H, W, C].
        w: the ONNX weight [M, C/group, kh, kw].
        bias: [M].
        geometry: (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow), see `cpu._im2col`.
        out: the NHWC output [N, OH, OW, M].
        cached: ``cached(key, make)``, the rearranged weight made once per constant.
    """
    group = int(node.attrs.get("group", 1))
    m, cg, kh, kw = w.shape
    act = cpu.ACTIVATIONS[node.activation]
    work = out.size * cg * kh * kw
    if cg == 1 and m == group:  # depthwise: one filter per channel, over the channels
        taps = cached("depthwise_w", lambda: np.ascontiguousarray(w[:, 0].transpose(1, 2, 0)))
        kernel = cpu.pick(depthwise_nhwc, work)
        return functools.partial(kernel, x, taps, bias, geometry, act, out)
    spread = cached("grouped_w", lambda: np.ascontiguousarray(w.transpose(2, 3, 1, 0)))
    kernel = cpu.pick(grouped_nhwc, work)
    return functools.partial(kernel, x, spread, bias, geometry, group, act, out)
