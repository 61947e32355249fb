"""Integer GEMM for the QDQ INT8 path on the CPU: uint8/int8 x int8 accumulated in int32.

Two kernels, one chosen per weight when it is packed (`pack`):

- **VNNI** (CPUs with AVX-512 VNNI, where Numba compiles for this CPU): ``vpdpbusd``
  multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four products
  into one of 16 int32 lanes, 64 multiply-adds per instruction. LLVM does not find it in
  a plain loop, so `vnni` emits it as an intrinsic. The weight is packed once as
  ``[N/16, K/4, 16, 4]`` bytes (16 output channels, 4 depths each: one 512-bit vector per
  four depths), the activation copied into a ``[M, K4]`` uint8 workspace (int8 values
  shifted by 128), and the micro-kernel keeps 4 rows x 16 channels of sums in registers.
  ``sum (x - zero) * w`` is ``sum x * w - zero * sum w``: the weight's column sums are
  packed with it and subtracted in the epilogue. Needs weights whose zero point is 0
  (symmetric, as ORT's quantizers write them).
- **int16 dot products** (any CPU, and weights with zero points): both operands widened to
  int16 with their zero points subtracted (the weight once, the activation each run), so
  the inner loop is a dot product of two contiguous int16 rows summed in int32, which
  LLVM vectorises as ``vpmaddwd`` (32 multiply-adds per 512-bit instruction, pmaddwd on
  SSE2); every pair sum stays below 2^17, so nothing saturates.

The epilogue runs over the int32 sums: ``acc * scale[n] + bias[n]`` and the fused
activation (a DequantizeLinear'd product), then, for a fused QuantizeLinear,
``saturate(rint(y / y_scale) + y_zero)``, rounding half to even in float32 as the
QuantizeLinear kernel does; so the only difference from ONNX's float reading of the QDQ
graph is the float summation order of the product. Division stays IEEE (no
``fastmath``): with it LLVM multiplies by ``1 / y_scale``, which rounds some values to
the other quantization step.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

from workbench.backends.numba import cpu, vnni

#: int16 values in one 512-bit vector: int16 rows are padded to a multiple of it.
K_ALIGN = 32
#: Output columns per parallel task of the int16 kernel.
COLUMN_BLOCK = 64


def padded(k: int, multiple: int = K_ALIGN) -> int:
    """``k`` rounded up to a multiple of ``multiple``."""
    return -(-k // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class PackedWeight:
    """A constant int8 weight in the layout its kernel reads (see the module docstring).

    Attributes:
        values: VNNI: ``[N/16, K/4 * 16]`` int32 (four int8 each); else ``[N, K32]`` int16.
        column_sums: VNNI: ``sum_k w[k, n]`` per (padded) output channel; else zeros.
        channels: output channels ``N``.
        depth: the activation workspace's width (``K`` padded).
        vnni: which kernel.
    """

    values: np.ndarray
    column_sums: np.ndarray
    channels: int
    depth: int
    vnni: bool

    @property
    def width(self) -> int:
        """Columns of the int32 sums (``N`` padded to 16 for VNNI)."""
        return self.values.shape[0] * vnni.LANES if self.vnni else self.channels


def pack(w: np.ndarray, zero: Any, axis: int) -> PackedWeight:
    """Pack a 2-D int8/uint8 weight for `product`, once.

    Args:
        w: ``[K, N]`` (``axis=1``: output channels along columns, MatMul's and Gemm's
            ``transB=0``) or ``[N, K]`` (``axis=0``, ``transB=1``).
        zero: its zero point: a scalar or one value per output channel.
        axis: the output-channel axis of ``w``.
    """
    rows = np.asarray(w, np.int16) if axis == 0 else np.asarray(w, np.int16).T
    rows = rows - np.asarray(zero, np.int16).reshape(-1, 1)
    n, k = rows.shape
    if vnni.AVAILABLE and rows.min(initial=0) >= -128 and rows.max(initial=0) <= 127:
        n16, k4 = padded(n, vnni.LANES), padded(k, 4)
        full = np.zeros((n16, k4), np.int8)
        full[:n, :k] = rows
        blocks = full.reshape(n16 // vnni.LANES, vnni.LANES, k4 // 4, 4).transpose(0, 2, 1, 3)
        values = np.ascontiguousarray(blocks).reshape(n16 // vnni.LANES, -1).view(np.int32)
        sums = full.astype(np.int32).sum(axis=1, dtype=np.int32)
        return PackedWeight(values, sums, n, k4, True)
    packed = np.zeros((n, padded(k)), np.int16)
    packed[:, :k] = rows
    return PackedWeight(packed, np.zeros(n, np.int32), n, packed.shape[1], False)


def _twin(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """``fn`` compiled parallel and serial (see `cpu.twin`), without ``fastmath``: the
    quantizing epilogue must divide, not multiply by a reciprocal (module docstring)."""
    serial_fn = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial")
    serial_fn.__qualname__ = fn.__qualname__ + "_serial"
    parallel = njit(parallel=True, cache=True, nogil=True, error_model="numpy")(fn)
    serial = njit(cache=True, nogil=True, error_model="numpy")(serial_fn)
    return parallel, serial


def _widen(x: np.ndarray, x_zero: np.ndarray, x16: np.ndarray) -> None:
    """``x16[:, :K] = x - x_zero`` as int16 (the padding columns stay zero)."""
    zero = np.int16(x_zero[0])
    for i in prange(x.shape[0]):
        for k in range(x.shape[1]):
            x16[i, k] = np.int16(x[i, k]) - zero


widen = _twin(_widen)


def _to_unsigned(x: np.ndarray, shift: int, xu: np.ndarray) -> None:
    """``xu[:, :K] = x + shift`` as uint8 (int8 values shifted by 128; padding stays 0)."""
    for i in prange(x.shape[0]):
        for k in range(x.shape[1]):
            xu[i, k] = np.uint8(np.int16(x[i, k]) + shift)


to_unsigned = _twin(_to_unsigned)


def _im2col(x: np.ndarray, geometry: tuple[int, ...], zero: np.ndarray, cols: np.ndarray) -> None:
    """The rows of a 2-D convolution over quantized NHWC ``x``: ``cols[(n, oy, ox), (i,
    j, c)]`` is the tap's value, or the zero point where the tap falls in the padding
    (the quantized 0.0); each tap a run of C contiguous values. ``geometry``: (kh, kw,
    sh, sw, ph, pw, dh, dw, oh, ow)."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    pad = zero[0]
    pixels = oh * ow
    for row in prange(x.shape[0] * pixels):
        b = row // pixels
        oy = (row - b * pixels) // ow
        ox = row - b * pixels - oy * ow
        target = cols[row]
        for i in range(kh):
            y = oy * sh - ph + i * dh
            for j in range(kw):
                xx = ox * sw - pw + j * dw
                first = (i * kw + j) * channels
                if 0 <= y < height and 0 <= xx < width:
                    source = x[b, y, xx]
                    for c in range(channels):
                        target[first + c] = source[c]
                else:
                    for c in range(channels):
                        target[first + c] = pad


