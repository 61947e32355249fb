"""QDQ INT8 on the CPU: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear and
MatMulInteger.

The workbench's INT8 variants are QDQ graphs: ``Int8Static`` puts a Quantize/Dequantize
pair on every activation and a DequantizeLinear on every weight, ``Int8Dynamic``
quantizes activations at run time and multiplies with MatMulInteger. A weight's
DequantizeLinear has constant inputs, so compiling folds it to a float weight once; the
activations' pairs run here on every run, rounding half to even and saturating exactly
as ONNX Runtime does, so the variants' outputs match its own within a quantization step.
MatMulInteger is computed exactly: ``(a - a_zero) @ (b - b_zero)`` in float64, whose
53-bit mantissa holds every int32 sum of 8-bit products, through BLAS.

Blocked quantization (``block_size``, opset 21) repeats each scale over its block. Not
supported (`UnsupportedModelError` on the first run): the float8/int4 types.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from workbench.backends.numba import cpu, int8, shapes
from workbench.backends.numba.graph import Node
from workbench.errors import UnsupportedModelError

Arrays = list[Any]
#: A bound step and the node's outputs (see `cpu_ops._bindable`).
Bound = tuple[Callable[[], Any], Arrays]

#: Integer types QuantizeLinear writes and DequantizeLinear reads (DequantizeLinear also
#: reads int32: bias vectors).
QUANT_TYPES = frozenset({"uint8", "int8", "uint16", "int16", "int32"})


def _out(outs: Arrays | None, shape: tuple[int, ...], dtype: Any, index: int = 0) -> np.ndarray:
    return outs[index] if outs is not None else np.empty(shape, dtype=dtype)


def _per_axis(node: Node, value: Any, x_shape: tuple[int, ...]) -> np.ndarray:
    """A scale or zero point shaped to broadcast against ``x``: a scalar, or a 1-D vector
    along ``axis`` (default 1)."""
    value = np.asarray(value)
    axis = int(node.attrs.get("axis", 1)) % max(len(x_shape), 1)
    block = int(node.attrs.get("block_size", 0))
    if block:  # same rank as x, one value per block of ``block`` along ``axis``
        return np.repeat(value, block, axis=axis)[
            (slice(None),) * axis + (slice(0, x_shape[axis]),)
        ]
    if value.size == 1 or value.ndim == 0:
        return value.reshape(())
    return value.reshape((-1,) + (1,) * (len(x_shape) - axis - 1))


def checked_type(node: Node, dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.name not in QUANT_TYPES:
        raise UnsupportedModelError(f"{node.op_type} {node.name!r}: {dtype} values")
    return dtype


def quantized_type(node: Node, ins: Arrays) -> np.dtype:
    """QuantizeLinear's output type: its zero point's, else ``output_dtype``, else uint8."""
    if len(ins) > 2 and ins[2] is not None:
        return checked_type(node, ins[2].dtype)
    code = int(node.attrs.get("output_dtype", 0))
    if code:
        from onnx import helper

        return checked_type(node, helper.tensor_dtype_to_np_dtype(code))
    return np.dtype(np.uint8)


@njit(cache=True, nogil=True)
def _quantize_flat(x: Any, scale: Any, zero: Any, low: float, high: float, out: Any) -> None:
    """`quantize` of a contiguous tensor with one scale and zero point, in one pass."""
    for i in range(x.size):
        q = np.rint(x[i] / scale) + zero
        out[i] = min(max(q, low), high)


@njit(cache=True, nogil=True)
def _dequantize_flat(x: Any, scale: Any, zero: Any, out: Any) -> None:
    """``out = (x - zero) * scale`` over a contiguous tensor, one scale and zero point."""
    for i in range(x.size):
        out[i] = (np.int64(x[i]) - zero) * scale


def _flat(*arrays: Any) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


def quantize(
    x: np.ndarray, scale: Any, zero: Any, dtype: np.dtype, out: np.ndarray | None = None
) -> np.ndarray:
    """``saturate(round_half_even(x / scale) + zero)`` as ``dtype``, in ``x``'s float type
    (one compiled pass for a contiguous tensor with one scale, NumPy otherwise)."""
    info = np.iinfo(dtype)
    if out is None:
        out = np.empty(x.shape, dtype)
    scale, zero = np.asarray(scale, x.dtype), np.asarray(zero, x.dtype)
    if scale.ndim == 0 and zero.ndim == 0 and x.dtype.kind == "f" and _flat(x, out):
        low, high = float(info.min), float(info.max)
        _quantize_flat(x.reshape(-1), scale[()], zero[()], low, high, out.reshape(-1))
        return out
    values = np.clip(np.rint(x / scale) + zero, info.min, info.max)
    np.copyto(out, values, casting="unsafe")
    return out


def _fixed(node: Node, ins: Arrays) -> bool:
    """Whether the scale and zero point are constants, so a bound step may keep them."""
    return all(i in node.const_inputs for i in range(1, len(ins)) if ins[i] is not None)


def quantize_linear(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    dtype = quantized_type(node, ins)
    scale = _per_axis(node, ins[1], x.shape).astype(x.dtype)
    zero = _per_axis(node, ins[2], x.shape) if len(ins) > 2 and ins[2] is not None else 0
    out = _out(outs, x.shape, dtype)
    quantize(x, scale, zero, dtype, out)
    return [out]


def bind_quantize_linear(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """QuantizeLinear as a bound step: with a constant scale and zero point of one value
    each, the compiled pass alone (no Python per run); else `quantize_linear`."""
    x = ins[0]
    dtype = quantized_type(node, ins)
    out = _out(outs, x.shape, dtype)
    scale = np.asarray(ins[1])
    zero = np.asarray(ins[2]) if len(ins) > 2 and ins[2] is not None else np.zeros((), dtype)
    flat = scale.size == 1 and zero.size == 1 and x.dtype.kind == "f" and _flat(x, out)
    if flat and _fixed(node, ins) and not node.attrs.get("block_size", 0):
        info = np.iinfo(dtype)
        params = (x.dtype.type(scale.reshape(())), x.dtype.type(zero.reshape(())))
        bounds = (float(info.min), float(info.max))
        return functools.partial(
            _quantize_flat, x.reshape(-1), *params, *bounds, out.reshape(-1)
        ), [out]
    return functools.partial(quantize_linear, node, ins, [out]), [out]


def dequantize_linear(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """``(x - zero) * scale`` with the subtraction in integers, as ONNX Runtime does."""
    x = ins[0]
    checked_type(node, x.dtype)
    scale = _per_axis(node, ins[1], x.shape)
    out = _out(outs, x.shape, scale.dtype)
    zero = _per_axis(node, ins[2], x.shape) if len(ins) > 2 and ins[2] is not None else None
    if scale.ndim == 0 and (zero is None or zero.ndim == 0) and _flat(x, out):
        shift = 0 if zero is None else int(zero)
        _dequantize_flat(x.reshape(-1), scale[()], shift, out.reshape(-1))
        return [out]
    shifted = x if zero is None else x.astype(np.int64) - zero.astype(np.int64)
    np.multiply(shifted, scale, out=out, casting="unsafe")
    return [out]


def bind_dequantize_linear(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """DequantizeLinear as a bound step: the compiled pass alone where the scale and zero
    point are constants of one value each, else `dequantize_linear`."""
    x = ins[0]
    checked_type(node, x.dtype)
    scale = _per_axis(node, ins[1], x.shape)
    out = _out(outs, x.shape, scale.dtype)
    zero = _per_axis(node, ins[2], x.shape) if len(ins) > 2 and ins[2] is not None else None
    one = scale.ndim == 0 and (zero is None or zero.ndim == 0)
    if one and _fixed(node, ins) and _flat(x, out):
        shift = 0 if zero is None else int(zero)
        return functools.partial(
            _dequantize_flat, x.reshape(-1), scale[()], shift, out.reshape(-1)
        ), [out]
    return functools.partial(dequantize_linear, node, ins, [out]), [out]


def dynamic_quantize_linear(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """uint8 quantization with a scale and zero point from the tensor's own range (which
    always includes 0), as the spec defines them."""
    x = ins[0]
    low = min(0.0, float(np.min(x))) if x.size else 0.0
    high = max(0.0, float(np.max(x))) if x.size else 0.0
    scale = np.float32((high - low) / 255.0)
    zero = np.uint8(np.clip(np.rint(-low / scale), 0, 255)) if scale else np.uint8(0)
    y = _out(outs, x.shape, np.uint8)
    quantize(x, scale if scale else np.float32(1), zero, np.dtype(np.uint8), y)
    scale_out = _out(outs, (), np.float32, 1)
    zero_out = _out(outs, (), np.uint8, 2)
    scale_out[...] = scale
    zero_out[...] = zero
    return [y, scale_out, zero_out]


@njit(cache=True, nogil=True, error_model="numpy")
def _dynamic_quantize_flat(x: Any, y: Any, scale_out: Any, zero_out: Any) -> None:
    """`dynamic_quantize_linear` of a contiguous tensor in two compiled passes, with the
    same arithmetic (the range in float64, the scale rounded to float32)."""
    low, high = 0.0, 0.0
    for i in range(x.size):
        low = min(low, np.float64(x[i]))
        high = max(high, np.float64(x[i]))
    scale = np.float32((high - low) / 255.0)
    zero = min(max(np.rint(-low / np.float64(scale)), 0.0), 255.0) if scale else 0.0
    divisor = scale if scale else np.float32(1.0)
    shift = np.float32(zero)
    for i in range(x.size):
        y[i] = min(max(np.rint(x[i] / divisor) + shift, np.float32(0.0)), np.float32(255.0))
    scale_out[0] = scale
    zero_out[0] = zero


def _bind_dynamic_quantize_linear(node: Node, ins: Arrays, outs: Arrays) -> Callable[[], Any]:
    """DynamicQuantizeLinear as a bound step: the compiled passes for a contiguous
    float32 tensor (no NumPy reductions and temporaries per run), else the kernel."""
    x = ins[0]
    y, scale, zero = outs
    if x.dtype == np.float32 and _flat(x, y):
        flat = (x.reshape(-1), y.reshape(-1), scale.reshape(1), zero.reshape(1))
        return functools.partial(_dynamic_quantize_flat, *flat)
    return functools.partial(dynamic_quantize_linear, node, ins, outs)


dynamic_quantize_linear.bind = _bind_dynamic_quantize_linear  # type: ignore[attr-defined]


def bind_int8_gemm(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """A fused QDQ product (`qdq_fusion`): ``[x_q, x_zero, packed weight, column sums,
    scale, bias]`` in, ``act(acc * scale + bias)`` out, quantized by the node's
    ``y_scale``/``y_zero`` unless its ``dtype`` is float32. A computed ``scale`` (one
    value or one per channel: a dynamic product's) is read on every run."""
    x, x_zero, values, sums, scale, bias = ins
    attrs = node.attrs
    weight = int8.PackedWeight(values, sums, attrs["channels"], attrs["depth"], attrs["vnni"])
    n = weight.channels
    dtype = np.dtype(node.attrs["dtype"])
    out = _out(outs, (*x.shape[:-1], n), dtype)
    product = int8.product(weight, x, np.asarray(x_zero), node.cache)
    if 4 in node.const_inputs:
        epilogue = _int8_epilogue(node, product, scale, bias, out.reshape(-1, n))
        return _sequence(product.run, epilogue), [out]
    # a dynamic product's scale (activation scale x weight scales) changes every run
    per_channel = node.cache.setdefault(("scale", n), np.empty(n, np.float32))
    spread = functools.partial(np.copyto, per_channel, np.broadcast_to(scale.reshape(-1), (n,)))
    epilogue = _int8_epilogue(node, product, per_channel, bias, out.reshape(-1, n))
    return _sequence(product.run, spread, epilogue), [out]


def bind_int8_conv(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """A fused QDQ 2-D convolution (`qdq_fusion`, inputs as `bind_int8_gemm`'s): the
    quantized input's im2col (padding with its zero point), the integer product and the
    epilogue, whose ``[N * OH * OW, M]`` rows are the NHWC output. On NHWC data (see
    `layout`, which runs it channels-last) nothing else is copied; on NCHW data the
    input is copied to NHWC first and the rows back to NCHW."""
    x, x_zero, values, sums, scale, bias = ins
    attrs = node.attrs
    if x.ndim != 4:
        raise UnsupportedModelError(f"Int8Conv {node.name!r}: only 2-D convolutions")
    weight = int8.PackedWeight(values, sums, attrs["channels"], attrs["depth"], attrs["vnni"])
    n, m = x.shape[0], weight.channels
    nhwc_shape = x.shape if node.channels_last else (n, *x.shape[2:], x.shape[1])
    geo = shapes.window(node, nhwc_shape[1:3], attrs["kernel_shape"])
    pixels = geo.out[0] * geo.out[1]
    dtype = np.dtype(attrs["dtype"])
    out = _out(outs, (n, *geo.out, m) if node.channels_last else (n, m, *geo.out), dtype)
    taps = nhwc_shape[3] * math.prod(attrs["kernel_shape"])
    key = ("im2col", x.shape, taps)
    if key not in node.cache:
        node.cache[key] = (
            np.empty(nhwc_shape, x.dtype),
            np.empty((n * pixels, taps), x.dtype),
            np.empty((n * pixels, m), dtype),
        )
    nhwc, cols, rows_out = node.cache[key]
    steps: list[Callable[[], Any]] = []
    if node.channels_last:
        nhwc, rows_out = x, out.reshape(n * pixels, m)
    else:
        steps.append(functools.partial(np.copyto, nhwc, x.transpose(0, 2, 3, 1)))
    zero = np.asarray(x_zero).reshape(1)
    geometry = (*geo.kernel, *geo.strides, *geo.pads[:2], *geo.dilations, *geo.out)
    product = int8.product(weight, cols, zero, node.cache)
    # uint8 taps are what the VNNI kernel reads: im2col writes its workspace directly
    direct = weight.vnni and x.dtype == np.uint8
    target = product.workspace if direct else cols
    unfold = cpu.pick(int8.im2col, cols.size)
    steps.append(functools.partial(unfold, nhwc, geometry, zero, target))
    steps.append(product.multiply if direct else product.run)
    steps.append(_int8_epilogue(node, product, scale, bias, rows_out))
    if not node.channels_last:
        nchw = rows_out.reshape(n, pixels, m).transpose(0, 2, 1)
        steps.append(functools.partial(np.copyto, out.reshape(n, m, pixels), nchw))
    return _sequence(*steps), [out]


def _int8_epilogue(
    node: Node, product: int8.Product, scale: Any, bias: Any, out: np.ndarray
) -> Callable[[], Any]:
    """`int8.epilogue` of ``product`` into the 2-D ``out``, as a bound call."""
    quantized = out.dtype.kind in "iu"
    low, high = (np.iinfo(out.dtype).min, np.iinfo(out.dtype).max) if quantized else (0, 0)
    params = (node.attrs["y_scale"], node.attrs["y_zero"], low, high)
    return functools.partial(
        cpu.pick(int8.epilogue, out.size),
        product.acc, product.zero, product.shift, product.column_sums, scale, bias,
        cpu.ACTIVATIONS[node.activation], quantized, *(np.float32(p) for p in params), out,
    )  # fmt: skip


def _sequence(*calls: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        for call in calls:
            call()

    return run


def _integer_weight(node: Node, ins: Arrays) -> bool:
    """Whether MatMulInteger's ``b`` (and its zero point) is a constant 2-D 8-bit
    matrix and ``a``'s zero point one value: what the integer kernel takes."""
    b = ins[1]
    a_zero = ins[2] if len(ins) > 2 else None
    needed = {1, 3} if len(ins) > 3 and ins[3] is not None else {1}
    return (
        needed <= node.const_inputs
        and b.ndim == 2
        and b.dtype.name in ("int8", "uint8")
        and ins[0].dtype.name in ("int8", "uint8")
        and (a_zero is None or np.size(a_zero) == 1)
    )


def bind_matmul_integer(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """MatMulInteger: int32 ``(a - a_zero) @ (b - b_zero)``; ``a_zero`` per row of ``a``
    or a scalar, ``b_zero`` per column of ``b`` or a scalar.

    A constant 8-bit ``b`` (what ``int8-dynamic`` writes) runs the integer kernels
    (`int8`), packed once; anything else sums in float64 through BLAS, whose 53-bit
    mantissa holds every int32 sum of 8-bit products exactly."""
    a, b = ins[0], ins[1]
    out = _out(
        outs, (*a.shape[:-1], b.shape[-1]) if b.ndim == 2 else np.matmul(a, b).shape, np.int32
    )
    if not _integer_weight(node, ins):
        return functools.partial(_matmul_integer_wide, node, ins, out), [out]
    b_zero = ins[3] if len(ins) > 3 and ins[3] is not None else np.zeros((), b.dtype)
    weight = node.cache.get("weight")
    if weight is None:
        weight = node.cache["weight"] = int8.pack(b, np.asarray(b_zero).reshape(-1), axis=1)
    a_zero = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros((), a.dtype)
    product = int8.product(weight, a, np.asarray(a_zero), node.cache)
    result = out.reshape(-1, weight.channels)
    fix = functools.partial(
        cpu.pick(int8.offset, out.size),
        product.acc, product.zero, product.shift, product.column_sums, result,
    )  # fmt: skip
    return _sequence(product.run, fix), [out]


def _matmul_integer_wide(node: Node, ins: Arrays, out: np.ndarray) -> None:
    """`bind_matmul_integer` in float64 (a ``b`` computed in the graph, or batched)."""
    a, b = ins[0], ins[1]
    a_wide = a.astype(np.float64)
    if len(ins) > 2 and ins[2] is not None:
        zero = np.asarray(ins[2], np.float64)
        a_wide -= zero.reshape(-1, 1) if zero.size > 1 else zero.reshape(())

    def widen() -> np.ndarray:
        wide = b.astype(np.float64)
        if len(ins) > 3 and ins[3] is not None:
            wide -= np.asarray(ins[3], np.float64).reshape(-1)
        return wide

    # a constant weight (the usual case) is widened once per session, not every run
    needed = {1, 3} if len(ins) > 3 and ins[3] is not None else {1}
    if not needed <= node.const_inputs:
        b_wide = widen()
    elif "wide_b" in node.cache:
        b_wide = node.cache["wide_b"]
    else:
        b_wide = node.cache["wide_b"] = widen()
    np.copyto(out, np.matmul(a_wide, b_wide), casting="unsafe")
