"""The ONNX operators the torch backends run, each as a function of torch tensors.

A kernel takes the node's attributes (a plain dict, defaults applied by the kernel) and
the node's inputs in order (None for an omitted optional input) and returns its first
output. Values computed from shapes (``Shape``, the ``int64`` constants of a ``Reshape``)
stay Python ints and tuples rather than tensors, so that ``torch.compile`` sees plain
shape arithmetic instead of data-dependent tensors: a rank-0 ``int64`` is an ``int``, a
rank-1 one a ``tuple``; kernels that need a tensor make one (`as_tensor`).

This module imports torch at its top: only the converter imports it, inside the functions
that run when an ONNX model is compiled for a torch backend.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from workbench.errors import UnsupportedModelError

Attrs = dict[str, Any]
Static = int | tuple[int, ...]
Kernel = Callable[..., Any]

#: ONNX op type (default domain) -> kernel: the ops the torch backends run
KERNELS: dict[str, Kernel] = {}

_DTYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    16: torch.bfloat16,
}


def _op(*names: str) -> Callable[[Kernel], Kernel]:
    def register(kernel: Kernel) -> Kernel:
        for name in names:
            KERNELS[name] = kernel
        return kernel

    return register


def is_static(value: Any) -> bool:
    """Whether ``value`` is shape arithmetic kept in Python (an int or a tuple of ints)."""
    return isinstance(value, int | tuple)


def as_tensor(value: Any, like: Any = None) -> Any:
    """``value`` as a tensor (an ``int64`` one for shape values), on ``like``'s device."""
    if not is_static(value):
        return value
    device = like.device if isinstance(like, torch.Tensor) else None
    return torch.tensor(value, dtype=torch.int64, device=device)


def _ints(value: Any) -> tuple[int, ...]:
    """A shape value, a constant or a small int tensor as a tuple of ints."""
    if isinstance(value, int):
        return (value,)
    if isinstance(value, tuple):
        return value
    return tuple(int(v) for v in value.reshape(-1).tolist())


def _axes(attrs: Attrs, axes: Any) -> tuple[int, ...] | None:
    """Axes from the input (opset 13+ / 18+) or the attribute (older opsets)."""
    if axes is not None:
        return _ints(axes)
    return tuple(attrs["axes"]) if "axes" in attrs else None


# ---- elementwise -------------------------------------------------------------------------
_UNARY: dict[str, Callable[[Any], Any]] = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Erf": torch.erf,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Reciprocal": torch.reciprocal,
}


def _unary(fn: Callable[[Any], Any], attrs: Attrs, x: Any) -> Any:
    return fn(x)


KERNELS.update({name: functools.partial(_unary, fn) for name, fn in _UNARY.items()})

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "Add": operator.add,
    "Sub": operator.sub,
    "Mul": operator.mul,
    "Pow": torch.pow,
    "Equal": operator.eq,
    "Less": operator.lt,
    "Greater": operator.gt,
    "LessOrEqual": operator.le,
    "GreaterOrEqual": operator.ge,
    "And": operator.and_,
    "Or": operator.or_,
}


