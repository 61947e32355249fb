"""The CUDA op table and device: kernels from `cuda` over device-resident arrays.

Activations never leave the device between layers: inputs are copied up once per
run, every intermediate lives in the planned arena, outputs are copied down at the
end. Small per-node metadata (shapes, strides, window geometry, weights prepared for
a kernel) is uploaded once per node and input shape, on the planning run.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import cuda

from workbench.backends.numba import cuda as kernels
from workbench.backends.numba import index_cuda, index_ops, quant_ops, shapes
from workbench.backends.numba.elementwise import LOGICAL, PARAMETRIC, parameters
from workbench.backends.numba.executor import Kernel
from workbench.backends.numba.graph import Node
from workbench.errors import UnsupportedModelError

Arrays = list[Any]


class CudaDevice:
    """One CUDA device (or the simulator): device memory, copies and CUDA-event timing."""

    def __init__(self, index: int) -> None:
        cuda.select_device(index)
        self.index = index
        self.simulator = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

    def upload(self, array: np.ndarray) -> Any:
        return cuda.to_device(np.ascontiguousarray(array))

    def upload_into(self, buffer: Any, array: np.ndarray) -> None:
        if array.size:  # NumPy gives empty arrays strides that Numba-CUDA rejects
            buffer.copy_to_device(np.ascontiguousarray(array))

    def download(self, array: Any) -> np.ndarray:
        return array.copy_to_host() if hasattr(array, "copy_to_host") else np.array(array)

    def empty(self, nbytes: int) -> Any:
        return cuda.device_array(nbytes, dtype=np.uint8)

    def view(self, buffer: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        count = math.prod(shape)
        return buffer[: count * np.dtype(dtype).itemsize].view(np.dtype(dtype)).reshape(shape)

    def synchronize(self) -> None:
        cuda.synchronize()

    def stopwatch(self) -> EventStopwatch:
        return EventStopwatch(self.simulator)


class EventStopwatch:
    """CUDA events recorded between kernels; read after a synchronize."""

    def __init__(self, simulator: bool) -> None:
        self._events: list[Any] = []
        self._simulator = simulator

    def mark(self) -> None:
        event = cuda.event()
        event.record()
        self._events.append(event)

    def elapsed_ms(self) -> list[float]:
        with warnings.catch_warnings():
            if self._simulator:
                # the simulator says its event times are host times: that is understood here
                warnings.filterwarnings("ignore", "Simulator timings are bogus")
            return [
                float(a.elapsed_time(b))
                for a, b in zip(self._events, self._events[1:], strict=False)
            ]


def _out(
    node: Node, outs: Arrays | None, shape: tuple[int, ...], dtype: Any, index: int = 0
) -> Any:
    return outs[index] if outs is not None else cuda.device_array(shape, dtype=dtype)


def _meta(node: Node, key: Any, make: Callable[[], np.ndarray]) -> Any:
    """A small array made on the host and uploaded once per node and key."""
    value = node.cache.get(key)
    if value is None:
        value = node.cache[key] = cuda.to_device(np.ascontiguousarray(make()))
    return value


def _prepared(
    node: Node, key: Any, ins: Arrays, index: int, make: Callable[[np.ndarray], np.ndarray]
) -> Any:
    """Device data derived from constant input ``index`` (a weight), prepared once on the host.

    The one copy to the host happens on the planning run, never between layers later.

    Raises:
        UnsupportedModelError: the input is an activation (it would need a host round trip).
    """
    if index not in node.const_inputs:
        raise UnsupportedModelError(
            f"{node.op_type} {node.name!r}: input {index} must be a constant on CUDA"
        )
    value = node.cache.get(key)
    if value is None:
        host = ins[index].copy_to_host()
        value = node.cache[key] = cuda.to_device(np.ascontiguousarray(make(host)))
    return value


def _empty(node: Node) -> Any:
    """A zero-length float32 device array (no bias, no geometry), made once per node."""
    return _meta(node, "empty", lambda: np.zeros(0, np.float32))


def _launch(kernel: Any, size: int, *args: Any) -> None:
    grid, block = kernels.launch_1d(size)
    kernel[grid, block](*args)


def _contiguous_strides(shape: tuple[int, ...]) -> np.ndarray:
    strides = np.ones(len(shape), np.int64)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    return strides


def _broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """Element strides of a contiguous ``shape`` read as ``out_shape`` (0 where broadcast)."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides = _contiguous_strides(padded)
    return np.where(np.array(padded) == 1, 0, strides).astype(np.int64)


