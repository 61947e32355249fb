"""Integer GEMM for the QDQ INT8 path on the CPU: uint8/int8 x int8 accumulated in int32.

Both operands are widened to int16 with their zero points already subtracted (the
weight once, when it is packed; an activation row each run, one pass over ``M x K``),
so the inner loop is a dot product of two contiguous int16 rows summed in int32. LLVM
turns that loop into ``vpmaddwd`` (pairs of int16 products added into int32 lanes,
32 multiply-adds per 512-bit instruction); with ``(x - zero)`` of uint8 values and
int8 weights every pair sum stays below 2^17, so nothing saturates. The weight is
packed once at compile time as ``[N, K]`` int16 rows padded to a multiple of 32 values
(one 512-bit vector), so every dot product reads both rows whole.

The epilogue runs on each int32 sum while it is in a register: ``int32`` (MatMulInteger),
``float`` (``acc * scale[n] + bias[n]`` and the fused activation: a DequantizeLinear'd
product) or ``quantized`` (that float value quantized like QuantizeLinear:
``saturate(rint(y / y_scale) + y_zero)``, rounding half to even, in float32 as the
QuantizeLinear kernel does, so the only difference from ONNX's float reading of the QDQ
graph is the float summation order of the product).

Division stays IEEE (no ``fastmath``): with it LLVM multiplies by ``1 / y_scale``
instead, which rounds some values to the other quantization step.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

from workbench.backends.numba import cpu

#: int16 values in one 512-bit vector: packed rows are padded to a multiple of it.
K_ALIGN = 32
#: Output columns per parallel task (a task widens nothing; it reads one x row).
COLUMN_BLOCK = 64


def padded(k: int) -> int:
    """``k`` rounded up to a multiple of `K_ALIGN`."""
    return -(-k // K_ALIGN) * K_ALIGN


def pack_weight(w: np.ndarray, zero: Any, axis: int) -> np.ndarray:
    """``(w - zero)`` as ``[N, K]`` int16 rows padded with zeros to `padded` ``(K)``.

    Args:
        w: a 2-D integer weight, ``[K, N]`` (``axis=1``: output channels along columns,
            MatMul's and Gemm's ``transB=0``) or ``[N, K]`` (``axis=0``, ``transB=1``).
        zero: its zero point: a scalar or one value per output channel.
        axis: the output-channel axis of ``w``.
    """
    rows = np.asarray(w, np.int16) if axis == 0 else np.asarray(w, np.int16).T
    n, k = rows.shape
    packed = np.zeros((n, padded(k)), np.int16)
    packed[:, :k] = rows - np.asarray(zero, np.int16).reshape(-1, 1)
    return packed


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


def _epilogue(
    acc: np.ndarray,
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
    """``out = act(acc * scale + bias)``, with ``quantized`` then quantized by ``y_scale``
    and ``y_zero`` and saturated to ``[low, high]``.

    A pass of its own: in the GEMM's loop it kept LLVM from vectorising the dot product
    (4x slower)."""
    for i in prange(acc.shape[0]):
        for j in range(acc.shape[1]):
            y = cpu.activate(np.float32(acc[i, j]) * scale[j] + bias[j], act)
            if quantized:
                out[i, j] = min(max(np.rint(y / y_scale) + y_zero, low), high)
            else:
                out[i, j] = y


epilogue = _twin(_epilogue)
