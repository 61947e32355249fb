"""Shape and index arithmetic shared by the CPU and CUDA kernels (plain Python/NumPy).

Everything here runs once per node and input shape, on the host; the kernels get
plain integers and index arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.backends.numba.graph import Node
from workbench.errors import UnsupportedModelError


@dataclass(frozen=True)
class Window:
    """Geometry of a 2-D sliding window (convolution or pooling).

    Attributes:
        kernel: (kh, kw). strides: (sh, sw). dilations: (dh, dw).
        pads: (top, left, bottom, right). out: (oh, ow).
    """

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]
    out: tuple[int, int]


def window(node: Node, spatial: Sequence[int], kernel: Sequence[int], ceil: bool = False) -> Window:
    """The 2-D window of a Conv/MaxPool/AveragePool node over ``spatial`` (H, W).

    1-D ops are seen as 2-D with height 1; 3-D ones are rejected.

    Raises:
        UnsupportedModelError: for 3-D windows.
    """
    rank = len(kernel)
    if rank not in (1, 2):
        raise UnsupportedModelError(f"{node.op_type} {node.name!r}: only 1-D and 2-D supported")
    attrs = node.attrs
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    pads = list(attrs.get("pads", [0] * (2 * rank)))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [math.ceil(n / s) for n, s in zip(spatial, strides, strict=True)]
        total = [
            max((o - 1) * s + e - n, 0)
            for o, s, e, n in zip(out, strides, extent, spatial, strict=True)
        ]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        pads = small + big if auto_pad == "SAME_UPPER" else big + small
    elif auto_pad == "VALID":
        pads = [0] * (2 * rank)
    out = []
    for i in range(rank):
        span = spatial[i] + pads[i] + pads[i + rank] - extent[i]
        size = (-(-span // strides[i]) if ceil else span // strides[i]) + 1
        if ceil and (size - 1) * strides[i] >= spatial[i] + pads[i]:
            size -= 1  # the last window would start in the trailing padding
        out.append(size)
    if rank == 1:
        return Window(
            (1, kernel[0]),
            (1, strides[0]),
            (1, dilations[0]),
            (0, pads[0], 0, pads[1]),
            (1, out[0]),
        )
    return Window(
        (kernel[0], kernel[1]),
        (strides[0], strides[1]),
        (dilations[0], dilations[1]),
        (pads[0], pads[1], pads[2], pads[3]),
        (out[0], out[1]),
    )


def as_4d(x: Any) -> Any:
    """[N, C, L] as [N, C, 1, L]; 4-D unchanged (a view either way)."""
    return x.reshape(x.shape[0], x.shape[1], 1, x.shape[2]) if x.ndim == 3 else x


def reshape_target(shape: Sequence[int], target: np.ndarray, allowzero: int = 0) -> tuple[int, ...]:
    """ONNX Reshape: ``0`` copies the input dimension (unless ``allowzero``), ``-1`` is inferred."""
    dims = [int(d) for d in target]
    if not allowzero:
        dims = [shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = math.prod(shape) // known if known else 0
    return tuple(dims)


def axes_of(node: Node, ins: Sequence[Any], index: int, rank: int) -> list[int] | None:
    """Axes given as an attribute (old opsets) or as input ``index`` (new ones), normalised."""
    axes = node.attrs.get("axes")
    if axes is None and len(ins) > index and ins[index] is not None:
        axes = [int(a) for a in np.asarray(ins[index]).reshape(-1)]
    if axes is None:
        return None
    return [a % rank for a in axes]


def resize_indices(node: Node, ins: Sequence[Any], shape: Sequence[int]) -> list[np.ndarray]:
    """Per-axis source indices of a nearest-neighbour Resize (ONNX opset 11-19 rules).

    Raises:
        UnsupportedModelError: for modes other than ``nearest``, or a keep-aspect policy.
    """
    attrs = node.attrs
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if attrs.get("mode", "nearest") != "nearest" or policy != "stretch":
        raise UnsupportedModelError(
            f"Resize {node.name!r}: only mode='nearest' with keep_aspect_ratio_policy='stretch'"
        )
    rank = len(shape)
    axes = [a % rank for a in attrs.get("axes", range(rank))]
    scales_in = ins[2] if len(ins) > 2 and ins[2] is not None and np.size(ins[2]) else None
    sizes_in = ins[3] if len(ins) > 3 and ins[3] is not None and np.size(ins[3]) else None
    scales, sizes = [1.0] * rank, list(shape)
    for i, axis in enumerate(axes):
        if sizes_in is not None:
            sizes[axis] = int(np.asarray(sizes_in)[i])
            scales[axis] = sizes[axis] / shape[axis]
        else:
            assert scales_in is not None
            scales[axis] = float(np.asarray(scales_in)[i])
            sizes[axis] = math.floor(shape[axis] * scales[axis])
    mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    rounding = attrs.get("nearest_mode", "round_prefer_floor")
    return [
        _nearest(
            np.arange(sizes[a], dtype=np.float64), shape[a], sizes[a], scales[a], mode, rounding
        )
        for a in range(rank)
    ]


def _nearest(
    x: np.ndarray, n_in: int, n_out: int, scale: float, mode: str, rounding: str
) -> np.ndarray:
    if mode == "half_pixel":
        src = (x + 0.5) / scale - 0.5
    elif mode == "pytorch_half_pixel":
        src = (x + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(x)
    elif mode == "align_corners":
        src = x * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(x)
    elif mode == "asymmetric":
        src = x / scale
    elif mode == "tf_half_pixel_for_nn":
        src = (x + 0.5) / scale
    else:
        raise UnsupportedModelError(f"Resize: coordinate_transformation_mode {mode!r}")
    if rounding == "round_prefer_floor":
        index = np.where(src - np.floor(src) == 0.5, np.floor(src), np.round(src))
    elif rounding == "round_prefer_ceil":
        index = np.where(src - np.floor(src) == 0.5, np.ceil(src), np.round(src))
    elif rounding == "floor":
        index = np.floor(src)
    else:
        index = np.ceil(src)
    return np.clip(index, 0, n_in - 1).astype(np.int64)


def softmax_view(node: Node, shape: Sequence[int]) -> tuple[int, int, int]:
    """[outer, n, inner] view of a Softmax input: one axis from opset 13, flattened before."""
    rank = len(shape)
    axis = node.attrs.get("axis", -1 if node.opset >= 13 else 1) % rank
    outer = math.prod(shape[:axis])
    if node.opset >= 13:
        return outer, shape[axis], math.prod(shape[axis + 1 :])
    return outer, math.prod(shape[axis:]), 1


@dataclass(frozen=True)
class LayerNormView:
    """How a LayerNormalization sees its input.

    Attributes:
        tail: the normalised (trailing) axes' sizes. n: their product, a row's length.
        rows: how many rows. stats_shape: the shape of the Mean and InvStdDev outputs.
        wanted: whether each of the three outputs is requested.
    """

    tail: tuple[int, ...]
    n: int
    rows: int
    stats_shape: tuple[int, ...]
    wanted: tuple[bool, bool, bool]


def layer_norm_view(node: Node, shape: Sequence[int]) -> LayerNormView:
    """The [rows, n] view of a LayerNormalization input and its statistics' shape."""
    axis = int(node.attrs.get("axis", -1)) % len(shape)
    tail = tuple(shape[axis:])
    n = math.prod(tail)
    requested = [bool(name) for name in node.outputs] + [False] * (3 - len(node.outputs))
    return LayerNormView(
        tail=tail,
        n=n,
        rows=math.prod(shape) // n if n else 0,
        stats_shape=tuple(shape[:axis]) + (1,) * (len(shape) - axis),
        wanted=(requested[0], requested[1], requested[2]),
    )


