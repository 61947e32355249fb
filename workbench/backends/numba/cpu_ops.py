"""The CPU op table: one kernel per ONNX op type, over NumPy arrays.

A kernel is ``kernel(node, inputs, outs) -> outputs``: ``outs`` holds the planned
output buffers, or None on the planning run (the kernel then allocates). The heavy
ops (Conv, Gemm, MatMul, pooling, normalisation, softmax, Resize, elementwise) run
Numba kernels from `cpu` and `elementwise`; data movement (Transpose, Concat, Gather,
Slice, Cast) is NumPy, which is already a tight C loop; shape arithmetic is
usually folded away before it ever runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from workbench.backends.numba import (
    cpu,
    depthwise,
    elementwise,
    embedding_bag,
    index_ops,
    label_encoder,
    layout,
    max_pool,
    packed_gemm,
    quant_ops,
    shapes,
    softmax_rows,
    strategy,
    tree_ops,
)
from workbench.backends.numba.executor import Kernel, nothing
from workbench.backends.numba.graph import Node
from workbench.errors import UnsupportedModelError

Arrays = list[Any]
GemmFn = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


#: What a binder returns: the work as a zero-argument callable, and the output arrays.
Bound = tuple[Callable[[], Any], Arrays]


def _bindable(binder: Callable[..., Bound]) -> Kernel:
    """A kernel from a binder: called, it binds and runs at once; its ``bind`` gives the
    executor the callable alone, to replay every later run, and its ``plan`` the new
    outputs alone, nothing run (a planning run that needs only their shapes)."""

    def kernel(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
        run, results = binder(node, ins, outs)
        run()
        return results

    kernel.bind = lambda node, ins, outs: binder(node, ins, outs)[0]  # type: ignore[attr-defined]
    kernel.plan = lambda node, ins: binder(node, ins, None)[1]  # type: ignore[attr-defined]
    return kernel


def _out(outs: Arrays | None, shape: tuple[int, ...], dtype: Any, index: int = 0) -> np.ndarray:
    return outs[index] if outs is not None else np.empty(shape, dtype=dtype)


@dataclass(frozen=True)
class BlasGemm:
    """``out = a @ b`` through the BLAS that NumPy links, a big product split over
    ``threads`` cores (see `_product`)."""

    threads: int

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        cpu.gemm_blas(a, b, out)


#: A product is split over the threads when each part keeps at least this many rows
#: (row blocks) or columns (column panels): thinner BLAS calls lose more than a core gives.
SPLIT_MIN_ROWS = 32
SPLIT_MIN_COLUMNS = 128
#: Fewer multiply-adds than this run on one thread: starting the parallel region costs
#: more. Measured on 2 cores: at 2**18 the sample CNN at batch 1 alternated between 0.038
#: and 0.067 ms from one process to the next; at 2**20 it stays at 0.040, and every split
#: that pays (the MLP, CNN and transformer at batch 32, the ResNet at batch 1) still happens.
SPLIT_MIN_WORK = 1 << 20


def _gemm_fn(kind: str, threads: int) -> GemmFn:
    if kind == "blas":
        return BlasGemm(threads)
    # "tiled": `NumbaOptions.gemm` admits no third value (compile validates it)
    return lambda a, b, out: cpu.pick(cpu.gemm_tiled, out.size * a.shape[1])(a, b, out)


def _splits(gemm: GemmFn, work: int) -> int:
    """How many threads a BLAS product of ``work`` multiply-adds is split over (1: none)."""
    if isinstance(gemm, BlasGemm) and work >= SPLIT_MIN_WORK:
        return gemm.threads
    return 1


def _product(gemm: GemmFn, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Callable[[], None]:
    """``out = a @ b`` as a bound call: row blocks on the threads when there are rows
    enough, else one call (see `_panel_product` for the few-rows case)."""
    parts = _splits(gemm, out.size * a.shape[1])
    if parts > 1 and a.shape[0] >= parts * SPLIT_MIN_ROWS:
        return functools.partial(cpu.gemm_split_rows, a, b, out, parts)
    return functools.partial(gemm, a, b, out)


def _panel_product(
    node: Node, gemm: GemmFn, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None, out: np.ndarray
) -> Callable[[], None] | None:
    """``out = act(a @ b + bias)`` with a constant ``b`` cut into one column panel per
    thread, or None where row blocks (or one call) serve better."""
    m, k = a.shape
    n = b.shape[1]
    parts = _splits(gemm, m * k * n)
    if parts == 1 or m >= parts * SPLIT_MIN_ROWS or n < parts * SPLIT_MIN_COLUMNS:
        return None
    width = -(-n // parts)

    def cut() -> np.ndarray:
        padded = np.zeros((k, parts * width), b.dtype)
        padded[:, :n] = b
        return np.ascontiguousarray(padded.reshape(k, parts, width).transpose(1, 0, 2))

    panels = _cached(node, ("panels", parts), 1, cut)
    ys = _workspace(node, "panel_y", (parts, m, width), a.dtype)
    if bias is None:
        bias = _cached(node, ("zeros", n), None, lambda: np.zeros(n, a.dtype))
    act = cpu.ACTIVATIONS[node.activation]
    return functools.partial(cpu.gemm_panels, a, panels, ys, bias, act, out)


def _packed_product(
    node: Node, kind: GemmFn, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None, out: np.ndarray
) -> Callable[[], None] | None:
    """``out = act(a @ b + bias)`` by `packed_gemm.gemm_packed`, ``b`` and ``bias``
    (input 2) packed once; None where either is not a constant or BLAS serves better
    (see `packed_gemm.worthwhile`)."""
    m, k = a.shape
    n = b.shape[1]
    constant = 1 in node.const_inputs and (bias is None or 2 in node.const_inputs)
    fits = a.flags.c_contiguous and packed_gemm.worthwhile(m, k, n, b.dtype)
    if not (isinstance(kind, BlasGemm) and constant and fits):
        return None
    weight = _cached(node, "packed", 1, lambda: packed_gemm.pack(b, bias))
    tasks = _splits(kind, m * k * n)
    tiles = _workspace(node, "packed_tiles", (tasks, packed_gemm.MC, packed_gemm.NR), a.dtype)
    run = packed_gemm.gemm_packed[0 if tasks > 1 else 1]
    act = cpu.ACTIVATIONS[node.activation]
    return functools.partial(run, a, weight.panels, weight.bias, act, tiles, out)


def _cached(node: Node, key: Any, index: int | None, make: Callable[[], Any]) -> Any:
    """A value derived from input ``index``: made once if that input is a constant.

    ``index`` None means the value depends on no input (made once). Activations change
    every run in the same buffer, so anything derived from them is made every time.
    """
    if index is not None and index not in node.const_inputs:
        return make()
    value = node.cache.get(key)
    if value is None:
        value = node.cache[key] = make()
    return value


def _bias_act(node: Node, y2d: np.ndarray, bias: np.ndarray | None) -> Callable[[], Any]:
    """The epilogue ``y2d = act(y2d + bias)`` in place, as a callable (a no-op if none)."""
    act = cpu.ACTIVATIONS[node.activation]
    if bias is None and act == cpu.ACT_NONE:
        return nothing
    if bias is None:
        bias = _cached(
            node, ("zeros", y2d.shape[1]), None, lambda: np.zeros(y2d.shape[1], y2d.dtype)
        )
    return functools.partial(cpu.pick(cpu.bias_act_rows, y2d.size), y2d, bias, act)


def _sequence(*calls: Callable[[], Any]) -> Callable[[], None]:
    """One callable running ``calls`` in order (no-ops dropped)."""
    steps = tuple(call for call in calls if call is not nothing)

    def run() -> None:
        for call in steps:
            call()

    return run


# ---- linear algebra -----------------------------------------------------------------
def conv(
    node: Node, ins: Arrays, outs: Arrays | None, gemm: GemmFn, strategy_mode: str = "rules"
) -> Bound:
    """Conv (1-D/2-D, groups, strides, pads, dilations) with fused bias and activation;
    ``strategy_mode`` says how a dense NHWC one picks its kernel (`strategy`)."""
    x, w = ins[0], ins[1]
    if node.channels_last:
        return _conv_nhwc(node, ins, outs, gemm, strategy_mode)
    if w.ndim not in (3, 4):
        raise UnsupportedModelError(f"Conv {node.name!r}: only 1-D and 2-D convolutions")
    x4, w4 = shapes.as_4d(x), shapes.as_4d(w)
    geo = shapes.window(node, x.shape[2:], w.shape[2:])
    n, c = x4.shape[:2]
    m, cg, kh, kw = w4.shape
    group = int(node.attrs.get("group", 1))
    oh, ow = geo.out
    out_shape = (n, m, *geo.out) if x.ndim == 4 else (n, m, ow)
    out = _out(outs, out_shape, x.dtype)
    out4 = shapes.as_4d(out)
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else None
    if bias is None:
        bias = _cached(node, ("zeros", m), None, lambda: np.zeros(m, x.dtype))
    act = cpu.ACTIVATIONS[node.activation]
    (sh, sw), geometry = geo.strides, conv_geometry(geo)
    if group != 1:
        direct = cpu.pick(cpu.conv_direct, out.size * cg * kh * kw)
        return functools.partial(direct, x4, w4, bias, geometry, group, act, out4), [out]
    k, p = c * kh * kw, oh * ow
    w2 = _cached(node, "w2", 1, lambda: np.ascontiguousarray(w4.reshape(m, k)))
    pointwise = kh == kw == sh == sw == 1 and not any(geo.pads)
    unfold: Callable[[], Any] = nothing
    if pointwise and n == 1:
        col = x4.reshape(c, p)
    else:
        col = _workspace(node, "col", (k, n * p), x.dtype)
        unfold = functools.partial(cpu.pick(cpu.im2col, col.size), x4, geometry, col)
    # batch 1: the GEMM writes straight into the output and the epilogue runs in place
    y = out4.reshape(m, p) if n == 1 else _workspace(node, "y", (m, n * p), x.dtype)
    epilogue = cpu.pick(cpu.conv_epilogue, out.size)
    product = _sequence(unfold, _product(gemm, w2, col, y))
    return _sequence(
        _blas_scope(gemm, product, m * k * n * p),
        functools.partial(epilogue, y, bias, act, out4.reshape(n, m, p)),
    ), [out]


#: An NHWC im2col matrix (or Winograd transform) larger than this is built and
#: multiplied a block of output rows at a time: written and read back while still in
#: the core's cache, and the workspace stays small. Measured on the sample ResNet at
#: batch 32 (2 cores, 4 MB L2 each), im2col only: 45 ms with 2 MB blocks, 57 ms with
#: 8 MB, 85 ms unblocked; 1-4 MB are within noise.
IM2COL_BLOCK_BYTES = 2 << 20


def _row_blocks(rows: int, row_bytes: int, block_bytes: int = 0) -> list[tuple[int, int]]:
    """``(first, last)`` blocks of ``rows`` with at most ``block_bytes`` each (default
    `IM2COL_BLOCK_BYTES`; at least one row); only the last may be shorter."""
    block_bytes = block_bytes or IM2COL_BLOCK_BYTES
    per_block = max(1, min(rows, block_bytes // max(row_bytes, 1)))
    return [(first, min(first + per_block, rows)) for first in range(0, rows, per_block)]


def conv_geometry(geo: shapes.Window) -> tuple[int, ...]:
    """(kh, kw, sh, sw, ph, pw, dh, dw, oh, ow): what the im2col and direct convolution
    kernels take, leading pads only."""
    return (*geo.kernel, *geo.strides, *geo.pads[:2], *geo.dilations, *geo.out)


def _conv_nhwc(node: Node, ins: Arrays, outs: Arrays | None, gemm: GemmFn, mode: str) -> Bound:
    """A 2-D Conv on NHWC data (see `layout`): grouped and depthwise ones, and a network's
    first one on its NCHW input, by their direct kernels (`depthwise`); a dense one by
    the strategy `strategy.choose` picks among `_dense_nhwc_candidates` (``mode``
    ``"measure"``), or by the fixed rules (`_rule_strategy`)."""
    x, w = ins[0], ins[1]
    # an image's first convolution reads its few channels NCHW (`layout`), the rest NHWC
    nchw_input = not node.inputs[0].endswith(layout.NHWC_SUFFIX)
    n, h, wid, c = (x.shape[0], *x.shape[2:], x.shape[1]) if nchw_input else x.shape
    m, _, kh, kw = w.shape
    geo = shapes.window(node, (h, wid), (kh, kw))
    oh, ow = geo.out
    out = _out(outs, (n, oh, ow, m), x.dtype)
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else None
    if bias is None:
        bias = _cached(node, ("zeros", m), None, lambda: np.zeros(m, x.dtype))
    group = int(node.attrs.get("group", 1))
    if 1 < group < m and _pointwise(geo) and not nchw_input:
        return _grouped_pointwise(node, x, w, bias, group, gemm, out), [out]

    def rearranged(key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        return _cached(node, key, 1, make)  # type: ignore[no-any-return]

    def direct(vector: bool = False) -> Callable[[], None]:
        geometry = conv_geometry(geo)
        return depthwise.bind(
            node, x, w, bias, geometry, out, rearranged, nchw_input, vector=vector
        )

    if group != 1:
        return direct(), [out]
    if nchw_input:
        candidates = _nchw_input_candidates(node, x, w, bias, geo, gemm, out, direct)
    else:
        candidates = _dense_nhwc_candidates(node, x, w, bias, geo, gemm, out)
    decided = node.cache.get(("conv_strategy", x.shape))
    if decided is None or decided.strategy not in candidates:
        rules = "im2col" if nchw_input and "im2col" in candidates else _rule_strategy(c, m, geo)
        if mode == "rules":
            decided = strategy.Decision(rules, {}, "rules")
        else:  # the key: what the candidates' speed depends on (the machine's part added)
            facts = {
                "x": x.shape, "w": w.shape, "geometry": conv_geometry(geo),
                "dtype": x.dtype.str, "activation": node.activation,
                "gemm": type(gemm).__name__, "threads": numba.get_num_threads(),
                "split": getattr(gemm, "threads", 1),
                # a kernel added in a later version is measured, not passed over
                "candidates": sorted(candidates),
            }  # fmt: skip
            if nchw_input:
                facts["input"] = "nchw"
            decided = _measure(node, strategy.layer_key(facts), candidates, rules)
        node.cache[("conv_strategy", x.shape)] = decided
    return candidates[decided.strategy](), [out]


def _rule_strategy(c: int, m: int, geo: shapes.Window) -> str:
    """The fixed rules: Winograd for 3x3 stride 1 with enough channels, a plain GEMM for
    an unpadded 1x1, else im2col in `IM2COL_BLOCK_BYTES` blocks."""
    if _winograd_fits(geo) and min(c, m) >= WINOGRAD_MIN_CHANNELS:
        return "winograd"
    return "gemm" if _pointwise(geo) else "im2col"


def _winograd_fits(geo: shapes.Window) -> bool:
    return geo.kernel == (3, 3) and geo.strides == (1, 1) and geo.dilations == (1, 1)


def _pointwise(geo: shapes.Window) -> bool:
    return geo.kernel == (1, 1) and geo.strides == (1, 1) and not any(geo.pads)


#: A dense convolution of at most this many multiply-adds also tries the direct loop
#: (`depthwise.grouped_nhwc`, one group): above it the loop only loses, and slowly.
DIRECT_MAX_WORK = 1 << 23


def _dense_nhwc_candidates(
    node: Node, x: np.ndarray, w: np.ndarray, bias: np.ndarray, geo: shapes.Window,
    gemm: GemmFn, out: np.ndarray,
) -> dict[str, Callable[[], Callable[[], None]]]:  # fmt: skip
    """The ways a dense NHWC Conv can run: name -> builder of its bound call.

    ``"gemm"`` (an unpadded 1x1 is one GEMM over the pixels), ``"im2col"`` (blocks of
    `IM2COL_BLOCK_BYTES`) and ``"im2col:small"`` (a quarter of that, when the matrix
    is larger), ``"winograd"`` (3x3 stride 1), ``"packed"`` (an implicit GEMM on the
    packed weight, `_conv_implicit`), ``"direct"`` (small convolutions).
    """
    n, _, _, c = x.shape
    m, _, kh, kw = w.shape
    oh, ow = geo.out
    k = kh * kw * c
    y = out.reshape(n * oh * ow, m)
    found: dict[str, Callable[[], Callable[[], None]]] = {}
    if _pointwise(geo):
        col = x.reshape(-1, c)
        found["gemm"] = lambda: _blas_scope(
            gemm, _conv_product(node, gemm, col, _w2t(node, w), bias, y), y.size * c
        )
    else:
        found["im2col"] = lambda: _conv_im2col(node, x, w, bias, geo, gemm, out, 0)
        if n * oh * ow * k * x.dtype.itemsize > IM2COL_BLOCK_BYTES // 4:
            small = IM2COL_BLOCK_BYTES // 4
            found["im2col:small"] = lambda: _conv_im2col(node, x, w, bias, geo, gemm, out, small)
    if _winograd_fits(geo):
        (pt, pl) = geo.pads[:2]
        found["winograd"] = lambda: _conv_winograd(node, x, w, geo.out, (pt, pl), bias, gemm, out)
    if _implicit_fits(node, x, m, gemm):
        found["packed"] = lambda: _conv_implicit(node, x, w, bias, geo, gemm, out)
    if out.size * k <= DIRECT_MAX_WORK:

        def direct() -> Callable[[], None]:
            spread = _cached(
                node, "grouped_w", 1, lambda: np.ascontiguousarray(w.transpose(2, 3, 1, 0))
            )
            kernel = cpu.pick(depthwise.grouped_nhwc, out.size * k)
            act = cpu.ACTIVATIONS[node.activation]
            return functools.partial(kernel, x, spread, bias, conv_geometry(geo), 1, act, out)

        found["direct"] = direct
    return found


def _implicit_fits(node: Node, x: np.ndarray, m: int, gemm: GemmFn) -> bool:
    """Whether `_conv_implicit` may run: float32 on AVX-512, a C-contiguous input (the
    kernel reads it flat), constant weight and bias (packed once), at least one vector
    of output channels (a panel is `packed_gemm.VECTORS` wide), and BLAS chosen (``gemm="tiled"``
    keeps the convolutions on the portable kernels, as for the packed GEMM)."""
    bias_input = len(node.inputs) > 2 and bool(node.inputs[2])
    constant = 1 in node.const_inputs and (not bias_input or 2 in node.const_inputs)
    return (
        packed_gemm.AVAILABLE and isinstance(gemm, BlasGemm) and constant
        and x.dtype == np.float32 and x.flags.c_contiguous and m >= packed_gemm.LANES
    )  # fmt: skip


def _conv_implicit(
    node: Node, x: np.ndarray, w: np.ndarray, bias: np.ndarray, geo: shapes.Window,
    gemm: GemmFn, out: np.ndarray,
) -> Callable[[], None]:  # fmt: skip
    """A dense NHWC Conv as `packed_gemm.conv_packed`: the weight packed once, each
    micro-tile of output pixels multiplied straight from the input (copied into a
    zero-bordered workspace first where the convolution pads), the pixels shared over
    the threads."""
    n, _, _, c = x.shape
    m = w.shape[0]
    oh, ow = geo.out
    k = c * geo.kernel[0] * geo.kernel[1]
    weight = _cached(node, "packed", 1, lambda: packed_gemm.pack(w.transpose(2, 3, 1, 0), bias))
    geometry = conv_geometry(geo)
    plan = packed_gemm.implicit_plan(x.shape, geometry)
    tasks = _splits(gemm, n * oh * ow * k * m)
    tiles = _workspace(node, "packed_tiles", (tasks, packed_gemm.MR * packed_gemm.NR), x.dtype)
    # zeroed when made: each run rewrites only the interior
    padded = plan.padded
    src = x if padded is None else _workspace(node, "packed_padded", padded, x.dtype, np.zeros)
    run = functools.partial(
        packed_gemm.conv_packed[0 if tasks > 1 else 1], src, geometry, plan.segments,
        plan.length, weight.panels, weight.bias, cpu.ACTIVATIONS[node.activation], tiles,
        out.reshape(n * oh * ow, m),
    )  # fmt: skip
    if src is x:
        return run
    pad = functools.partial(cpu.pick(cpu.pad_interior, x.size), x, plan.top, plan.left, src)
    return _sequence(pad, run)


#: The im2col blocks of a first convolution on an NCHW image (`cpu.conv_nchw_gemm`),
#: per thread: measured on 2 cores, 64 KB blocks won on mobilenet_v3_small's 3x3 (0.38
#: against 0.49 ms with 1 MB) and 1 MB on resnet18's 7x7 (4.4 against 4.9 ms).
NCHW_BLOCK_BYTES = {"im2col": 1 << 20, "im2col:small": 1 << 16}


def _nchw_input_candidates(
    node: Node, x: np.ndarray, w: np.ndarray, bias: np.ndarray, geo: shapes.Window,
    gemm: GemmFn, out: np.ndarray, direct: Callable[..., Callable[[], None]],
) -> dict[str, Callable[[], Callable[[], None]]]:  # fmt: skip
    """A network's first convolution, on its NCHW image: the direct loop (``direct()``,
    `depthwise.conv_nchw_to_nhwc`) and, with BLAS (``gemm="tiled"`` keeps the direct
    loop alone), im2col + BLAS in two block sizes (`cpu.conv_nchw_gemm`) and, for float32
    with 16 or more output channels on AVX-512, the direct loop with its sums in vector
    registers (``direct(vector=True)``, `depthwise.conv_nchw_vector`)."""
    found: dict[str, Callable[[], Callable[[], None]]] = {"direct": direct}
    if not isinstance(gemm, BlasGemm):
        return found
    n, c = x.shape[:2]
    m, _, kh, kw = w.shape
    # the vector loop reads the image as one flat array
    contiguous = x.flags.c_contiguous and x.dtype == np.float32
    if packed_gemm.AVAILABLE and m >= packed_gemm.LANES and contiguous:
        found["vector"] = functools.partial(direct, vector=True)
    oh, ow = geo.out
    k = c * kh * kw
    work = n * oh * ow * k * m
    parts = _splits(gemm, work) if n * oh >= 2 * gemm.threads else 1
    act = cpu.ACTIVATIONS[node.activation]
    kernel = cpu.conv_nchw_gemm[0 if parts > 1 else 1]

    def build(block_bytes: int) -> Callable[[], None]:
        w2 = _cached(node, "nchw_w2", 1, lambda: np.ascontiguousarray(w.reshape(m, k).T))
        rows = max(1, min(-(-n * oh // parts), block_bytes // (k * ow * x.dtype.itemsize)))
        cols = _workspace(node, "nchw_cols", (parts, k * rows * ow), x.dtype)
        y = out.reshape(n * oh * ow, m)
        run = functools.partial(kernel, x, conv_geometry(geo), w2, bias, act, cols, y, rows)
        return cpu.single_threaded_blas(run) if parts > 1 else _one_blas_thread(run, work)

    found.update({name: functools.partial(build, size) for name, size in NCHW_BLOCK_BYTES.items()})
    return found


def _grouped_pointwise(
    node: Node, x: np.ndarray, w: np.ndarray, bias: np.ndarray, group: int, gemm: GemmFn,
    out: np.ndarray,
) -> Callable[[], None]:  # fmt: skip
    """A grouped 1x1 Conv on NHWC data (ShuffleNet's) as one GEMM per group on blocks of
    pixels (`cpu.gemm_groups`: the group's channels copied out contiguous, multiplied,
    written to its output channels with bias and activation while in cache), the
    pixels shared over the threads. The direct loop (`depthwise.grouped_nhwc`) spent
    0.5 ms on each of the zoo ShuffleNet's 4-group layers at batch 1 (about 30 GFLOP/s,
    a loaded 2-core VM), 80% of the model's time; one BLAS call per group over all the
    pixels, with the copies and the epilogue as passes of their own, 0.34 ms on its
    28x28 maps of 136 channels at batch 1, where this takes 0.27 (one thread, in the
    model, alternated; loaded). With a ``shuffle`` attribute (`conv_fusion`) the
    channels are written in their shuffled order: the dense product's columns reordered
    once, the GEMMs' blocks through a transposed view of the output."""
    n, h, wid, c = x.shape
    m = w.shape[0]
    per_in, per_out, rows = c // group, m // group, n * h * wid
    col, y = x.reshape(rows, c), out.reshape(rows, m)
    shuffled = "shuffle" in node.attrs  # channel j of group g goes to j * group + g
    # the portable GEMM (``gemm="tiled"``) takes the dense product: no BLAS per block
    if per_in < GROUPED_DENSE_MAX_CHANNELS or not isinstance(gemm, BlasGemm):
        dense = _block_diagonal(node, w, group)
        if shuffled:  # the product's columns in their shuffled order
            order = np.arange(m).reshape(group, per_out).T.reshape(-1)
            dense = _cached(node, "shuffled_w", 1, lambda: np.ascontiguousarray(dense[:, order]))
            bias = _cached(node, "shuffled_b", 2, lambda: np.ascontiguousarray(bias[order]))
        return _blas_scope(gemm, _conv_product(node, gemm, col, dense, bias, y), y.size * c)
    taps = _cached(node, "group_taps", 1, lambda: _group_taps(w, group))
    tasks = _splits(gemm, rows * per_in * m)
    block = min(GROUP_BLOCK_ROWS, -(-rows // tasks))
    ins = _workspace(node, "group_in", (tasks, block, per_in), x.dtype)
    sums = _workspace(node, "group_sums", (tasks, block, per_out), x.dtype)
    act = cpu.ACTIVATIONS[node.activation]
    by_group = (
        out.reshape(rows, per_out, group).transpose(0, 2, 1)
        if shuffled
        else out.reshape(rows, group, per_out)
    )
    run = functools.partial(
        cpu.gemm_groups[0 if tasks > 1 else 1], col, taps, bias, act, ins, sums, by_group
    )
    if tasks > 1:  # one BLAS call per task at a time (see `cpu.gemm_split_rows`)
        return cpu.single_threaded_blas(run)
    return _one_blas_thread(run, block * per_in * per_out)


#: Pixels per block of `cpu.gemm_groups`: a block's copied channels and sums stay in L2.
GROUP_BLOCK_ROWS = 256


def _group_taps(w: np.ndarray, group: int) -> np.ndarray:
    """A grouped 1x1 weight [M, C/group, 1, 1] as the groups' GEMM operands [G, C/G, M/G]."""
    m, per_in = w.shape[:2]
    return np.ascontiguousarray(w.reshape(group, m // group, per_in).transpose(0, 2, 1))


#: A grouped 1x1 convolution with fewer input channels per group than this runs as one
#: dense GEMM with a block-diagonal weight (zeros between the groups): the zoo
#: ShuffleNet's first, 24 -> 112 in 4 groups of 6, took 0.20 ms as four GEMMs with their
#: copies and 0.10 ms as one GEMM four times the work (56x56, one core). With 60 or more
#: per group the copies cost less than the zeros (784 x 240 -> 60: 0.11 against 0.14).
GROUPED_DENSE_MAX_CHANNELS = 16


def _block_diagonal(node: Node, w: np.ndarray, group: int) -> np.ndarray:
    """A grouped 1x1 weight [M, C/group, 1, 1] as the dense GEMM operand [C, M]."""

    def make() -> np.ndarray:
        m, per_in = w.shape[:2]
        per_out = m // group
        dense = np.zeros((per_in * group, m), w.dtype)
        for g in range(group):
            block = w[g * per_out : (g + 1) * per_out, :, 0, 0].T
            dense[g * per_in : (g + 1) * per_in, g * per_out : (g + 1) * per_out] = block
        return dense

    return _cached(node, "block_diagonal_w", 1, make)  # type: ignore[no-any-return]


def _w2t(node: Node, w: np.ndarray) -> np.ndarray:
    """The weight as the ``[kh*kw*C, M]`` GEMM operand: taps then channels, matching
    the im2col columns."""
    m = w.shape[0]
    return _cached(  # type: ignore[no-any-return]
        node, "w2t", 1, lambda: np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, m))
    )


def _conv_im2col(
    node: Node, x: np.ndarray, w: np.ndarray, bias: np.ndarray, geo: shapes.Window,
    gemm: GemmFn, out: np.ndarray, block_bytes: int,
) -> Callable[[], None]:  # fmt: skip
    """im2col + GEMM, a block of whole output rows at a time (``block_bytes``, see
    `_row_blocks`) so that the im2col is still in cache when the GEMM reads it; the
    ``[N*OH*OW, M]`` result is the NHWC output, bias and activation run in place."""
    n, _, _, c = x.shape
    m, _, kh, kw = w.shape
    oh, ow = geo.out
    k = kh * kw * c
    w2t, y, geometry = _w2t(node, w), out.reshape(n * oh * ow, m), conv_geometry(geo)
    blocks = _row_blocks(n * oh, ow * k * x.dtype.itemsize, block_bytes)
    col = _workspace(node, "col", ((blocks[0][1] - blocks[0][0]) * ow, k), x.dtype)
    steps: list[Callable[[], Any]] = []
    for first, last in blocks:
        block_col, block_y = col[: (last - first) * ow], y[first * ow : last * ow]
        steps += [
            # serial: a parallel region beside BLAS's threads fights them for the cores
            functools.partial(cpu.im2col_nhwc[1], x, geometry, first, last, block_col),
            _conv_product(node, gemm, block_col, w2t, bias, block_y),
        ]
    gemm_work = (blocks[0][1] - blocks[0][0]) * ow * k * m
    return _blas_scope(gemm, _sequence(*steps), gemm_work)


def _conv_product(
    node: Node, gemm: GemmFn, col: np.ndarray, w2t: np.ndarray, bias: np.ndarray, y: np.ndarray
) -> Callable[[], None]:
    """``y = act(col @ w2t + bias)`` for a convolution. With few rows (a 7x7 map at batch
    1: resnet18's layer4, mobilenet's last 1x1 convolutions, which ran on one core): by
    the packed GEMM where it beats BLAS (`_packed_product`), else in column panels, one
    per thread (`_panel_product`); with rows enough, row blocks (`_product`) and the
    epilogue."""
    packed = _packed_product(node, gemm, col, w2t, bias if 2 in node.const_inputs else None, y)
    if packed is not None:
        return packed
    panels = _panel_product(node, gemm, col, w2t, bias, y) if 1 in node.const_inputs else None
    if panels is not None:
        return panels
    return _sequence(_product(gemm, col, w2t, y), _bias_act(node, y, bias))


def _measure(
    node: Node, key: str, candidates: dict[str, Callable[[], Callable[[], None]]], rules: str
) -> strategy.Decision:
    """`strategy.choose` with each candidate's packed weights and workspaces kept apart:
    only the winner's stay in ``node.cache`` (they count in the session's memory)."""
    base = {k: v for k, v in node.cache.items() if k != "executed_flops"}
    built: dict[str, dict[Any, Any]] = {}

    def isolated(name: str) -> Callable[[], Callable[[], None]]:
        def build() -> Callable[[], None]:
            node.cache = dict(base)
            run = candidates[name]()
            built[name] = node.cache
            return run

        return build

    decision = strategy.choose(key, {name: isolated(name) for name in candidates}, rules)
    node.cache = built.get(decision.strategy, base)
    return decision


def _blas_scope(gemm: GemmFn, run: Callable[[], None], work: int) -> Callable[[], None]:
    """``run`` on single-threaded BLAS when it makes a GEMM call that OpenBLAS would
    thread (``work``: the largest call's multiply-adds); see `cpu.single_threaded_blas`.
    Products split over threads (`_product`) run one BLAS call per thread in there."""
    return _one_blas_thread(run, work) if isinstance(gemm, BlasGemm) else run


def _one_blas_thread(run: Callable[[], None], work: int) -> Callable[[], None]:
    """``run`` with OpenBLAS on one thread when a call of ``work`` multiply-adds would
    otherwise be threaded by OpenBLAS itself."""
    return cpu.single_threaded_blas(run) if work >= cpu.OPENBLAS_THREADED_MIN_WORK else run


#: Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions with at least this many input and
#: output channels; below it the 16 GEMMs are too thin to beat im2col's single one.
WINOGRAD_MIN_CHANNELS = 16


def _conv_winograd(
    node: Node,
    x: np.ndarray,
    w: np.ndarray,
    out_hw: tuple[int, int],
    pads: tuple[int, int],
    bias: np.ndarray,
    gemm: GemmFn,
    out: np.ndarray,
) -> Callable[[], None]:
    """A 3x3, stride-1 NHWC Conv as Winograd F(2x2, 3x3) (see `cpu._winograd_input`).

    The input is copied into a zero-bordered buffer (zeroed when made, its border never
    written), and the tiles are processed in blocks of tile rows whose transforms stay in cache.
    Measured against im2col + GEMM on 2 cores: the sample CNN's two 3x3 convolutions at
    batch 32 took 0.38 and 0.15 ms instead of about 0.49 and 0.25 (the 16 GEMMs are
    thin, so BLAS runs them at 160 GFLOP/s against 255 for the one im2col GEMM); the
    whole CNN 0.65-0.74 ms instead of 0.88 at batch 32, 0.03 instead of 0.049 at batch 1.
    """
    n, _, _, c = x.shape
    m = w.shape[0]
    (oh, ow), (pt, pl) = out_hw, pads
    tiles_h, tiles_w = (oh + 1) // 2, (ow + 1) // 2

    def transform_weights() -> np.ndarray:
        u = np.empty((16, c, m), w.dtype)
        cpu.winograd_weights(np.ascontiguousarray(w), u)
        return u

    u = _cached(node, "winograd_u", 1, transform_weights)
    # the work really done: 16 tile GEMMs, 4/9 of the nominal 3x3 multiply-adds (profiling
    # reports it as executed_flops next to the model's nominal flops)
    node.cache["executed_flops"] = 2.0 * 16 * n * tiles_h * tiles_w * c * m
    # zeroed when made (lazily, by the OS), as the kernels write the interior only: the
    # plan, which binds this twice, touches none of it
    shape = (n, 2 * tiles_h + 2, 2 * tiles_w + 2, c)
    padded = _workspace(node, "padded", shape, x.dtype, np.zeros)
    act = cpu.ACTIVATIONS[node.activation]
    batched: Callable[..., None] = functools.partial(_each, gemm)
    if isinstance(gemm, BlasGemm):
        split = _splits(gemm, 16 * n * tiles_h * tiles_w * c * m) > 1
        batched = cpu.bmm_rows_split if split else cpu.bmm_rows
    steps: list[Callable[[], Any]] = [functools.partial(cpu.pad_interior[1], x, pt, pl, padded)]
    blocks = _row_blocks(n * tiles_h, 16 * tiles_w * max(c, m) * x.dtype.itemsize)
    for first, last in blocks:
        tiles = (last - first) * tiles_w
        # a spare row per plane: planes a power-of-two apart share cache sets, and the
        # transforms touch all 16 at once (measured 10x slower on the sample CNN); the
        # kernels get the whole (contiguous) arrays, so their loops vectorise
        v = _workspace(node, "winograd_v", (16, tiles + 1, c), x.dtype)
        products = _workspace(node, "winograd_m", (16, tiles + 1, m), x.dtype)
        steps += [
            functools.partial(cpu.winograd_input[1], padded, tiles_w, first, last, v),
            functools.partial(batched, v, u, products, tiles),
            functools.partial(
                cpu.winograd_output[1],
                products,
                bias,
                act,
                tiles_h,
                tiles_w,
                first,
                last,
                out,
            ),
        ]
    gemm_work = (blocks[0][1] - blocks[0][0]) * tiles_w * c * m
    return _blas_scope(gemm, _sequence(*steps), gemm_work)


def _each(gemm: GemmFn, a: np.ndarray, b: np.ndarray, out: np.ndarray, rows: int) -> None:
    """`cpu.bmm_rows` as one ``gemm`` per item (for ``gemm="tiled"``)."""
    for i in range(a.shape[0]):
        gemm(a[i, :rows], b[i], out[i, :rows])


def _workspace(
    node: Node, key: Any, shape: tuple[int, ...], dtype: Any, make: Callable[..., Any] = np.empty
) -> np.ndarray:
    buffer = node.cache.get((key, shape))
    if buffer is None:
        buffer = node.cache[(key, shape)] = make(shape, dtype=dtype)
    return buffer  # type: ignore[no-any-return]


def gemm_op(node: Node, ins: Arrays, outs: Arrays | None, gemm: GemmFn) -> Bound:
    """Gemm: ``act(alpha * A' @ B' + beta * C)``; a constant B is transposed once."""
    a, b = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    copies: list[Callable[[], Any]] = []
    if node.attrs.get("transA", 0):
        a_t = _workspace(node, "aT", a.shape[::-1], a.dtype)
        copies.append(functools.partial(np.copyto, a_t, a.T))
        a = a_t
    if node.attrs.get("transB", 0) and 1 in node.const_inputs:
        b = _cached(node, "bT", 1, lambda: np.ascontiguousarray(ins[1].T))
    elif node.attrs.get("transB", 0):  # an activation: transposed on every run
        b_t = _workspace(node, "bT", b.shape[::-1], b.dtype)
        copies.append(functools.partial(np.copyto, b_t, b.T))
        b = b_t
    out = _out(outs, (a.shape[0], b.shape[1]), a.dtype)
    work = out.size * a.shape[1]
    simple_bias = c is None or beta == 0 or (c.size == out.shape[1] and c.ndim <= 2 and beta == 1)
    if alpha == 1 and simple_bias:
        bias = None if c is None or beta == 0 else c.reshape(-1)
        packed = _packed_product(node, gemm, a, b, bias, out)
        if packed is not None:
            node.cache.pop("bT", None)  # packed from it: the panels are the weight's copy
            return _sequence(*copies, packed), [out]
        panels = _panel_product(node, gemm, a, b, bias, out) if 1 in node.const_inputs else None
        if panels is not None:
            return _sequence(*copies, _blas_scope(gemm, panels, work)), [out]
        return _sequence(
            *copies,
            _blas_scope(gemm, _product(gemm, a, b, out), work),
            _bias_act(node, out, bias),
        ), [out]
    y = _workspace(node, "y", out.shape, a.dtype)
    c2 = np.zeros((1, 1), a.dtype) if c is None else c
    c2 = np.broadcast_to(c2.reshape((1,) * (2 - c2.ndim) + c2.shape), out.shape)
    act = cpu.ACTIVATIONS[node.activation]
    epilogue = cpu.pick(cpu.gemm_epilogue, out.size)
    return _sequence(
        *copies,
        _blas_scope(gemm, _product(gemm, a, b, y), work),
        functools.partial(epilogue, y, c2, alpha, beta, act, out),
    ), [out]


def matmul(node: Node, ins: Arrays, outs: Arrays | None, gemm: GemmFn) -> Bound:
    """MatMul with NumPy broadcasting of batch dims, plus a fused bias and activation."""
    a, b = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    if a.ndim < 2 or b.ndim < 2:  # vector operands: rare, NumPy's matmul rules apply
        result = np.matmul(a, b) if bias is None else np.matmul(a, b) + bias
        out = _out(outs, result.shape, a.dtype)

        def vector() -> None:
            value = np.matmul(a, b) if bias is None else np.matmul(a, b) + bias
            np.copyto(out, value)

        return vector, [out]
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    out = _out(outs, (*batch, m, n), a.dtype)
    epilogue = _bias_act(node, out.reshape(-1, n), None if bias is None else bias.reshape(-1))
    if b.ndim == 2:
        # one GEMM over all rows of a: [batch*M, K] @ [K, N]
        rows, copy_a = _operand(node, "a", a, a.shape, (-1, k))
        flat_bias = None if bias is None else bias.reshape(-1)
        packed = _packed_product(node, gemm, rows, b, flat_bias, out.reshape(-1, n))
        if packed is not None:
            return _sequence(copy_a, packed), [out]
        product = _blas_scope(gemm, _product(gemm, rows, b, out.reshape(-1, n)), out.size * k)
        return _sequence(copy_a, product, epilogue), [out]
    count = math.prod(batch)
    a3, copy_a = _operand(node, "a", a, (*batch, m, k), (count, m, k))
    b3, copy_b = _operand(node, "b", b, (*batch, k, n), (count, k, n))
    out3 = out.reshape(count, m, n)
    product = functools.partial(cpu.bmm, a3, b3, out3)
    if _splits(gemm, count * m * k * n) > 1:
        product = functools.partial(cpu.bmm_rows_split, a3, b3, out3, m)
    # cpu.bmm calls BLAS itself whichever GEMM the session was given
    run = _one_blas_thread(_sequence(copy_a, copy_b, product), m * k * n)
    return _sequence(run, epilogue), [out]


def _operand(
    node: Node, key: str, value: np.ndarray, full: tuple[int, ...], view: tuple[int, ...]
) -> tuple[np.ndarray, Callable[[], Any]]:
    """``value`` broadcast to ``full`` and seen as ``view``, and the step that refreshes
    it each run: none when that is a view of ``value`` itself, else a copy into a
    workspace (a broadcast or non-contiguous operand)."""
    if value.shape == full and value.flags.c_contiguous:
        return value.reshape(view), nothing
    copy = _workspace(node, key, full, value.dtype)
    return copy.reshape(view), functools.partial(np.copyto, copy, np.broadcast_to(value, full))


# ---- pooling and normalisation ------------------------------------------------------
def pool(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """MaxPool / AveragePool (1-D and 2-D; ceil_mode, pads, dilations, count_include_pad)."""
    if len(node.outputs) > 1 and node.outputs[1]:
        raise UnsupportedModelError(f"MaxPool {node.name!r}: the Indices output is not supported")
    x = ins[0]
    kernel = node.attrs["kernel_shape"]
    ceil = bool(node.attrs.get("ceil_mode", 0))
    is_max = node.op_type == "MaxPool"
    count_pad = int(node.attrs.get("count_include_pad", 0))
    geo = shapes.window(node, x.shape[1:3] if node.channels_last else x.shape[2:], kernel, ceil)
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilations
    window = (kh, kw, sh, sw, *geo.pads, dh, dw, int(is_max), count_pad)
    if node.channels_last:
        out = _out(outs, (x.shape[0], *geo.out, x.shape[3]), x.dtype)
        kernels = max_pool.max_pool2d_vector_nhwc if is_max and max_pool.fits(x) else None
        nhwc = cpu.pick(kernels or cpu.pool2d_nhwc, out.size * kh * kw)
        return functools.partial(nhwc, x, window, out), [out]
    out_shape = (*x.shape[:2], *geo.out) if x.ndim == 4 else (*x.shape[:2], geo.out[1])
    out = _out(outs, out_shape, x.dtype)
    x4, out4 = shapes.as_4d(x), shapes.as_4d(out)
    h, w = x4.shape[2], x4.shape[3]
    oh, ow = geo.out
    inside = (oh - 1) * sh + kh <= h and (ow - 1) * sw + kw <= w  # ceil_mode can overhang
    if is_max and dh == dw == 1 and not any(geo.pads) and inside:
        unpadded = cpu.pick(cpu.max_pool2d_unpadded, out.size * kh * kw)
        return functools.partial(unpadded, x4, kh, kw, sh, sw, out4), [out]
    general = cpu.pick(cpu.pool2d, out.size * kh * kw)
    return functools.partial(general, x4, window, out4), [out]


def global_average_pool(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """GlobalAveragePool: the mean over every spatial position."""
    x = ins[0]
    if node.channels_last:  # NHWC in, NCHW [N, C, 1, 1] out: the same bytes as [N, 1, 1, C]
        n, c = x.shape[0], x.shape[-1]
        out = _out(outs, (n, c, 1, 1), x.dtype)
        mean = cpu.pick(cpu.mean_middle, x.size)
        return functools.partial(mean, x.reshape(n, -1, c), out.reshape(n, c)), [out]
    out = _out(outs, (*x.shape[:2],) + (1,) * (x.ndim - 2), x.dtype)
    rows = x.shape[0] * x.shape[1]
    mean = cpu.pick(cpu.mean_last, x.size)
    return functools.partial(mean, x.reshape(rows, -1), out.reshape(rows)), [out]


def softmax(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Softmax over one axis (opset 13+) or the flattened trailing axes (before)."""
    x = ins[0]
    out = _out(outs, x.shape, x.dtype)
    view = shapes.softmax_view(node, x.shape)
    if view[2] == 1 and x.dtype == np.float32 and x.flags.c_contiguous:  # attention's rows
        rows = cpu.pick(softmax_rows.softmax_rows, x.size)
        return functools.partial(rows, x.reshape(view[:2]), out.reshape(view[:2])), [out]
    kernel = cpu.pick(cpu.softmax, x.size)
    return functools.partial(kernel, x.reshape(view), out.reshape(view)), [out]


def layer_norm(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """LayerNormalization over the trailing axes from ``axis``; Mean and InvStdDev too."""
    x = ins[0]
    view = shapes.layer_norm_view(node, x.shape)
    rows, n = view.rows, view.n
    has_bias = len(ins) > 2 and ins[2] is not None
    zeros = np.zeros((), x.dtype)
    # scale and bias broadcast to the normalised axes: copied once if constant, else per run
    scale, copy_scale = _flat_operand(node, "scale", ins[1], view.tail, 1)
    bias, copy_bias = _flat_operand(node, "bias", ins[2] if has_bias else zeros, view.tail, 2)
    out = _out(outs, x.shape, x.dtype)
    stats = [
        _out(outs, view.stats_shape, np.float32, i)
        if view.wanted[i]
        else _workspace(node, i, view.stats_shape, x.dtype)
        for i in (1, 2)
    ]
    eps = float(node.attrs.get("epsilon", 1e-5))
    normalise = functools.partial(
        cpu.pick(cpu.layer_norm, x.size),
        x.reshape(rows, n),
        scale,
        bias,
        eps,
        out.reshape(rows, n),
        stats[0].reshape(rows),
        stats[1].reshape(rows),
    )
    return _sequence(copy_scale, copy_bias, normalise), [out, *stats][: len(node.outputs)]


def _flat_operand(
    node: Node, key: str, value: np.ndarray, shape: tuple[int, ...], index: int
) -> tuple[np.ndarray, Callable[[], Any]]:
    """``value`` broadcast to ``shape`` and flattened into a buffer of this node's: filled
    once for a constant (input ``index``), else by the returned step on every run."""
    flat = _workspace(node, key, (math.prod(shape),), value.dtype)
    fill = functools.partial(np.copyto, flat.reshape(shape), np.broadcast_to(value, shape))
    if index in node.const_inputs or value.ndim == 0:
        fill()
        return flat, nothing
    return flat, fill


def batch_norm(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Inference BatchNormalization as a per-channel affine (when not folded into a Conv)."""
    x, scale, beta, mean, var = ins[:5]
    if node.attrs.get("training_mode", 0):
        raise UnsupportedModelError(f"BatchNormalization {node.name!r}: training_mode")

    def affine() -> tuple[np.ndarray, np.ndarray]:
        mul = scale / np.sqrt(var.astype(np.float64) + node.attrs.get("epsilon", 1e-5))
        return mul.astype(x.dtype), (beta - mean * mul).astype(x.dtype)

    all_const = {1, 2, 3, 4} <= node.const_inputs
    mul, add = _cached(node, "affine", 1 if all_const else -1, affine)
    out = _out(outs, x.shape, x.dtype)
    shape3 = (x.shape[0], x.shape[1], -1)
    cpu.pick(cpu.channel_affine, x.size)(x.reshape(shape3), mul, add, out.reshape(shape3))
    return [out]


def resize(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Resize, nearest neighbour, any coordinate mode, rank up to 4."""
    return _gather(node, ins[0], shapes.resize_indices(node, ins, ins[0].shape), 0, outs)


def pad(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Pad (constant, reflect, edge, wrap; negative pads crop), rank up to 4."""
    index, value = shapes.pad_indices(node, ins, ins[0].shape)
    return _gather(node, ins[0], index, value, outs)


def _gather(
    node: Node, x: np.ndarray, index: list[np.ndarray], fill: Any, outs: Arrays | None
) -> Bound:
    """``out = x[index[0], index[1], ...]`` (one index array per axis), ``fill`` where an
    index is -1: the shared body of Resize and Pad."""
    if x.ndim > 4:
        raise UnsupportedModelError(f"{node.op_type} {node.name!r}: rank above 4")
    out = _out(outs, tuple(len(i) for i in index), x.dtype)
    index4 = [np.zeros(1, np.int64)] * (4 - x.ndim) + index
    x4 = x.reshape((1,) * (4 - x.ndim) + x.shape)
    out4 = out.reshape(tuple(len(i) for i in index4))
    kernel = cpu.pick(cpu.gather4, out.size)
    return functools.partial(kernel, x4, *index4, x.dtype.type(fill), out4), [out]


def lrn(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """LRN: local response normalisation across channels (NCHW, or NHWC in a layout chain)."""
    x = ins[0]
    out = _out(outs, x.shape, x.dtype)
    view = shapes.channel_view(x.shape, node.channels_last)
    attrs = node.attrs
    params = (
        int(attrs["size"]),
        float(attrs.get("alpha", 1e-4)),
        float(attrs.get("beta", 0.75)),
        float(attrs.get("bias", 1.0)),
    )
    kernel = cpu.pick(cpu.lrn, x.size * params[0])
    return functools.partial(kernel, x.reshape(view), *params, out.reshape(view)), [out]


# ---- elementwise ------------------------------------------------------------------------
def _elementwise(op: str, args: Arrays, outs: Arrays | None) -> tuple[np.ndarray, Any]:
    """The output (planned, or allocated like ONNX's result) and ``op`` bound into it."""
    out = _out(outs, np.broadcast_shapes(*(a.shape for a in args)), args[0].dtype)
    return out, elementwise.bind(op, args, out)


def unary(op: str) -> Kernel:
    def binder(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
        out, run = _elementwise(op, [ins[0]], outs)
        return run, [out]

    return _bindable(binder)


def parametric(op: str) -> Kernel:
    """LeakyRelu, HardSigmoid, HardSwish: a ufunc of x and the node's (alpha, beta)."""

    def binder(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
        x = ins[0]
        alpha, beta = (np.asarray(p, x.dtype) for p in elementwise.parameters(op, node.attrs))
        out, run = _elementwise(op, [x, alpha, beta], outs)
        return run, [out]

    return _bindable(binder)


def logical(op: str) -> Kernel:
    """Comparisons (Equal, Less, ...) and logic (And, Or, Xor, Not), writing booleans."""

    def binder(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
        out = _out(outs, np.broadcast_shapes(*(a.shape for a in ins)), np.bool_)
        return functools.partial(elementwise.LOGICAL[op], *ins, out=out), [out]

    return _bindable(binder)


def gelu(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    op = "GeluTanh" if node.attrs.get("approximate", "none") == "tanh" else "Gelu"
    out, run = _elementwise(op, [ins[0]], outs)
    return run, [out]


def binary(op: str) -> Kernel:
    return _bindable(functools.partial(_binary, op))


def _binary(op: str, node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    if op == "Add" and node.activation == "Relu":  # residual blocks: one pass
        out, run = _elementwise("AddRelu", [ins[0], ins[1]], outs)
        return run, [out]
    out, run = _elementwise(op, [ins[0], ins[1]], outs)
    if node.activation:  # a fused activation, in place while the output is in cache
        return _sequence(run, elementwise.bind(node.activation, [out], out)), [out]
    return run, [out]


def variadic(op: str) -> Kernel:
    """Sum, Max or Min of any number of inputs, with broadcasting: pairwise into the output;
    a Sum of two is an Add (with the Relu `graph` may fuse into it)."""

    def binder(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
        if len(ins) == 2:
            return _binary(op, node, ins, outs)
        out = _out(outs, np.broadcast_shapes(*(a.shape for a in ins)), ins[0].dtype)
        if len(ins) == 1:
            return functools.partial(np.copyto, out, ins[0]), [out]
        first = elementwise.bind(op, [ins[0], ins[1]], out)
        return _sequence(first, *(elementwise.bind(op, [out, x], out) for x in ins[2:])), [out]

    return _bindable(binder)


def clip(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Clip to [min, max]: bounds from inputs 1 and 2 (opset 11+) or attributes, each optional."""
    x = ins[0]
    out = _out(outs, x.shape, x.dtype)
    steps, source = [], x
    for op, bound in zip(("Max", "Min"), shapes.clip_bounds(node, ins, x.dtype), strict=True):
        if bound is not None:  # the first bound reads x, the second the partial result
            steps.append(elementwise.bind(op, [source, bound], out))
            source = out
    return _sequence(*steps) if steps else functools.partial(np.copyto, out, x), [out]


def where(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Where(condition, x, y), broadcasting all three: y everywhere, then x where true."""
    condition, x, y = ins
    out = _out(outs, np.broadcast_shapes(condition.shape, x.shape, y.shape), x.dtype)
    return _sequence(
        functools.partial(np.copyto, out, y), functools.partial(np.copyto, out, x, where=condition)
    ), [out]


# ---- views (no buffer of their own) ---------------------------------------------------
def reshape(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    target = shapes.reshape_target(ins[0].shape, ins[1], node.attrs.get("allowzero", 0))
    return [ins[0].reshape(target)]


def flatten(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    axis = int(node.attrs.get("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    return [x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))]


def squeeze(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    axes = shapes.axes_of(node, ins, 1, x.ndim)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    return [x.reshape(tuple(d for i, d in enumerate(x.shape) if i not in axes))]


def unsqueeze(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x = ins[0]
    rank = x.ndim + len(
        node.attrs.get("axes", np.asarray(ins[1]).reshape(-1) if len(ins) > 1 else [])
    )
    axes = sorted(shapes.axes_of(node, ins, 1, rank) or [])
    dims = list(x.shape)
    for axis in axes:
        dims.insert(axis, 1)
    return [x.reshape(tuple(dims))]


def identity(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Identity, and Dropout at inference (``training_mode`` false): the input itself."""
    if (
        node.op_type == "Dropout"
        and len(ins) > 2
        and ins[2] is not None
        and bool(np.asarray(ins[2]))
    ):
        raise UnsupportedModelError(f"Dropout {node.name!r}: training_mode=True (random)")
    if node.op_type == "Dropout" and len(node.outputs) > 1 and node.outputs[1]:
        return [ins[0], np.ones(ins[0].shape, dtype=bool)]
    return [ins[0]]


# ---- data movement and shape arithmetic (NumPy) ------------------------------------------
def transpose(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    perm = node.attrs.get("perm", list(range(ins[0].ndim))[::-1])
    moved = ins[0].transpose(perm)
    out = _out(outs, moved.shape, moved.dtype)
    if list(perm) == layout.SHUFFLE_NHWC_PERM and ins[0].flags.c_contiguous:
        # a channel shuffle in NHWC: each pixel's channels permuted alike
        a, b = ins[0].shape[3:]
        kernel = cpu.pick(cpu.shuffle_rows, out.size)
        rows = (ins[0].reshape(-1, a * b), a, out.reshape(-1, a * b))
        return functools.partial(kernel, *rows), [out]
    return functools.partial(np.copyto, out, moved), [out]


def concat(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Concat; along the last axis of C-contiguous float32 values (channels in NHWC) each
    input 16 values wide or a multiple of that is one `cpu.copy_columns` call."""
    parts = [a for a in ins if a is not None and a.size] or ins[:1]
    axis = int(node.attrs["axis"]) % ins[0].ndim
    shape = list(parts[0].shape)
    shape[axis] = sum(a.shape[axis] for a in parts)
    out = _out(outs, tuple(shape), parts[0].dtype)
    by_columns = axis == out.ndim - 1 and out.dtype == np.float32 and out.flags.c_contiguous
    if not by_columns or not all(a.flags.c_contiguous and a.dtype == out.dtype for a in parts):
        return functools.partial(np.concatenate, parts, axis=axis, out=out), [out]
    rows, copies, start = out.reshape(-1, out.shape[-1]), [], 0
    for a in parts:
        width = a.shape[-1]
        if width % packed_gemm.LANES:
            target = rows[:, start : start + width]
            copies.append(functools.partial(np.copyto, target, a.reshape(-1, width)))
        else:
            kernel = cpu.pick(cpu.copy_columns, a.size)
            copies.append(functools.partial(kernel, a.reshape(-1, width), rows, start))
        start += width
    return _sequence(*copies), [out]


def gather(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    x, index = ins[0], np.asarray(ins[1])
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    if outs is None:
        return [np.take(x, index, axis=axis)]
    np.take(x, index, axis=axis, out=outs[0])
    return [outs[0]]


def slice_op(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    part = ins[0][shapes.slices(node, ins, ins[0].shape)]
    out = _out(outs, part.shape, part.dtype)
    np.copyto(out, part)
    return [out]


def cast(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    from onnx import helper

    dtype = helper.tensor_dtype_to_np_dtype(int(node.attrs["to"]))
    out = _out(outs, ins[0].shape, dtype)
    np.copyto(out, ins[0], casting="unsafe")
    return [out]


def cast_like(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    out = _out(outs, ins[0].shape, ins[1].dtype)
    np.copyto(out, ins[0], casting="unsafe")
    return [out]


def shape_op(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    dims = ins[0].shape
    start, end = node.attrs.get("start", 0), node.attrs.get("end", len(dims))
    return [np.array(dims[start:end], dtype=np.int64)]


def constant_of_shape(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    from onnx import numpy_helper

    value = node.attrs.get("value")
    fill = (
        numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, np.float32)
    )
    out = _out(outs, tuple(int(d) for d in np.asarray(ins[0])), fill.dtype)
    out.fill(fill[0])
    return [out]


def expand(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    shape = np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in np.asarray(ins[1])))
    out = _out(outs, shape, ins[0].dtype)
    np.copyto(out, np.broadcast_to(ins[0], shape))
    return [out]


#: Reduce* ops as NumPy ufunc reductions (exact order aside, and allocation-free).
REDUCERS = {
    "ReduceSum": np.add,
    "ReduceMax": np.maximum,
    "ReduceMin": np.minimum,
    "ReduceProd": np.multiply,
}


def reduce_op(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Reduce* over the node's axes (see `shapes.reduce_axes`): Mean/Sum/Max/Min/Prod,
    and L1/L2/SumSquare/LogSum/LogSumExp (`index_ops.reduce_extra`)."""
    if node.channels_last:  # a spatial mean in an NHWC chain (see `layout`)
        return global_average_pool(node, ins, outs)
    x = ins[0]
    axes, shape = shapes.reduce_axes(node, ins, x.ndim)
    out = _out(outs, shape, x.dtype)
    if not axes:
        return functools.partial(np.copyto, out, x), [out]
    keep = bool(node.attrs.get("keepdims", 1))
    if node.op_type in index_ops.EXTRA_REDUCTIONS:

        def norm() -> None:
            np.copyto(out, index_ops.reduce_extra(node.op_type, x, tuple(axes), keep), "unsafe")

        return norm, [out]
    if node.op_type == "ReduceMean":  # float64 sums: means of long rows stay exact

        def mean() -> None:
            np.copyto(out, np.mean(x, axis=tuple(axes), keepdims=keep, dtype=np.float64))

        return mean, [out]
    ufunc = REDUCERS[node.op_type]
    extra = {}
    if ufunc in (np.maximum, np.minimum):  # an empty reduction gives the dtype's extreme
        extra["initial"] = shapes.dtype_extremes(x.dtype)[ufunc is np.minimum]
    reduce = functools.partial(ufunc.reduce, x, axis=tuple(axes), keepdims=keep, out=out, **extra)
    return reduce, [out]


def arg_reduce(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """ArgMax / ArgMin along one axis; ``select_last_index`` searches a reversed view."""
    x = ins[0]
    axis, shape = shapes.arg_axis(node, x.shape)
    out = _out(outs, shape, np.int64)
    search = np.argmax if node.op_type == "ArgMax" else np.argmin
    keep = bool(node.attrs.get("keepdims", 1))
    if not node.attrs.get("select_last_index", 0):
        return functools.partial(search, x, axis=axis, out=out, keepdims=keep), [out]
    reversed_x = np.flip(x, axis)
    last = x.shape[axis] - 1
    return _sequence(
        functools.partial(search, reversed_x, axis=axis, out=out, keepdims=keep),
        functools.partial(np.subtract, last, out, out=out),
    ), [out]


def split(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Split along an axis into parts of the given (or equal) sizes."""
    x = ins[0]
    axis, sizes = shapes.split_sizes(node, ins, x.shape)
    results, copies, start = [], [], 0
    for i, size in enumerate(sizes):
        part = x[(slice(None),) * axis + (slice(start, start + size),)]
        out = _out(outs, part.shape, x.dtype, i)
        results.append(out)
        copies.append(functools.partial(np.copyto, out, part))
        start += size
    return _sequence(*copies), results


def tile(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
    """Tile: one broadcasting copy (see `shapes.tile_view`)."""
    x = ins[0]
    out_view, in_view = shapes.tile_view(x.shape, ins[1])
    out = _out(
        outs, tuple(r * d for r, d in zip(out_view[::2], out_view[1::2], strict=True)), x.dtype
    )
    return functools.partial(np.copyto, out.reshape(out_view), x.reshape(in_view)), [out]


def range_op(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
    """Range(start, limit, delta); its length must not change between runs of a plan."""
    start, limit, delta = (np.asarray(v).reshape(()) for v in ins)
    values = np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)
    out = _out(outs, values.shape, values.dtype)
    np.copyto(out, values)
    return [out]


def make_kernels(
    gemm: str = "blas", threads: int = 1, conv_strategy: str = "rules"
) -> dict[str, Kernel]:
    """The CPU op table.

    Args:
        gemm: ``"blas"`` (NumPy's BLAS called from Numba) or ``"tiled"`` (our own kernel).
        threads: cores a big BLAS product is split over (one BLAS call per core).
        conv_strategy: ``"measure"`` (time each dense NHWC convolution's candidate
            kernels once per machine, see `strategy`) or ``"rules"`` (fixed rules).

    Returns:
        op type -> kernel.
    """
    gemm_fn = _gemm_fn(gemm, threads)
    table: dict[str, Kernel] = {
        "Conv": _bindable(functools.partial(conv, gemm=gemm_fn, strategy_mode=conv_strategy)),
        "Gemm": _bindable(functools.partial(gemm_op, gemm=gemm_fn)),
        "MatMul": _bindable(functools.partial(matmul, gemm=gemm_fn)),
        "MaxPool": _bindable(pool),
        "AveragePool": _bindable(pool),
        "GlobalAveragePool": _bindable(global_average_pool),
        "Softmax": _bindable(softmax),
        "LayerNormalization": _bindable(layer_norm),
        "BatchNormalization": batch_norm,
        "Resize": _bindable(resize),
        "Pad": _bindable(pad),
        "LRN": _bindable(lrn),
        "Gelu": _bindable(gelu),
        "Sum": variadic("Add"),
        "Max": variadic("Max"),
        "Min": variadic("Min"),
        "Clip": _bindable(clip),
        "Where": _bindable(where),
        "Reshape": reshape,
        "Flatten": flatten,
        "Squeeze": squeeze,
        "Unsqueeze": unsqueeze,
        "Identity": identity,
        "Dropout": identity,
        "Transpose": _bindable(transpose),
        "Concat": _bindable(concat),
        "Gather": gather,
        "Slice": slice_op,
        "Cast": cast,
        "CastLike": cast_like,
        "Shape": shape_op,
        "ConstantOfShape": constant_of_shape,
        "Expand": expand,
        "Split": _bindable(split),
        "Tile": _bindable(tile),
        "Range": range_op,
        "ArgMax": _bindable(arg_reduce),
        "ArgMin": _bindable(arg_reduce),
    }
    for op in ("ReduceMean", *REDUCERS, *index_ops.EXTRA_REDUCTIONS):
        table[op] = _bindable(reduce_op)
    table.update(
        {
            "GatherND": index_ops.gather_nd,
            "GatherElements": index_ops.gather_elements,
            "ScatterND": index_ops.scatter_nd,
            "ScatterElements": index_ops.scatter_elements,
            "CumSum": index_ops.cumsum,
            "IsNaN": index_ops.is_nan,
            "IsInf": index_ops.is_inf,
            "QuantizeLinear": _bindable(quant_ops.bind_quantize_linear),
            "DequantizeLinear": _bindable(quant_ops.bind_dequantize_linear),
            "DynamicQuantizeLinear": quant_ops.dynamic_quantize_linear,
            "MatMulInteger": _bindable(quant_ops.bind_matmul_integer),
            # not ONNX: QDQ Gemm/MatMul and Conv in integers, fused by `qdq_fusion`
            "Int8Gemm": _bindable(quant_ops.bind_int8_gemm),
            "Int8Conv": _bindable(quant_ops.bind_int8_conv),
            # not ONNX: an exported bag's Gather + reduction, fused by `embedding_bag_graph`
            "EmbeddingBag": _bindable(embedding_bag.bind_embedding_bag),
        }
    )
    for op in UNARY_OPS:
        table[op] = unary(op)
    for op in elementwise.PARAMETRIC:
        table[op] = parametric(op)
    for op in elementwise.LOGICAL:
        table[op] = logical(op)
    for op in ("Add", "Sub", "Mul", "Div", "Pow"):
        table[op] = binary(op)
    for op in tree_ops.TREE_OPS:  # ai.onnx.ml tree ensembles: our traversal kernel
        # the graph checks support by domain-qualified name, the executor runs by op type
        table[op] = table[f"ai.onnx.ml.{op}"] = _bindable(tree_ops.bind_tree_ensemble)
    encode = _bindable(label_encoder.bind_label_encoder)  # an IsolationForest's leaf maps
    table["LabelEncoder"] = table["ai.onnx.ml.LabelEncoder"] = encode
    return table


#: The ONNX ops among `elementwise.UNARY` (the others are fused variants).
UNARY_OPS = tuple(op for op in elementwise.UNARY if op not in ("Gelu", "GeluTanh"))

#: The reference table: BLAS GEMM. Also used to fold constants on the host.
REFERENCE = make_kernels("blas")


def fold(node: Node, values: Arrays) -> list[np.ndarray]:
    """Evaluate ``node`` on host arrays with fresh outputs (constant folding)."""
    return [np.asarray(v) for v in REFERENCE[node.op_type](node, values, None)]