# ---- linear algebra ---------------------------------------------------------------------
def _gemm(
    node: Node,
    a3: Any,
    b: Any,
    out_flat: Any,
    m: int,
    n: int,
    k: int,
    batch: int,
    *,
    implicit_conv: bool = False,
    geo: Any = None,
    bias: Any = None,
    rs: int = 0,
    cs: int = 0,
    alpha: float = 1.0,
    beta: float = 1.0,
    act: int = 0,
    plane: int = 0,
) -> None:
    """Launch the tiled GEMM: ``out = act(alpha * a3 @ b + beta * bias)`` (`cuda.gemm_kernel`)."""
    config = kernels.pick_config(m, n)
    grid = ((n + config.bn - 1) // config.bn, (m + config.bm - 1) // config.bm, batch)
    kernel = kernels.gemm_kernel(config, implicit_conv)
    geo = geo if geo is not None else _meta(node, "no_geo", lambda: np.zeros(1, np.int64))
    bias = bias if bias is not None else _empty(node)
    kernel[grid, config.threads](
        a3, b, out_flat, m, n, k, geo, bias, rs, cs, alpha, beta, act, plane
    )


def _activation(node: Node) -> int:
    return kernels.ACT_RELU if node.activation == "Relu" else kernels.ACT_NONE


def conv(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Conv as an implicit GEMM (groups of 1) or a direct kernel (grouped/depthwise)."""
    x, w = ins[0], ins[1]
    if w.ndim not in (3, 4):
        raise UnsupportedModelError(f"Conv {node.name!r}: only 1-D and 2-D convolutions")
    geo = shapes.window(node, x.shape[2:], w.shape[2:])
    x4, w4 = shapes.as_4d(x), shapes.as_4d(w)
    n, c = x4.shape[:2]
    m, _cg, kh, kw = w4.shape
    oh, ow = geo.out
    out = _out(node, outs, (n, m, oh, ow) if x.ndim == 4 else (n, m, ow), x.dtype)
    group = int(node.attrs.get("group", 1))
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else _empty(node)
    act = _activation(node)
    geometry = (*geo.kernel, *geo.strides, *geo.pads[:2], *geo.dilations, oh, ow)
    geo_dev = _meta(node, ("geo", x.shape), lambda: np.array(geometry, np.int64))
    if group != 1:
        _launch(kernels.conv_direct, out.size, x4, w4, bias, geo_dev, group, act, shapes.as_4d(out))
        return [out]
    k = c * kh * kw
    w3 = w4.reshape(1, m, k)
    _gemm(
        node,
        w3,
        x4,
        out.reshape(out.size),
        m,
        n * oh * ow,
        k,
        1,
        implicit_conv=True,
        geo=geo_dev,
        bias=bias,
        rs=1,
        cs=0,
        act=act,
        plane=oh * ow,
    )
    return [out]


def gemm_op(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Gemm; transposed operands are prepared once when constant, copied when not."""
    a = _transposed(node, ins, 0) if node.attrs.get("transA", 0) else ins[0]
    b = _transposed(node, ins, 1) if node.attrs.get("transB", 0) else ins[1]
    c = ins[2] if len(ins) > 2 else None
    m, k = a.shape
    n = b.shape[1]
    out = _out(node, outs, (m, n), a.dtype)
    rs = cs = 0
    if c is not None:
        # element (row, col) of C broadcast to [m, n] sits at row*rs + col*cs
        cm, cn = (1,) * (2 - c.ndim) + tuple(c.shape)
        rs, cs = (cn if cm > 1 else 0), (1 if cn > 1 else 0)
        c = c.reshape(c.size)
    _gemm(
        node,
        a.reshape(1, m, k),
        b.reshape(1, k, n),
        out.reshape(m * n),
        m,
        n,
        k,
        1,
        bias=c,
        rs=rs,
        cs=cs,
        alpha=float(node.attrs.get("alpha", 1.0)),
        beta=float(node.attrs.get("beta", 1.0)),
        act=_activation(node),
    )
    return [out]


def _transposed(node: Node, ins: Arrays, index: int) -> Any:
    x = ins[index]
    if index in node.const_inputs:
        return _prepared(node, ("T", index), ins, index, lambda h: h.T)
    out = _workspace(node, ("T", index, x.shape), x.shape[::-1], x.dtype)
    _copy(node, ("T", index), x, out, x.shape[::-1], _contiguous_strides(x.shape)[::-1].copy())
    return out


def matmul(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Batched MatMul (a batch of 1 broadcasts) with a fused bias and activation."""
    a, b = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    # as numpy.matmul: a 1-D first operand is a row, a 1-D second one a column, and
    # that axis is dropped from the result (the GEMM only sees the flat output)
    out_shape = _matmul_shape(tuple(a.shape), tuple(b.shape))
    if a.ndim == 1:
        a = a.reshape(1, a.shape[0])
    if b.ndim == 1:
        b = b.reshape(b.shape[0], 1)
    # the simulator's shapes reject negative indices, as CUDA kernels would: use tuples
    a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    out = _out(node, outs, out_shape, a.dtype)
    act = _activation(node)
    if b.ndim == 2:
        rows = a.size // k  # every row of a against the same b: one big GEMM
        _gemm(
            node,
            a.reshape(1, rows, k),
            b.reshape(1, k, n),
            out.reshape(out.size),
            rows,
            n,
            k,
            1,
            bias=bias,
            rs=0,
            cs=1,
            act=act,
        )
        return [out]
    count = math.prod(batch)
    a3, b3 = (_expand_batch(node, i, t, batch, count) for i, t in ((0, a), (1, b)))
    _gemm(node, a3, b3, out.reshape(out.size), m, n, k, count, bias=bias, rs=0, cs=1, act=act)
    return [out]


def _matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``a @ b`` under numpy.matmul's rules (1-D operands included)."""
    rows = a[-2:-1] if len(a) > 1 else ()
    cols = b[-1:] if len(b) > 1 else ()
    return (*np.broadcast_shapes(a[:-2], b[:-2]), *rows, *cols)


def _expand_batch(node: Node, index: int, t: Any, batch: tuple[int, ...], count: int) -> Any:
    """``t`` as [count, rows, cols]; a batch of one stays one (the kernel broadcasts it)."""
    shape = tuple(t.shape)
    if math.prod(shape[:-2]) in (1, count):
        return t.reshape(math.prod(shape[:-2]), shape[-2], shape[-1])
    full = (*batch, *shape[-2:])
    dst = _workspace(node, ("expand", index, full), full, t.dtype)
    _copy(node, ("expand", index), t, dst, full, _broadcast_strides(t.shape, full))
    return dst.reshape(count, shape[-2], shape[-1])


def _workspace(node: Node, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    buffer = node.cache.get(key)
    if buffer is None:
        buffer = node.cache[key] = cuda.device_array(shape, dtype=dtype)
    return buffer


def _copy(
    node: Node,
    key: Any,
    src: Any,
    dst: Any,
    shape: tuple[int, ...],
    src_strides: np.ndarray,
    src_offset: int = 0,
    dst_strides: np.ndarray | None = None,
    dst_offset: int = 0,
) -> None:
    dst_strides = _contiguous_strides(shape) if dst_strides is None else dst_strides
    meta_key = ("copy", key, shape, src_strides.tobytes(), dst_strides.tobytes())
    meta = _meta(node, meta_key, lambda: np.array([shape, src_strides, dst_strides], np.int64))
    size = math.prod(shape)
    if size:
        _launch(
            kernels.copy_nd,
            size,
            src.reshape(src.size),
            dst.reshape(dst.size),
            meta[0],
            meta[1],
            src_offset,
            meta[2],
            dst_offset,
        )


# ---- elementwise ---------------------------------------------------------------------------
def _elementwise(node: Node, op: str, args: Arrays, outs: Arrays | None, tag: int = 0) -> Arrays:
    """One broadcasting elementwise kernel launch (plus the node's fused activation);
    comparisons and logic write booleans."""
    out_shape = tuple(np.broadcast_shapes(*(a.shape for a in args)))
    compare = op in kernels.LOGICAL_CODES
    out = _out(node, outs, out_shape, np.bool_ if compare else args[0].dtype)
    a = args[0]
    b = args[1] if len(args) > 1 else args[0]
    shape = out_shape or (1,)

    def meta() -> np.ndarray:
        return np.array(
            [shape, _broadcast_strides(a.shape, shape), _broadcast_strides(b.shape, shape)],
            np.int64,
        )

    dev = _meta(node, ("ew", tag, a.shape, b.shape), meta)
    operands = (a.reshape(a.size), b.reshape(b.size), out.reshape(max(out.size, 1)), *dev)
    if compare:
        _launch(kernels.compare_nd, max(out.size, 1), *operands, kernels.LOGICAL_CODES[op])
        return [out]
    alpha, beta = parameters(op, node.attrs) if op in PARAMETRIC else (0.0, 0.0)
    _launch(
        kernels.elementwise_nd,
        max(out.size, 1),
        *operands,
        kernels.ELEMENTWISE_CODES[op],
        _activation(node),
        alpha,
        beta,
    )
    return [out]


def unary(op: str) -> Kernel:
    def kernel(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
        return _elementwise(node, op, [ins[0]], outs)

    return kernel


def binary(op: str) -> Kernel:
    def kernel(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
        return _elementwise(node, op, [ins[0], ins[1]], outs)

    return kernel


def gelu(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    op = "GeluTanh" if node.attrs.get("approximate", "none") == "tanh" else "Gelu"
    return _elementwise(node, op, [ins[0]], outs)


def variadic(op: str) -> Kernel:
    """Sum, Max or Min of any number of inputs: pairwise broadcasting ops into the output."""

    def kernel(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
        if len(ins) == 1:
            return _elementwise(node, "Identity", ins, outs)
        out = _elementwise(node, op, ins[:2], outs)[0]
        for tag, extra in enumerate(ins[2:], start=1):
            _elementwise(node, op, [out, extra], [out], tag)
        return [out]

    return kernel


def clip(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Clip: Max with the lower bound, then Min with the upper, each if given."""
    x = ins[0]
    host_dtype = np.dtype(x.dtype)
    bounds = shapes.clip_bounds(node, ins, host_dtype)
    out, source = _out(node, outs, x.shape, x.dtype), x
    for tag, (op, bound) in enumerate(zip(("Max", "Min"), bounds, strict=True)):
        if bound is None:
            continue
        if isinstance(bound, np.ndarray):  # an attribute (before opset 11): uploaded once
            bound = _meta(node, ("bound", tag), lambda bound=bound: bound.reshape(1))
        _elementwise(node, op, [source, bound], [out], tag)
        source = out
    if source is x:  # no bounds at all
        _elementwise(node, "Identity", [x], [out])
    return [out]


def where(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Where(condition, x, y) with broadcasting, one thread per output element."""
    condition, a, b = ins
    shape = tuple(np.broadcast_shapes(condition.shape, a.shape, b.shape))
    out = _out(node, outs, shape, a.dtype)
    full = shape or (1,)
    strides = _meta(
        node,
        ("where", condition.shape, a.shape, b.shape),
        lambda: np.array([full, *(_broadcast_strides(t.shape, full) for t in ins)], np.int64),
    )
    flat = [t.reshape(max(t.size, 1)) for t in (condition, a, b, out)]
    _launch(kernels.where_nd, max(out.size, 1), *flat, *strides)
    return [out]


# ---- pooling and normalisation ----------------------------------------------------------------
def pool(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise UnsupportedModelError(f"MaxPool {node.name!r}: the Indices output is not supported")
    x = ins[0]
    geo = shapes.window(
        node, x.shape[2:], node.attrs["kernel_shape"], bool(node.attrs.get("ceil_mode", 0))
    )
    out = _out(
        node, outs, (*x.shape[:2], *geo.out) if x.ndim == 4 else (*x.shape[:2], geo.out[1]), x.dtype
    )
    geometry = (*geo.kernel, *geo.strides, *geo.pads, *geo.dilations)
    geo_dev = _meta(node, ("geo", x.shape), lambda: np.array(geometry, np.int64))
    count_pad = bool(node.attrs.get("count_include_pad", 0))
    _launch(
        kernels.pool2d,
        out.size,
        shapes.as_4d(x),
        geo_dev,
        node.op_type == "MaxPool",
        count_pad,
        shapes.as_4d(out),
    )
    return [out]


def global_average_pool(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    out = _out(node, outs, (*x.shape[:2],) + (1,) * (x.ndim - 2), x.dtype)
    rows = x.shape[0] * x.shape[1]
    x2 = x.reshape(rows, x.size // rows)
    _launch(kernels.reduce_rows, rows, x2, out.reshape(rows), 0, np.nan)
    return [out]


def reduce_op(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Reduce*: the reduced axes are moved last by a strided copy, then one op per row."""
    x = ins[0]
    axes, out_shape = shapes.reduce_axes(node, ins, x.ndim)
    out = _out(node, outs, out_shape, x.dtype)
    if not axes:
        _copy(node, "same", x, out, tuple(x.shape) or (1,), _contiguous_strides(x.shape or (1,)))
        return [out]
    rows = _axes_last(node, x, axes)
    if node.op_type in index_cuda.NORM_CODES:
        code = index_cuda.NORM_CODES[node.op_type]
        _launch(index_cuda.norm_rows, max(rows.shape[0], 1), rows, out.reshape(out.size), code)
        return [out]
    code = kernels.REDUCE_CODES[node.op_type]
    # what an empty row reduces to: NaN (mean), 0, the lowest, the highest, 1
    empty = (np.nan, 0, *shapes.dtype_extremes(np.dtype(x.dtype)), 1)[code]
    _launch(
        kernels.reduce_rows,
        max(rows.shape[0], 1),
        rows,
        out.reshape(out.size),
        code,
        np.dtype(x.dtype).type(empty),
    )
    return [out]


def _axes_last(node: Node, x: Any, axes: list[int]) -> Any:
    """``x`` with ``axes`` moved last by a strided copy, as [kept elements, reduced ones]."""
    kept = [d for d in range(x.ndim) if d not in axes]
    perm = kept + axes
    moved_shape = tuple(x.shape[d] for d in perm)
    moved = _workspace(node, ("moved", x.shape), moved_shape, x.dtype)
    _copy(node, "moved", x, moved, moved_shape, _contiguous_strides(x.shape)[perm])
    rows = math.prod(x.shape[d] for d in kept)
    return moved.reshape(rows, moved.size // max(rows, 1))


def arg_reduce(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """ArgMax / ArgMin: the axis moved last, then one thread per row."""
    x = ins[0]
    axis, out_shape = shapes.arg_axis(node, tuple(x.shape))
    out = _out(node, outs, out_shape, np.int64)
    rows = _axes_last(node, x, [axis])
    last = bool(node.attrs.get("select_last_index", 0))
    is_max = node.op_type == "ArgMax"
    _launch(kernels.arg_rows, max(rows.shape[0], 1), rows, out.reshape(out.size), is_max, last)
    return [out]


def split(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Split: one strided copy per part, from its offset along the axis."""
    x = ins[0]
    axis, sizes = shapes.split_sizes(node, ins, tuple(x.shape))
    strides = _contiguous_strides(tuple(x.shape))
    results, start = [], 0
    for i, size in enumerate(sizes):
        shape = tuple(size if d == axis else n for d, n in enumerate(x.shape))
        out = _out(node, outs, shape, x.dtype, i)
        if out.size:
            _copy(node, ("split", i), x, out, shape, strides, start * int(strides[axis]))
        results.append(out)
        start += size
    return results


def tile(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Tile: one copy reading the input with zero strides along the repeats."""
    x = ins[0]
    out_view, in_view = shapes.tile_view(tuple(x.shape), ins[1])
    out = _out(
        node,
        outs,
        tuple(r * d for r, d in zip(out_view[::2], out_view[1::2], strict=True)),
        x.dtype,
    )
    if out.size:
        _copy(node, "tile", x, out, out_view, _broadcast_strides(in_view, out_view))
    return [out]


def range_op(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Range from host scalars (a computed one is copied down: usually all are constants)."""
    from workbench.backends.numba.cpu_ops import range_op as host_range

    (values,) = host_range(node, [_host(v) for v in ins], None)
    out = _out(node, outs, values.shape, values.dtype)
    if values.size:
        out.copy_to_device(values)
    return [out]


def _host(value: Any) -> np.ndarray:
    return value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value)


def softmax(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    out = _out(node, outs, x.shape, x.dtype)
    view = shapes.softmax_view(node, x.shape)
    _launch(kernels.softmax, view[0] * view[2], x.reshape(view), out.reshape(view))
    return [out]


def layer_norm(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    view = shapes.layer_norm_view(node, x.shape)
    rows, n, tail, stats_shape = view.rows, view.n, view.tail, view.stats_shape
    scale = _row_vector(node, ins, 1, tail)
    if len(ins) > 2 and ins[2] is not None:
        bias = _row_vector(node, ins, 2, tail)
    else:
        bias = _meta(node, "zero_bias", lambda: np.zeros(n, x.dtype))
    out = _out(node, outs, x.shape, x.dtype)
    stats = [
        _out(node, outs, stats_shape, np.float32, i)
        if view.wanted[i]
        else _workspace(node, ("stats", i, stats_shape), stats_shape, np.float32)
        for i in (1, 2)
    ]
    eps = float(node.attrs.get("epsilon", 1e-5))
    _launch(
        kernels.layer_norm,
        rows,
        x.reshape(rows, n),
        scale,
        bias,
        eps,
        out.reshape(rows, n),
        stats[0].reshape(rows),
        stats[1].reshape(rows),
    )
    return [out, *stats][: len(node.outputs)]


def _row_vector(node: Node, ins: Arrays, index: int, tail: tuple[int, ...]) -> Any:
    """Input ``index`` (LayerNorm's scale or bias) broadcast to ``tail`` and flattened.

    A constant is prepared once on the host; an activation is read in place when it
    already has that shape, else broadcast by a device copy on every run.
    """
    n = math.prod(tail)
    if index in node.const_inputs:
        return _prepared(
            node, ("row", index), ins, index, lambda h: np.broadcast_to(h, tail).reshape(n)
        )
    value = ins[index]
    if tuple(value.shape) == tail:
        return value.reshape(n)
    dst = _workspace(node, ("row", index, tail), tail, value.dtype)
    _copy(node, ("row", index), value, dst, tail, _broadcast_strides(value.shape, tail))
    return dst.reshape(n)


def batch_norm(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    if node.attrs.get("training_mode", 0):
        raise UnsupportedModelError(f"BatchNormalization {node.name!r}: training_mode")
    x = ins[0]
    eps = node.attrs.get("epsilon", 1e-5)

    def affine(_: np.ndarray) -> np.ndarray:
        scale, beta, mean, var = (t.copy_to_host().astype(np.float64) for t in ins[1:5])
        mul = scale / np.sqrt(var + eps)
        return np.stack([mul, beta - mean * mul]).astype(x.dtype)

    if {1, 2, 3, 4} <= node.const_inputs:
        params = _prepared(node, "affine", ins, 1, affine)
    else:  # statistics computed in the graph: the same affine form, made on the device
        channels = x.shape[1]
        params = _workspace(node, ("affine", channels), (2, channels), x.dtype)
        _launch(kernels.batch_norm_affine, channels, *ins[1:5], float(eps), params)
    out = _out(node, outs, x.shape, x.dtype)
    shape3 = (x.shape[0], x.shape[1], x.size // (x.shape[0] * x.shape[1]))
    _launch(
        kernels.channel_affine, x.size, x.reshape(shape3), params[0], params[1], out.reshape(shape3)
    )
    return [out]


def resize(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Resize, nearest neighbour (any coordinate mode), rank up to 4."""
    return _gather(node, ins[0], shapes.resize_indices(node, ins, ins[0].shape), 0, outs)


def pad(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Pad (constant, reflect, edge, wrap; negative pads crop), rank up to 4."""
    index, value = shapes.pad_indices(node, ins, ins[0].shape)
    return _gather(node, ins[0], index, value, outs)


def _gather(node: Node, x: Any, index: list[np.ndarray], fill: Any, outs: Arrays | None) -> Arrays:
    """``out = x[index[0], index[1], ...]``, ``fill`` where an index is -1 (Resize, Pad)."""
    if x.ndim > 4:
        raise UnsupportedModelError(f"{node.op_type} {node.name!r}: rank above 4")
    index4 = [np.zeros(1, np.int64)] * (4 - x.ndim) + index
    key = tuple(i.tobytes() for i in index4)
    dev = [_meta(node, ("gather", i, key), lambda i=i: index4[i]) for i in range(4)]
    out = _out(node, outs, tuple(len(i) for i in index), x.dtype)
    x4 = x.reshape((1,) * (4 - x.ndim) + tuple(x.shape))
    out4 = out.reshape(tuple(len(i) for i in index4))
    if out.size:
        _launch(kernels.gather4, out.size, x4, *dev, np.dtype(x.dtype).type(fill), out4)
    return [out]


def lrn(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """LRN across channels (NCHW), one thread per (image, pixel) strip."""
    x = ins[0]
    out = _out(node, outs, x.shape, x.dtype)
    view = shapes.channel_view(tuple(x.shape), False)
    attrs = node.attrs
    _launch(
        kernels.lrn,
        view[0] * view[2],
        x.reshape(view),
        int(attrs["size"]),
        float(attrs.get("alpha", 1e-4)),
        float(attrs.get("beta", 0.75)),
        float(attrs.get("bias", 1.0)),
        out.reshape(view),
    )
    return [out]


# ---- data movement ------------------------------------------------------------------------------
def transpose(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    perm = list(node.attrs.get("perm", list(range(x.ndim))[::-1]))
    out_shape = tuple(x.shape[p] for p in perm)
    out = _out(node, outs, out_shape, x.dtype)
    _copy(node, "t", x, out, out_shape, _contiguous_strides(x.shape)[perm])
    return [out]


def concat(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    axis = int(node.attrs["axis"]) % ins[0].ndim
    shape = list(ins[0].shape)
    shape[axis] = sum(t.shape[axis] for t in ins)
    out = _out(node, outs, tuple(shape), ins[0].dtype)
    out_strides = _contiguous_strides(tuple(shape))
    offset = 0
    for i, part in enumerate(ins):
        if part.size:
            _copy(
                node,
                ("cat", i),
                part,
                out,
                tuple(part.shape),
                _contiguous_strides(part.shape),
                0,
                out_strides,
                offset * int(out_strides[axis]),
            )
        offset += part.shape[axis]
    return [out]


def slice_op(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    parts = shapes.slices(node, ins, x.shape)
    ranges = [range(*s.indices(d)) for s, d in zip(parts, x.shape, strict=True)]
    out_shape = tuple(len(r) for r in ranges)
    out = _out(node, outs, out_shape, x.dtype)
    strides = _contiguous_strides(x.shape)
    offset = sum(int(r.start) * int(s) for r, s in zip(ranges, strides, strict=True) if len(r))
    steps = np.array([r.step for r in ranges], np.int64) * strides
    _copy(node, "slice", x, out, out_shape, steps, offset)
    return [out]


def expand(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    shape = tuple(np.broadcast_shapes(x.shape, tuple(int(d) for d in np.asarray(ins[1]))))
    out = _out(node, outs, shape, x.dtype)
    _copy(node, "expand", x, out, shape, _broadcast_strides(x.shape, shape))
    return [out]


def cast(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    from onnx import helper

    dtype = (
        helper.tensor_dtype_to_np_dtype(int(node.attrs["to"]))
        if node.op_type == "Cast"
        else ins[1].dtype
    )
    x = ins[0]
    out = _out(node, outs, x.shape, dtype)
    _copy(node, "cast", x, out, tuple(x.shape) or (1,), _contiguous_strides(tuple(x.shape) or (1,)))
    return [out]


def gather(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x, index = ins[0], np.asarray(ins[1])
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    out_shape = x.shape[:axis] + index.shape + x.shape[axis + 1 :]
    out = _out(node, outs, out_shape, x.dtype)
    outer, inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1 :])
    index_dev = _meta(node, ("index", index.tobytes()), lambda: index.reshape(-1).astype(np.int64))
    if out.size:
        _launch(
            kernels.gather_axis,
            out.size,
            x.reshape(outer, x.shape[axis], inner),
            index_dev,
            out.reshape(outer, index.size, inner),
        )
    return [out]


def constant_of_shape(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    from onnx import numpy_helper

    value = node.attrs.get("value")
    fill = (
        numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, np.float32)
    )
    out = _out(node, outs, tuple(int(d) for d in np.asarray(ins[0])), fill.dtype)
    if out.size:
        _launch(kernels.fill, out.size, out.reshape(out.size), fill[0])
    return [out]


# ---- index arithmetic (`index_cuda`; the CPU's `index_ops`) -----------------------------------
def _reduction_code(node: Node) -> int:
    reduction = node.attrs.get("reduction", "none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    if reduction not in index_cuda.SCATTER_CODES:
        raise UnsupportedModelError(f"{node.op_type} {node.name!r}: reduction={reduction!r}")
    return index_cuda.SCATTER_CODES[reduction]


def _copy_all(node: Node, src: Any, dst: Any) -> None:
    shape = tuple(src.shape) or (1,)
    _copy(node, "all", src, dst, shape, _contiguous_strides(shape))


def _element_meta(node: Node, index_shape: tuple[int, ...], data_shape: tuple[int, ...]) -> Any:
    """[index shape, data strides] of GatherElements/ScatterElements, uploaded once."""
    return _meta(
        node,
        ("elements", index_shape, data_shape),
        lambda: np.array([index_shape, _contiguous_strides(data_shape)], np.int64),
    )


def gather_elements(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x, index = ins
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    out = _out(node, outs, tuple(index.shape), x.dtype)
    meta = _element_meta(node, tuple(index.shape), tuple(x.shape))
    if out.size:
        flat = (x.reshape(x.size), index.reshape(index.size), out.reshape(out.size))
        _launch(index_cuda.gather_elements, out.size, *flat, *meta, axis, x.shape[axis])
    return [out]


def scatter_elements(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x, index, updates = ins
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    out = _out(node, outs, tuple(x.shape), x.dtype)
    _copy_all(node, x, out)
    meta = _element_meta(node, tuple(index.shape), tuple(x.shape))
    if updates.size:
        flat = (out.reshape(out.size), index.reshape(index.size), updates.reshape(updates.size))
        code = _reduction_code(node)
        _launch(index_cuda.scatter_elements, updates.size, *flat, *meta, axis, x.shape[axis], code)
    return [out]


def _nd_meta(node: Node, data_shape: tuple[int, ...], depth: int, batch_dims: int) -> Any:
    """[dims, strides in slices] of the ``depth`` axes an index row addresses."""
    if batch_dims + depth > len(data_shape):
        raise UnsupportedModelError(
            f"{node.op_type} {node.name!r}: index depth {depth} exceeds the data's rank"
        )
    dims = data_shape[batch_dims : batch_dims + depth]
    return _meta(
        node,
        ("nd", data_shape, depth, batch_dims),
        lambda: np.array([dims, _contiguous_strides(dims)], np.int64).reshape(2, depth),
    )


def gather_nd(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    data, index = ins
    batch_dims = int(node.attrs.get("batch_dims", 0))
    depth = int(tuple(index.shape)[-1])  # the simulator's shapes take no negative index
    dims, strides = _nd_meta(node, tuple(data.shape), depth, batch_dims)
    batch = math.prod(data.shape[:batch_dims])
    width = math.prod(data.shape[batch_dims + depth :])
    rows = index.size // max(batch * depth, 1)
    out_shape = tuple(index.shape)[:-1] + tuple(data.shape)[batch_dims + depth :]
    out = _out(node, outs, out_shape, data.dtype)
    if out.size:
        _launch(
            index_cuda.gather_nd,
            out.size,
            data.reshape(batch, data.size // max(batch * width, 1), width),
            index.reshape(batch, rows, depth),
            out.reshape(batch, rows, width),
            dims,
            strides,
        )
    return [out]


def scatter_nd(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    data, index, updates = ins
    depth = int(tuple(index.shape)[-1])
    dims, strides = _nd_meta(node, tuple(data.shape), depth, 0)
    width = math.prod(data.shape[depth:])
    out = _out(node, outs, tuple(data.shape), data.dtype)
    _copy_all(node, data, out)
    rows = index.size // max(depth, 1)
    if updates.size:
        _launch(
            index_cuda.scatter_nd,
            updates.size,
            out.reshape(out.size // max(width, 1), width),
            index.reshape(rows, depth),
            updates.reshape(rows, width),
            dims,
            strides,
            _reduction_code(node),
        )
    return [out]


def cumsum(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    axis = int(np.asarray(ins[1]).reshape(-1)[0]) % x.ndim
    out = _out(node, outs, tuple(x.shape), x.dtype)
    view = (math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1 :]))
    if x.size:
        exclusive, reverse = (bool(node.attrs.get(a, 0)) for a in ("exclusive", "reverse"))
        strips = view[0] * view[2]
        _launch(index_cuda.cumsum, strips, x.reshape(view), out.reshape(view), exclusive, reverse)
    return [out]


def is_inf(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    negative, positive = index_ops.inf_signs(node)
    op = "IsInf" if negative and positive else "IsPosInf" if positive else "IsNegInf"
    return _elementwise(node, op if negative or positive else "Never", [ins[0]], outs)


# ---- QDQ INT8 (`index_cuda`; the CPU's `quant_ops`) -------------------------------------------
def _quant_view(node: Node, x: Any, param: Any) -> tuple[tuple[int, int, int], np.ndarray]:
    """``x`` as [outer, dim, inner] around the quantization axis, and the steps through a
    scale or zero point of ``param``'s shape (`index_cuda._param`)."""
    shape = tuple(x.shape) or (1,)
    axis = int(node.attrs.get("axis", 1)) % len(shape)
    view = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))
    block = int(node.attrs.get("block_size", 0))
    if param.size == 1 and not block:
        return view, np.array([0, 0, 0, 1], np.int64)
    if not block:  # one value per index along the axis
        return view, np.array([0, 1, 0, 1], np.int64)
    blocks = param.shape[axis]
    return view, np.array([blocks * view[2], view[2], 1, block], np.int64)


def _zero_point(node: Node, ins: Arrays, dtype: Any) -> Any:
    if len(ins) > 2 and ins[2] is not None:
        return ins[2].reshape(ins[2].size)
    return _meta(node, ("zero", np.dtype(dtype).name), lambda: np.zeros(1, dtype))


def quantize_linear(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x, scale = ins[0], ins[1]
    dtype = quant_ops.quantized_type(node, ins)
    out = _out(node, outs, tuple(x.shape), dtype)
    view, steps = _quant_view(node, x, scale)
    info = np.iinfo(dtype)
    if x.size:
        _launch(
            index_cuda.quantize,
            x.size,
            x.reshape(view),
            scale.reshape(scale.size),
            _zero_point(node, ins, dtype),
            _meta(node, ("steps", steps.tobytes()), lambda: steps),
            float(info.min),
            float(info.max),
            out.reshape(view),
        )
    return [out]


def dequantize_linear(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x, scale = ins[0], ins[1]
    quant_ops.checked_type(node, x.dtype)
    out = _out(node, outs, tuple(x.shape), scale.dtype)
    view, steps = _quant_view(node, x, scale)
    if x.size:
        _launch(
            index_cuda.dequantize,
            x.size,
            x.reshape(view),
            scale.reshape(scale.size),
            _zero_point(node, ins, x.dtype),
            _meta(node, ("steps", steps.tobytes()), lambda: steps),
            out.reshape(view),
        )
    return [out]


def dynamic_quantize_linear(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    y = _out(node, outs, tuple(x.shape), np.uint8)
    scale = _out(node, outs, (), np.float32, 1)
    zero = _out(node, outs, (), np.uint8, 2)
    divisor = _workspace(node, "divisor", (1,), np.float32)
    flat = x.reshape(max(x.size, 1)) if x.size else x
    index_cuda.dynamic_parameters[1, 1](flat, scale.reshape(1), zero.reshape(1), divisor)
    if x.size:
        view = (1, 1, x.size)
        steps = _meta(node, "steps", lambda: np.array([0, 0, 0, 1], np.int64))
        _launch(
            index_cuda.quantize,
            x.size,
            x.reshape(view),
            divisor,
            zero.reshape(1),
            steps,
            0.0,
            255.0,
            y.reshape(view),
        )
    return [y, scale, zero]


def matmul_integer(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    a, b = ins[0], ins[1]
    if a.ndim < 2 or b.ndim < 2:
        raise UnsupportedModelError(f"MatMulInteger {node.name!r}: 1-D operands")
    a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    count = math.prod(batch)
    out = _out(node, outs, (*batch, a_shape[-2], b_shape[-1]), np.int32)
    a3, b3 = (_expand_batch(node, i, t, batch, count) for i, t in ((0, a), (1, b)))
    zeros = [
        ins[i].reshape(ins[i].size)
        if len(ins) > i and ins[i] is not None
        else _meta(node, ("zero", i), lambda t=t: np.zeros(1, t.dtype))
        for i, t in ((2, a), (3, b))
    ]
    if out.size:
        out3 = out.reshape(count, a_shape[-2], b_shape[-1])
        _launch(index_cuda.matmul_integer, out.size, a3, b3, *zeros, out3)
    return [out]


def make_kernels() -> dict[str, Kernel]:
    """The CUDA op table (shape-only ops share the CPU's view kernels)."""
    from workbench.backends.numba import cpu_ops

    table: dict[str, Kernel] = {
        "Conv": conv,
        "Gemm": gemm_op,
        "MatMul": matmul,
        "MaxPool": pool,
        "AveragePool": pool,
        "GlobalAveragePool": global_average_pool,
        "Split": split,
        "Tile": tile,
        "Range": range_op,
        "Softmax": softmax,
        "LayerNormalization": layer_norm,
        "BatchNormalization": batch_norm,
        "Resize": resize,
        "Pad": pad,
        "LRN": lrn,
        "Gelu": gelu,
        "Sum": variadic("Add"),
        "Max": variadic("Max"),
        "Min": variadic("Min"),
        "Clip": clip,
        "Where": where,
        "Transpose": transpose,
        "Concat": concat,
        "Slice": slice_op,
        "Expand": expand,
        "Cast": cast,
        "CastLike": cast,
        "Gather": gather,
        "ConstantOfShape": constant_of_shape,
    }
    # views and Shape only touch metadata: the CPU kernels work on device arrays too
    for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape"):
        table[op] = cpu_ops.REFERENCE[op]
    for op in (*kernels.REDUCE_CODES, *index_cuda.NORM_CODES):
        table[op] = reduce_op
    table.update(
        {
            "GatherND": gather_nd,
            "GatherElements": gather_elements,
            "ScatterND": scatter_nd,
            "ScatterElements": scatter_elements,
            "CumSum": cumsum,
            "IsNaN": unary("IsNaN"),
            "IsInf": is_inf,
            "QuantizeLinear": quantize_linear,
            "DequantizeLinear": dequantize_linear,
            "DynamicQuantizeLinear": dynamic_quantize_linear,
            "MatMulInteger": matmul_integer,
        }
    )
    table["ArgMax"] = table["ArgMin"] = arg_reduce
    for op in (*cpu_ops.UNARY_OPS, *PARAMETRIC, "Not"):
        table[op] = unary(op)
    for op in (*LOGICAL, "Add", "Sub", "Mul", "Div", "Pow"):
        table.setdefault(op, binary(op))
    from workbench.backends.numba import tree_cuda

    for op in tree_cuda.tree_ops.TREE_OPS:  # checked by qualified name, run by op type
        table[op] = table[f"ai.onnx.ml.{op}"] = tree_cuda.tree_ensemble
    return table