im2col = _twin(_im2col)


@njit(inline="always")
def _dot(x: np.ndarray, w: np.ndarray) -> Any:
    """The int32 sum of the products of two int16 rows: the loop LLVM makes ``vpmaddwd``
    of. Rows as 1-D views, indexed from 0: LLVM then knows no index is negative (an
    offset from a division left it checking each index and 50x slower)."""
    acc = np.int32(0)
    for k in range(x.size):
        acc += np.int32(x[k]) * np.int32(w[k])
    return acc


def _gemm(x16: np.ndarray, w16: np.ndarray, acc: np.ndarray) -> None:
    """``acc = x16 @ w16.T`` in int32: dot products of int16 rows (module docstring)."""
    n = w16.shape[0]
    blocks = -(-n // COLUMN_BLOCK)
    for task in prange(x16.shape[0] * blocks):
        i = task // blocks
        first = (task - i * blocks) * COLUMN_BLOCK
        row = x16[i]
        for j in range(first, min(first + COLUMN_BLOCK, n)):
            acc[i, j] = _dot(row, w16[j])


gemm = _twin(_gemm)


def _gemm_vnni(xu: np.ndarray, w: np.ndarray, acc: np.ndarray) -> None:
    """``acc = xu @ w`` (uint8 x int8 in int32) with ``vpdpbusd``, 16 channels a task."""
    for block in prange(w.shape[0]):
        vnni.block_product(xu, w[block], acc, block)


gemm_vnni = _twin(_gemm_vnni)


def _epilogue(
    acc: np.ndarray,
    zero: np.ndarray,
    shift: int,
    column_sums: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    act: int,
    quantized: bool,
    y_scale: np.float32,
    y_zero: np.float32,
    low: np.float32,
    high: np.float32,
    out: np.ndarray,
) -> None:
    """``out = act((acc - (zero + shift) * column_sums) * scale + bias)``, with
    ``quantized`` then quantized by ``y_scale`` and ``y_zero`` and saturated to
    ``[low, high]``. A pass of its own: in the int16 GEMM's loop it kept LLVM from
    vectorising the dot product (4x slower)."""
    offset = np.int32(zero[0]) + np.int32(shift)
    for i in prange(out.shape[0]):
        # two loops, not a branch on ``act`` per value: with one LLVM left the loop
        # without an activation (ORT's quantizer removes Relu) scalar, 6x slower
        if act == cpu.ACT_NONE:
            for j in range(out.shape[1]):
                y = np.float32(acc[i, j] - offset * column_sums[j]) * scale[j] + bias[j]
                if quantized:
                    out[i, j] = min(max(np.rint(y / y_scale) + y_zero, low), high)
                else:
                    out[i, j] = y
        else:
            for j in range(out.shape[1]):
                total = np.float32(acc[i, j] - offset * column_sums[j])
                y = cpu.activate(total * scale[j] + bias[j], act)
                if quantized:
                    out[i, j] = min(max(np.rint(y / y_scale) + y_zero, low), high)
                else:
                    out[i, j] = y


epilogue = _twin(_epilogue)


def _offset(acc: np.ndarray, zero: np.ndarray, shift: int, column_sums: Any, out: Any) -> None:
    """``out = acc - (zero + shift) * column_sums``: MatMulInteger's int32 result."""
    offset = np.int32(zero[0]) + np.int32(shift)
    for i in prange(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = acc[i, j] - offset * column_sums[j]


offset = _twin(_offset)


@dataclasses.dataclass(frozen=True)
class Product:
    """``(x - x_zero) @ w`` bound to fixed arrays: `run` fills `acc` (int32, `width`
    columns); `zero`, `shift` and `column_sums` are what `epilogue` and `offset` take.
    `multiply` is `run` without its copy of ``x`` into `workspace` (uint8 for VNNI,
    int16 else), for a caller that writes the workspace itself (an im2col)."""

    run: Callable[[], None]
    multiply: Callable[[], None]
    workspace: np.ndarray
    acc: np.ndarray
    zero: np.ndarray
    shift: int
    column_sums: np.ndarray


def product(
    weight: PackedWeight, x: np.ndarray, x_zero: np.ndarray, cache: dict[Any, Any]
) -> Product:
    """The bound integer product of the rows of ``x`` (``[..., K]``, 8-bit) and ``weight``.

    ``x_zero`` (one value) is read on every run: a DynamicQuantizeLinear rewrites it.
    Workspaces live in ``cache`` (a node's), made once per shape.
    """
    rows = x.reshape(-1, x.shape[-1])
    m = rows.shape[0]
    work = m * weight.width * weight.depth
    key = ("int8", m, weight.depth, weight.width)
    if key not in cache:  # zeroed once: the kernels never write the padding
        dtype = np.uint8 if weight.vnni else np.int16
        cache[key] = (np.zeros((m, weight.depth), dtype), np.empty((m, weight.width), np.int32))
    xw, acc = cache[key]
    zero = x_zero.reshape(1)  # a view of the planned buffer, never a copy
    if weight.vnni:
        shift = 128 if rows.dtype == np.int8 else 0
        copy = functools.partial(cpu.pick(to_unsigned, rows.size), rows, shift, xw)
        multiply = functools.partial(cpu.pick(gemm_vnni, work), xw, weight.values, acc)
    else:
        shift = 0
        copy = functools.partial(cpu.pick(widen, rows.size), rows, zero, xw)
        multiply = functools.partial(cpu.pick(gemm, work), xw, weight.values, acc)
        zero = np.zeros(1, np.int32)  # already subtracted by `widen`

    def run() -> None:
        copy()
        multiply()

    return Product(run, multiply, xw, acc, zero, shift, weight.column_sums)
