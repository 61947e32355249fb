"""Channels-last (NHWC) max pooling with its maxima in vector registers, for the CPU.

`cpu.pool2d_nhwc` takes each tap's pixel into the output pixel in memory, a loop over
the channels that LLVM left scalar (``vmaxss``: a maximum is a compare and a select it
did not vectorise through the read-modify-write), so a 3x3 stride-2 MaxPool took 3x
ONNX Runtime's time in SqueezeNet (96 channels on 109x109) and ShuffleNet (24 on
112x112). Here, per output pixel and block of 16 channels, the maximum stays in one
zmm register (`packed_gemm`'s ``f32x16``): one load and one ``vmaxps`` per tap, one
store. Where 16 does not divide the channels the last block overlaps the one before
(channels 8-23 of 24), computed twice to the same values, as in
`depthwise.depthwise_vector_nhwc`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numba.extending import intrinsic

from workbench.backends.numba import simd
from workbench.backends.numba.cpu import taps_inside, twin
from workbench.backends.numba.packed_gemm import LANES, f32x16, load, store


def _maximum(typingctx: Any, x: Any, y: Any) -> Any:
    """``x if x > y else y`` lane by lane: one ``vmaxps`` (NaN in ``x`` gives ``y``, as
    the scalar kernels' ``max`` under fastmath)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])

    return f32x16(f32x16, f32x16), codegen


maximum: Any = intrinsic(_maximum)


def _max_pool2d_vector_nhwc(x: np.ndarray, window: tuple[int, ...], out: np.ndarray) -> None:
    """MaxPool over NHWC float32 [N, H, W, C] with C >= 16 into [N, OH, OW, C]; ``window``
    as for `cpu.pool2d_nhwc` (its average flag and count ignored). Taps in the padding
    are skipped; ``x`` is read as one flat C-contiguous array. A task is one output
    row."""
    kh, kw, sh, sw, pt, pl, _pb, _pr, dh, dw, _is_max, _count_pad = window
    n, h, w, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    xf = x.reshape(-1)
    blocks = (c + LANES - 1) // LANES
    for t in prange(n * oh):
        b = t // oh
        y0 = (t % oh) * sh - pt
        ky0, ky1 = taps_inside(y0, dh, kh, h)
        flat = out[b, t % oh].reshape(-1)
        for ox in range(ow):
            x0 = ox * sw - pl
            kx0, kx1 = taps_inside(x0, dw, kw, w)
            for block in range(blocks):
                c0 = min(block * LANES, c - LANES)
                # from the row's start: x0 is negative at the left edge
                line = xf[(b * h + y0 + ky0 * dh) * w * c + c0 :]
                best = load(line, (x0 + kx0 * dw) * c)
                for ki in range(ky0, ky1):
                    line = xf[(b * h + y0 + ki * dh) * w * c + c0 :]
                    for kj in range(kx0, kx1):
                        best = maximum(best, load(line, (x0 + kj * dw) * c))
                store(flat, ox * c + c0, best)


max_pool2d_vector_nhwc = twin(_max_pool2d_vector_nhwc)


def fits(x: np.ndarray) -> bool:
    """Whether `max_pool2d_vector_nhwc` runs on the NHWC input ``x``: float32, C-contiguous,
    at least one vector of channels, on a CPU with AVX2 (`simd.VECTORS`)."""
    return simd.VECTORS and x.dtype == np.float32 and x.flags.c_contiguous and x.shape[-1] >= LANES