def _binary(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    """``fn`` on two values: in Python for shape values, else on tensors."""
    if is_static(a) and is_static(b):
        return _static_elementwise(fn, a, b)
    return fn(as_tensor(a, b), as_tensor(b, a))


def _static_elementwise(fn: Callable[[Any, Any], Any], a: Static, b: Static) -> Static:
    """``fn`` on shape values with ONNX broadcasting (a scalar or a length-1 tuple spreads)."""
    if isinstance(a, int) and isinstance(b, int):
        return int(fn(a, b))
    xs, ys = _ints(a), _ints(b)
    n = max(len(xs), len(ys))
    return tuple(int(fn(xs[i % len(xs)], ys[i % len(ys)])) for i in range(n))


def _elementwise(fn: Callable[[Any, Any], Any], attrs: Attrs, a: Any, b: Any) -> Any:
    return _binary(fn, a, b)


KERNELS.update({name: functools.partial(_elementwise, fn) for name, fn in _BINARY.items()})


@_op("Div")
def _div(attrs: Attrs, a: Any, b: Any) -> Any:
    # ONNX integer division truncates toward zero, as Python's int(a / b) does
    return _binary(lambda x, y: int(x / y) if isinstance(x, int) else x / y, a, b)


@_op("Mod")
def _mod(attrs: Attrs, a: Any, b: Any) -> Any:
    if attrs.get("fmod", 0):  # C's fmod: the sign of the dividend
        return _binary(
            lambda x, y: math.fmod(x, y) if isinstance(x, int) else torch.fmod(x, y), a, b
        )
    return _binary(operator.mod, a, b)  # Python's and torch's %: the sign of the divisor


@_op("Not")
def _not(attrs: Attrs, x: Any) -> Any:
    return torch.logical_not(as_tensor(x).bool())


@_op("Where")
def _where(attrs: Attrs, condition: Any, x: Any, y: Any) -> Any:
    like = next((v for v in (x, y, condition) if not is_static(v)), None)
    # a comparison of shape values is a Python 0 or 1, not a bool
    return torch.where(as_tensor(condition, like).bool(), as_tensor(x, like), as_tensor(y, like))


@_op("Sum")
def _sum(attrs: Attrs, *xs: Any) -> Any:
    return functools.reduce(operator.add, xs)


@_op("LeakyRelu")
def _leaky_relu(attrs: Attrs, x: Any) -> Any:
    return F.leaky_relu(x, attrs.get("alpha", 0.01))


@_op("Clip")
def _clip(attrs: Attrs, x: Any, low: Any = None, high: Any = None) -> Any:
    # opset < 11 carries the bounds as attributes, later opsets as optional inputs
    low = attrs.get("min") if low is None else low
    high = attrs.get("max") if high is None else high
    return x if low is None and high is None else torch.clamp(x, low, high)


@_op("Gelu")
def _gelu(attrs: Attrs, x: Any) -> Any:
    return F.gelu(x, approximate=attrs.get("approximate", "none"))


@_op("HardSigmoid")
def _hard_sigmoid(attrs: Attrs, x: Any) -> Any:
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    if math.isclose(alpha, 1 / 6) and beta == 0.5:  # torch's exporter: its own fused kernel
        return F.hardsigmoid(x)
    return torch.clamp(alpha * x + beta, 0.0, 1.0)


@_op("HardSwish")
def _hard_swish(attrs: Attrs, x: Any) -> Any:
    return F.hardswish(x)


@_op("Identity", "Dropout")
def _identity(attrs: Attrs, x: Any, *unused: Any) -> Any:
    return x


@_op("CastLike")
def _cast_like(attrs: Attrs, x: Any, target: Any) -> Any:
    if is_static(x) and is_static(target):
        return x
    return as_tensor(x).to(as_tensor(target).dtype)


@_op("Cast")
def _cast(attrs: Attrs, x: Any) -> Any:
    dtype = _DTYPES[attrs["to"]]
    if is_static(x) and dtype in (torch.int64, torch.int32):
        return x
    return as_tensor(x).to(dtype)


# ---- convolution, normalisation, pooling ---------------------------------------------------
def _padding(attrs: Attrs, rank: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Symmetric padding for torch, and the F.pad amounts when ONNX pads asymmetrically."""
    pads = list(attrs.get("pads", [0] * (2 * rank)))
    begin, end = pads[:rank], pads[rank:]
    if begin == end:
        return tuple(begin), None
    # F.pad lists the last dimension first: (last_begin, last_end, ...)
    extra = tuple(v for i in reversed(range(rank)) for v in (begin[i], end[i]))
    return (0,) * rank, extra


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@_op("Conv")
def _conv(attrs: Attrs, x: Any, w: Any, b: Any = None) -> Any:
    rank = w.dim() - 2
    padding, extra = _padding(attrs, rank)
    if extra is not None:
        x = F.pad(x, extra)
    return _CONV[rank](
        x,
        w,
        b,
        stride=tuple(attrs.get("strides", [1] * rank)),
        padding=padding,
        dilation=tuple(attrs.get("dilations", [1] * rank)),
        groups=attrs.get("group", 1),
    )


@_op("BatchNormalization")
def _batch_norm(attrs: Attrs, x: Any, scale: Any, bias: Any, mean: Any, var: Any) -> Any:
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, attrs.get("epsilon", 1e-5))


@_op("LayerNormalization")
def _layer_norm(attrs: Attrs, x: Any, scale: Any, bias: Any = None) -> Any:
    axis = attrs.get("axis", -1) % x.dim()
    return F.layer_norm(x, tuple(x.shape[axis:]), scale, bias, attrs.get("epsilon", 1e-5))


def _pool_args(
    attrs: Attrs, x: Any, pad_value: float
) -> tuple[Any, int, tuple[int, ...], tuple[int, ...]]:
    """The padded input, rank, kernel and symmetric padding of a pooling node."""
    kernel = tuple(attrs["kernel_shape"])
    rank = len(kernel)
    padding, extra = _padding(attrs, rank)
    if extra is not None:
        x = F.pad(x, extra, value=pad_value)
    return x, rank, kernel, padding


def _ceil_windows(attrs: Attrs, x: Any, y: Any) -> Any:
    """``y`` without the windows ONNX drops in ceil mode: those starting in the end padding.

    torch drops a window only when it starts past the input and its own (begin) padding;
    asymmetric end padding, added by F.pad, counts as input to it.
    """
    if not attrs.get("ceil_mode", 0) or _padding(attrs, y.dim() - 2)[1] is None:
        return y
    rank = y.dim() - 2
    pads = list(attrs["pads"])
    strides = attrs.get("strides", [1] * rank)
    for i in range(rank):
        size, begin, stride = x.shape[2 + i], pads[i], strides[i]
        keep = y.shape[2 + i]
        while keep > 1 and (keep - 1) * stride >= size + begin:
            keep -= 1
        y = y.narrow(2 + i, 0, keep)
    return y


@_op("MaxPool")
def _max_pool(attrs: Attrs, x: Any) -> Any:
    padded, rank, kernel, padding = _pool_args(attrs, x, -math.inf)
    y = _MAX_POOL[rank](
        padded,
        kernel,
        stride=tuple(attrs.get("strides", [1] * rank)),
        padding=padding,
        dilation=tuple(attrs.get("dilations", [1] * rank)),
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
    )
    return _ceil_windows(attrs, x, y)


@_op("AveragePool")
def _avg_pool(attrs: Attrs, x: Any) -> Any:
    padded, rank, kernel, padding = _pool_args(attrs, x, 0.0)
    include_pad = bool(attrs.get("count_include_pad", 0))

    def pool(value: Any) -> Any:
        return _AVG_POOL[rank](
            value,
            kernel,
            stride=tuple(attrs.get("strides", [1] * rank)),
            padding=padding,
            ceil_mode=bool(attrs.get("ceil_mode", 0)),
            count_include_pad=include_pad,
        )

    if padded is x or include_pad:
        return _ceil_windows(attrs, x, pool(padded))
    # asymmetric pads that must not count: F.pad's zeros would, so each window's mean is
    # divided by the share of it that lies on the input (a padded mask of ones)
    mask, *_ = _pool_args(attrs, torch.ones_like(x[:1, :1]), 0.0)
    return _ceil_windows(attrs, x, pool(padded) / pool(mask))


@_op("GlobalAveragePool")
def _global_avg_pool(attrs: Attrs, x: Any) -> Any:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@_op("GlobalMaxPool")
def _global_max_pool(attrs: Attrs, x: Any) -> Any:
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@_op("LRN")
def _lrn(attrs: Attrs, x: Any) -> Any:
    # F.local_response_norm centres an even window one channel later than ONNX does, so
    # the window's sum of squares is taken here: floor((size-1)/2) channels before, the
    # rest after
    size = attrs["size"]
    before = (size - 1) // 2
    squares = (x * x).reshape(x.shape[0], 1, x.shape[1], -1)
    squares = F.pad(squares, (0, 0, before, size - 1 - before))
    total = F.avg_pool2d(squares, (size, 1), stride=1) * size
    scale = attrs.get("bias", 1.0) + attrs.get("alpha", 1e-4) / size * total
    return x / scale.reshape(x.shape) ** attrs.get("beta", 0.75)


@_op("ReduceL2")
def _reduce_l2(attrs: Attrs, x: Any, axes: Any = None) -> Any:
    dims = _axes(attrs, axes)
    if not dims:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        dims = tuple(range(x.dim()))
    return torch.linalg.vector_norm(x, dim=dims, keepdim=bool(attrs.get("keepdims", 1)))


@_op("ReduceMean")
def _reduce_mean(attrs: Attrs, x: Any, axes: Any = None) -> Any:
    dims = _axes(attrs, axes)
    if not dims:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        dims = tuple(range(x.dim()))
    return x.mean(dim=dims, keepdim=bool(attrs.get("keepdims", 1)))


@_op("Resize")
def _resize(attrs: Attrs, x: Any, roi: Any = None, scales: Any = None, sizes: Any = None) -> Any:
    mode = attrs.get("mode", "nearest")
    size = _ints(sizes)[2:] if sizes is not None and not _empty(sizes) else None
    # constant scales were read when the graph was converted (`from_onnx._configuration`)
    factors = None if size else tuple(attrs.get("_scales") or scales.tolist())[2:]
    interpolation = (
        "nearest" if mode == "nearest" else ("linear", "bilinear", "trilinear")[x.dim() - 3]
    )
    return F.interpolate(x, size=size, scale_factor=factors, mode=interpolation)


def _empty(value: Any) -> bool:
    return len(_ints(value)) == 0 if is_static(value) else value.numel() == 0


# ---- matrices ------------------------------------------------------------------------------
@_op("Gemm")
def _gemm(attrs: Attrs, a: Any, b: Any, c: Any = None) -> Any:
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    y = a @ b if alpha == 1.0 else alpha * (a @ b)
    if c is None:
        return y
    return y + (c if beta == 1.0 else beta * c)


@_op("MatMul")
def _matmul(attrs: Attrs, a: Any, b: Any) -> Any:
    return torch.matmul(a, b)


@_op("Einsum")
def _einsum(attrs: Attrs, *xs: Any) -> Any:
    return torch.einsum(attrs["equation"], *xs)


@_op("Softmax")
def _softmax(attrs: Attrs, x: Any) -> Any:
    if attrs["_opset"] >= 13:
        return torch.softmax(x, dim=attrs.get("axis", -1))
    # before opset 13 Softmax flattens to 2-D at `axis` (default 1) and normalises rows
    axis = attrs.get("axis", 1) % x.dim()
    rows = math.prod(x.shape[:axis])
    return torch.softmax(x.reshape(rows, -1), dim=1).reshape(x.shape)


# ---- shapes --------------------------------------------------------------------------------
@_op("ConstantOfShape")
def _constant_of_shape(attrs: Attrs, shape: Any) -> Any:
    # ``value`` (a number) and ``_dtype`` were read from the value tensor at conversion
    # (`from_onnx._configuration`); a constant shape was folded there altogether
    device = shape.device if isinstance(shape, torch.Tensor) else None
    dtype = _DTYPES[attrs["_dtype"]]
    return torch.full(_ints(shape), attrs["value"], dtype=dtype, device=device)


@_op("Range")
def _range(attrs: Attrs, start: Any, limit: Any, delta: Any) -> Any:
    if is_static(start) and is_static(limit) and is_static(delta):
        return tuple(range(_ints(start)[0], _ints(limit)[0], _ints(delta)[0]))
    like = next(v for v in (start, limit, delta) if not is_static(v))
    values = [v.item() if isinstance(v, torch.Tensor) else v for v in (start, limit, delta)]
    dtype = like.dtype
    return torch.arange(*values, dtype=dtype, device=like.device)


@_op("Shape")
def _shape(attrs: Attrs, x: Any) -> Static:
    return tuple(x.shape[attrs.get("start", 0) : attrs.get("end")])


@_op("Reshape")
def _reshape(attrs: Attrs, x: Any, shape: Any) -> Any:
    dims = _ints(shape)
    if is_static(x) and len(dims) <= 1:  # a scalar to a 1-element list, or back
        return _ints(x)[0] if not dims else _ints(x)
    x = as_tensor(x)
    if not attrs.get("allowzero", 0):  # 0 copies the input's dimension
        dims = tuple(x.shape[i] if d == 0 else d for i, d in enumerate(dims))
    return x.reshape(dims)


@_op("Flatten")
def _flatten(attrs: Attrs, x: Any) -> Any:
    axis = attrs.get("axis", 1) % (x.dim() + 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


@_op("Transpose")
def _transpose(attrs: Attrs, x: Any) -> Any:
    return x.permute(*attrs.get("perm", range(x.dim() - 1, -1, -1)))


@_op("Squeeze")
def _squeeze(attrs: Attrs, x: Any, axes: Any = None) -> Any:
    dims = _axes(attrs, axes)
    if is_static(x):  # a one-element shape value becomes a scalar
        return _ints(x)[0] if isinstance(x, tuple) and len(x) == 1 else x
    if dims is None:
        return x.squeeze()
    return x.squeeze(tuple(d % x.dim() for d in dims))


@_op("Unsqueeze")
def _unsqueeze(attrs: Attrs, x: Any, axes: Any = None) -> Any:
    dims = _axes(attrs, axes) or ()
    if isinstance(x, int) and tuple(dims) in ((0,), (-1,)):
        return (x,)
    x = as_tensor(x)
    rank = x.dim() + len(dims)
    for d in sorted(d % rank for d in dims):
        x = x.unsqueeze(d)
    return x


@_op("Concat")
def _concat(attrs: Attrs, *xs: Any) -> Any:
    if all(is_static(x) for x in xs):
        return tuple(v for x in xs for v in _ints(x))
    like = next(x for x in xs if not is_static(x))
    return torch.cat([as_tensor(x, like) for x in xs], dim=attrs["axis"])


@_op("Gather")
def _gather(attrs: Attrs, data: Any, indices: Any) -> Any:
    axis = attrs.get("axis", 0)
    if is_static(data) and is_static(indices):
        values = _ints(data)
        picked = tuple(values[i] for i in _ints(indices))
        return picked[0] if isinstance(indices, int) else picked
    data = as_tensor(data)
    if isinstance(indices, int):
        return data.select(axis, indices)
    index = as_tensor(indices, data)
    axis %= data.dim()
    index = torch.where(index < 0, index + data.shape[axis], index)
    picked = data.index_select(axis, index.reshape(-1))
    return picked.reshape(*data.shape[:axis], *index.shape, *data.shape[axis + 1 :])


@_op("Slice")
def _slice(
    attrs: Attrs,
    data: Any,
    starts: Any = None,
    ends: Any = None,
    axes: Any = None,
    steps: Any = None,
) -> Any:
    # opset < 10 carries starts/ends/axes as attributes
    begin = _ints(starts) if starts is not None else tuple(attrs["starts"])
    stop = _ints(ends) if ends is not None else tuple(attrs["ends"])
    dims = _ints(axes) if axes is not None else tuple(attrs.get("axes", range(len(begin))))
    step = _ints(steps) if steps is not None else (1,) * len(begin)
    if any(s <= 0 for s in step):  # torch slicing has no reverse steps
        raise UnsupportedModelError("the torch backends run Slice only with positive steps")
    if is_static(data):
        return _ints(data)[slice(begin[0], stop[0], step[0])]
    index: list[slice] = [slice(None)] * data.dim()
    for b, e, d, s in zip(begin, stop, dims, step, strict=True):
        index[d] = slice(b, e, s)
    return data[tuple(index)]


@_op("Expand")
def _expand(attrs: Attrs, x: Any, shape: Any) -> Any:
    x = as_tensor(x)
    # ONNX broadcasts both ways: a 1 in ``shape`` keeps the input's dimension
    return x.expand(torch.broadcast_shapes(tuple(x.shape), _ints(shape)))


@_op("Split")
def _split(attrs: Attrs, x: Any, split: Any = None) -> tuple[Any, ...]:
    axis = attrs.get("axis", 0)
    if split is not None and not _empty(split):
        sizes: Any = list(_ints(split))
    elif "split" in attrs:  # opset < 13
        sizes = list(attrs["split"])
    else:  # equal parts; opset 18's num_outputs lets the last one be smaller
        parts = attrs.get("num_outputs", attrs["_outputs"])
        sizes = -(-x.shape[axis] // parts)
    return tuple(torch.split(x, sizes, dim=axis))


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@_op("Pad")
def _pad(attrs: Attrs, x: Any, pads: Any = None, value: Any = None, axes: Any = None) -> Any:
    amounts = _ints(pads) if pads is not None else tuple(attrs["pads"])  # opset < 11: attribute
    dims = _ints(axes) if axes is not None else tuple(range(x.dim()))
    half = len(amounts) // 2
    width = [0] * (2 * x.dim())  # F.pad: the last dimension first, (begin, end) each
    for i, d in enumerate(dims):
        d %= x.dim()
        width[2 * (x.dim() - 1 - d)] = amounts[i]
        width[2 * (x.dim() - 1 - d) + 1] = amounts[half + i]
    mode = _PAD_MODES[attrs.get("mode", "constant")]
    if mode != "constant":  # torch pads the dimensions after batch and channels only
        return F.pad(x, width[: 2 * max(x.dim() - 2, 1)], mode=mode)
    fill = attrs.get("value", 0.0) if value is None else value
    if isinstance(fill, torch.Tensor):
        fill = fill.item()
    return F.pad(x, width, value=fill)


@_op("ScatterND")
def _scatter_nd(attrs: Attrs, data: Any, indices: Any, updates: Any) -> Any:
    data, index = as_tensor(data), as_tensor(indices)
    depth = index.shape[-1]
    index = index.reshape(-1, depth)
    out = data.clone()
    out[tuple(index.t())] = as_tensor(updates).reshape(-1, *data.shape[depth:])
    return out


@_op("GatherND")
def _gather_nd(attrs: Attrs, data: Any, indices: Any) -> Any:
    data, index = as_tensor(data), as_tensor(indices, data)
    return data[tuple(index.unbind(-1))]


def attribute_problem(op_type: str, attrs: Attrs) -> str | None:
    """What about a node's attributes the kernels do not implement, or None when nothing."""
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return f"auto_pad={attrs['auto_pad']}"
    if op_type == "Cast" and attrs.get("to") not in _DTYPES:
        return f"to={attrs.get('to')}"
    if (
        op_type == "ConstantOfShape"
        and "value" in attrs
        and attrs["value"].data_type not in _DTYPES
    ):
        return f"value of type {attrs['value'].data_type}"
    if op_type == "ScatterND" and attrs.get("reduction", "none") != "none":
        return f"reduction={attrs['reduction']}"
    if op_type == "GatherND" and attrs.get("batch_dims", 0):
        return f"batch_dims={attrs['batch_dims']}"
    if op_type == "Pad" and attrs.get("mode", "constant") not in _PAD_MODES:
        return f"mode={attrs['mode']}"
    if op_type == "Resize":
        mode = attrs.get("mode", "nearest")
        transform = attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
        if (mode, transform) not in (("nearest", "asymmetric"), ("linear", "half_pixel")) or (
            mode == "nearest" and nearest != "floor"
        ):
            return f"mode={mode}, coordinate_transformation_mode={transform}"
    return None