def slices(node: Node, ins: Sequence[Any], shape: Sequence[int]) -> tuple[slice, ...]:
    """Python slices for an ONNX Slice node (inputs from opset 10, attributes before)."""
    if node.opset >= 10:
        starts, ends = (np.asarray(ins[i]).tolist() for i in (1, 2))
        axes = np.asarray(ins[3]).tolist() if len(ins) > 3 and ins[3] is not None else None
        steps = np.asarray(ins[4]).tolist() if len(ins) > 4 and ins[4] is not None else None
    else:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes, steps = node.attrs.get("axes"), None
    axes = list(range(len(starts))) if axes is None else [a % len(shape) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    result = [slice(None)] * len(shape)
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        result[axis] = slice(start, end, step)  # Python clamps as ONNX does
    return tuple(result)


def channel_view(shape: Sequence[int], channels_last: bool) -> tuple[int, int, int]:
    """[outer, channels, inner] view of an NCHW (or, ``channels_last``, NHWC) tensor."""
    if channels_last:
        return math.prod(shape[:-1]), shape[-1], 1
    return shape[0], shape[1], math.prod(shape[2:])


#: Pad modes and how a source index outside [0, n) is brought back inside (constant:
#: it is not, the output takes the constant value instead).
PAD_MODES = ("constant", "reflect", "edge", "wrap")


def pad_indices(
    node: Node, ins: Sequence[Any], shape: Sequence[int]
) -> tuple[list[np.ndarray], Any]:
    """Per-axis source indices of a Pad (``-1``: the constant value), and that value.

    Pads come from the ``pads`` attribute before opset 11, from input 1 after, limited
    to input 3's ``axes`` from opset 18; negative pads crop.

    Raises:
        UnsupportedModelError: an unknown mode, or edge/reflect/wrap padding of an empty axis.
    """
    attrs = node.attrs
    mode = attrs.get("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode not in PAD_MODES:
        raise UnsupportedModelError(f"Pad {node.name!r}: mode {mode!r} (have {PAD_MODES})")
    rank = len(shape)
    if node.opset >= 11:
        pads = [int(p) for p in np.asarray(ins[1]).reshape(-1)]
        given = np.asarray(ins[2] if len(ins) > 2 and ins[2] is not None else 0.0)
        value = given.reshape(-1)[0] if given.size else 0  # exact for int64 too
        axes = axes_of(node, ins, 3, rank) or list(range(rank))
    else:
        pads = [int(p) for p in attrs["pads"]]
        value = attrs.get("value", 0.0)
        axes = list(range(rank))
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[i + len(axes)]
    index = []
    for axis, n in enumerate(shape):
        src = np.arange(-begin[axis], n + end[axis], dtype=np.int64)
        if mode == "constant" or (begin[axis] <= 0 and end[axis] <= 0):
            src[(src < 0) | (src >= n)] = -1
        elif n == 0:
            raise UnsupportedModelError(f"Pad {node.name!r}: {mode} padding of an empty axis")
        elif mode == "edge":
            src = np.clip(src, 0, n - 1)
        elif mode == "wrap":
            src = src % n
        else:  # reflect, mirrored about the first and last element, repeatedly
            period = max(2 * (n - 1), 1)
            src = np.abs(src) % period
            src = np.where(src >= n, period - src, src)
        index.append(src)
    return index, value


def clip_bounds(node: Node, ins: Sequence[Any], dtype: Any) -> list[Any]:
    """Clip's [min, max]: inputs 1 and 2 from opset 11 (as given, so a bound computed by
    the graph is read on every run), attributes before (as 0-d arrays of ``dtype``);
    None for a bound that is absent."""
    if node.opset >= 11:
        return [ins[i] if len(ins) > i and ins[i] is not None else None for i in (1, 2)]
    return [
        np.asarray(node.attrs[key], dtype) if key in node.attrs else None for key in ("min", "max")
    ]


def reduce_axes(node: Node, ins: Sequence[Any], rank: int) -> tuple[list[int], tuple[int, ...]]:
    """The sorted axes a Reduce* node reduces (attribute, or input 1 in newer opsets), and
    its output shape for an input of ``rank``-long shape ``ins[0].shape``.

    No axes means every axis, or none with ``noop_with_empty_axes`` (the output is the
    input); ``keepdims`` (default 1) keeps reduced axes as size 1.
    """
    shape = tuple(ins[0].shape)
    axes = axes_of(node, ins, 1, rank)
    if not axes:
        axes = [] if node.attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    axes = sorted(set(axes))
    if not axes:
        return [], shape
    if node.attrs.get("keepdims", 1):
        return axes, tuple(1 if d in axes else n for d, n in enumerate(shape))
    return axes, tuple(n for d, n in enumerate(shape) if d not in axes)


def split_sizes(node: Node, ins: Sequence[Any], shape: Sequence[int]) -> tuple[int, list[int]]:
    """Split's axis and part sizes: given (input 1 from opset 13, the ``split`` attribute
    before), or ``num_outputs`` (opset 18) / one per output, equal with a smaller last."""
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    given = ins[1] if len(ins) > 1 and ins[1] is not None else node.attrs.get("split")
    if given is not None and np.size(given):
        return axis, [int(n) for n in np.asarray(given).reshape(-1)]
    parts = int(node.attrs.get("num_outputs", len(node.outputs)))
    size = -(-shape[axis] // parts)
    return axis, [min(size, shape[axis] - i * size) for i in range(parts)]


def tile_view(shape: Sequence[int], repeats: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Tile as a broadcast copy: the output viewed as [r0, d0, r1, d1, ...] receives the
    input viewed as [1, d0, 1, d1, ...]; returns both views' shapes."""
    reps = [int(r) for r in np.asarray(repeats).reshape(-1)]
    out_view = tuple(n for r, d in zip(reps, shape, strict=True) for n in (r, d))
    return out_view, tuple(n for d in shape for n in (1, d))


def dtype_extremes(dtype: np.dtype) -> tuple[Any, Any]:
    """The lowest and highest values of ``dtype`` (infinities for floats): what an empty
    ReduceMax / ReduceMin gives."""
    if dtype.kind == "f":
        return -np.inf, np.inf
    if dtype.kind == "b":
        return False, True
    info = np.iinfo(dtype)
    return info.min, info.max


def arg_axis(node: Node, shape: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """ArgMax/ArgMin's axis and output shape (``keepdims`` default 1)."""
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    if node.attrs.get("keepdims", 1):
        return axis, tuple(1 if d == axis else n for d, n in enumerate(shape))
    return axis, tuple(n for d, n in enumerate(shape) if d != axis)
