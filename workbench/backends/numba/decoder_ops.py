"""The exported decoder's graph with its KV cache kept in place (`keep_cache_in_place`),
and the kernels that takes: a preallocated cache written where the new tokens go
(``KvAppend``), the cache's filled part as a view (``KvPast``), and Cos / Sin (the
rotary embedding's).

The exported graph (`workbench.loaders.causal_lm.export_decoder`) concatenates each
layer's ``past`` key or value with the new tokens' into ``present``, a new tensor per
call. Here every ``Concat(past, new)`` becomes ``KvAppend(new, attention_mask)``: the
new tokens are copied into a [batch, kv heads, capacity, head width] array kept by the
decoder, at the positions after the cached ones, and the node's output is a view of
that array's filled part. So no step copies the cache, and the tensors downstream read
it where it lies. The past length comes from the shapes (the mask's length less the new
tokens'), so it is fixed for each plan the executor makes per input shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numba import prange

from workbench.backends.numba import cpu
from workbench.backends.numba.executor import Kernel, nothing
from workbench.backends.numba.graph import Graph, Node
from workbench.errors import UnsupportedModelError

Arrays = list[Any]
#: a binder's result: the work as a zero-argument callable, and the output arrays
Bound = tuple[Callable[[], Any], Arrays]


class KvCache:
    """K and V arrays of every layer, [batch, kv heads, capacity, head width] each,
    allocated once per batch size and written in place by the decoder's graph.

    Args:
        slots: how many cache tensors (two per layer: K and V).
        kv_heads: key/value heads.
        head_dim: width of one head.
        capacity: tokens each sequence can hold (the model's context).
        dtype: the element type (the weights').
    """

    def __init__(self, slots: int, kv_heads: int, head_dim: int, capacity: int, dtype: Any) -> None:
        self.slots, self.kv_heads, self.head_dim = slots, kv_heads, head_dim
        self.capacity = capacity
        self.dtype = np.dtype(dtype)
        self._arrays: dict[int, list[np.ndarray]] = {}

    def arrays(self, batch: int) -> list[np.ndarray]:
        """The cache arrays for ``batch`` sequences (made on first use, then kept: the
        plans bound to them stay valid)."""
        arrays = self._arrays.get(batch)
        if arrays is None:
            # zeros come from fresh pages: memory is only touched where tokens are written
            shape = (batch, self.kv_heads, self.capacity, self.head_dim)
            arrays = self._arrays[batch] = [np.zeros(shape, self.dtype) for _ in range(self.slots)]
        return arrays

    def filled_bytes(self, batch: int, length: int) -> int:
        """Bytes the first ``length`` positions of every sequence hold, over all arrays."""
        return sum(a[:, :, :length].nbytes for a in self.arrays(batch))

    def reserved_bytes(self) -> int:
        """Bytes allocated for every batch size used so far."""
        return sum(a.nbytes for arrays in self._arrays.values() for a in arrays)

    def release(self) -> None:
        self._arrays.clear()


def _past_length(node: Node, mask: np.ndarray, new: int, cache: KvCache) -> int:
    total = mask.shape[1]
    if total > cache.capacity:  # the decoder checks first; a direct run of the graph too
        raise UnsupportedModelError(
            f"{node.name}: {total} tokens exceed the KV cache's {cache.capacity}"
        )
    return total - new


def kernels(cache: KvCache) -> dict[str, Kernel]:
    """``KvAppend``, ``KvPast``, ``Cos`` and ``Sin`` for a graph rewritten by
    `keep_cache_in_place` onto ``cache``."""

    def append(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
        run, results = bind_append(node, ins, outs)
        run()
        return results

    def bind_append(
        node: Node, ins: Arrays, outs: Arrays | None
    ) -> tuple[Callable[[], Any], Arrays]:
        new, mask = ins
        array = cache.arrays(new.shape[0])[int(node.attrs["slot"])]
        start = _past_length(node, mask, new.shape[2], cache)
        end = start + new.shape[2]
        return functools.partial(np.copyto, array[:, :, start:end], new), [array[:, :, :end]]

    def past(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
        ids, mask = ins
        array = cache.arrays(ids.shape[0])[int(node.attrs["slot"])]
        return [array[:, :, : _past_length(node, mask, ids.shape[1], cache)]]

    append.bind = lambda node, ins, outs: bind_append(node, ins, outs)[0]  # type: ignore[attr-defined]
    past.bind = lambda node, ins, outs: nothing  # type: ignore[attr-defined]
    for kernel in (append, past):  # their outputs are views of the cache, not arena buffers
        kernel.owns_outputs = True  # type: ignore[attr-defined]
    return {"KvAppend": append, "KvPast": past, "Cos": _ufunc(np.cos), "Sin": _ufunc(np.sin)}


def _ufunc(fn: Any) -> Kernel:
    def kernel(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
        out = outs[0] if outs is not None else np.empty(ins[0].shape, ins[0].dtype)
        fn(ins[0], out=out)
        return [out]

    kernel.bind = lambda node, ins, outs: functools.partial(fn, ins[0], out=outs[0])  # type: ignore[attr-defined]
    return kernel


# ---- decode-sized products: a few rows through a constant weight -------------------------
#: At most this many rows go through `gemv`: one pass over the weight per call, each
#: weight row read once for all of them (a decode step has one row per sequence).
GEMV_MAX_ROWS = 8
#: Below this many weights a product runs on one thread (a parallel region costs more).
GEMV_PARALLEL_MIN = 1 << 16


def _gemv(a: np.ndarray, wt: np.ndarray, out: np.ndarray) -> None:
    """``out[i, j] = a[i] . wt[j]``: ``a`` [M, K] times a weight stored by columns
    (``wt`` [N, K] C-order, i.e. W [K, N] in Fortran order), output columns over the
    threads. Memory-bound: each weight row streams through once, a contiguous dot
    product that LLVM vectorises (fastmath lets it reassociate the sum)."""
    m, k = a.shape
    n = wt.shape[0]
    for j in prange(n):
        w = wt[j]
        for i in range(m):
            x = a[i]
            acc = np.float32(0.0)
            for p in range(k):
                acc += x[p] * w[p]
            out[i, j] = acc


gemv = cpu.twin(_gemv)


def weights_by_columns(graph: Graph) -> Graph:
    """``graph`` (changed in place and returned) with every MatMul by a constant 2-D
    float32 weight W [K, N] turned into ``MatMulColumns`` by W's transpose [N, K]
    (C-order, the original dropped), so that a decode step's product reads each output's
    weights contiguously (`gemv`); the prompt's products take it back as a transposed
    operand of the same BLAS call, no copy kept."""
    for node in graph.nodes:
        if node.op_type != "MatMul" or node.inputs[1] not in graph.consts:
            continue
        weight = graph.consts[node.inputs[1]]
        if weight.ndim != 2 or weight.dtype != np.float32:
            continue
        name = f"{node.inputs[1]}::columns"
        if name not in graph.consts:
            graph.consts[name] = np.ascontiguousarray(weight.T)
        node.op_type = "MatMulColumns"
        node.inputs = [node.inputs[0], name, *node.inputs[2:]]
    for name in [n for n in graph.consts if f"{n}::columns" in graph.consts]:
        if not any(name in node.inputs for node in graph.nodes):
            del graph.consts[name]  # one copy of each weight, not two
    return graph


def matmul_columns(matmul: Kernel) -> Kernel:
    """``MatMulColumns(a, wt[, bias])`` = ``MatMul(a, wt.T[, bias])``: `gemv` for a few
    rows without bias or activation, else the CPU ``matmul`` kernel on the transposed
    view (BLAS reads it as it lies)."""

    def gemv_fits(node: Node, ins: Arrays) -> bool:
        a = ins[0]
        rows = a.size // a.shape[-1] if a.ndim else 0
        return (
            len(ins) == 2 and not node.activation and a.flags.c_contiguous and rows <= GEMV_MAX_ROWS
        )

    def bind(node: Node, ins: Arrays, outs: Arrays | None) -> Bound:
        a, wt = ins
        n = wt.shape[0]
        out = outs[0] if outs is not None else np.empty((*a.shape[:-1], n), a.dtype)
        kernel = cpu.pick(gemv, wt.size) if wt.size >= GEMV_PARALLEL_MIN else gemv[1]
        rows = a.reshape(-1, a.shape[-1])
        return functools.partial(kernel, rows, wt, out.reshape(-1, n)), [out]

    def as_matmul(ins: Arrays) -> Arrays:
        return [ins[0], ins[1].T, *ins[2:]]

    def kernel(node: Node, ins: Arrays, outs: Arrays | None) -> Arrays:
        if not gemv_fits(node, ins):
            return matmul(node, as_matmul(ins), outs)
        run, results = bind(node, ins, outs)
        run()
        return results

    def bound(node: Node, ins: Arrays, outs: Arrays) -> Callable[[], Any]:
        if not gemv_fits(node, ins):
            return matmul.bind(node, as_matmul(ins), outs)  # type: ignore[attr-defined,no-any-return]
        return bind(node, ins, outs)[0]

    kernel.bind = bound  # type: ignore[attr-defined]
    return kernel


def fold_with(table: Mapping[str, Kernel]) -> Callable[[Node, Arrays], list[np.ndarray]]:
    """Constant folding through ``table`` (the CPU kernels plus these)."""

    def fold(node: Node, values: Arrays) -> list[np.ndarray]:
        return [np.asarray(v) for v in table[node.op_type](node, values, None)]

    return fold


def keep_cache_in_place(
    graph: Graph, past_names: Sequence[str], present_names: Sequence[str]
) -> Graph:
    """``graph`` (changed in place and returned) with every ``Concat(past, new)`` along
    the sequence axis a ``KvAppend`` into the cache, the past inputs read from the cache
    (``KvPast``, a view) and the present outputs dropped: logits are the only output.

    Raises:
        UnsupportedModelError: a past input not concatenated that way (a decoder this
            rewrite does not know).
    """
    slot = {name: i for i, name in enumerate(past_names)}
    alias: dict[str, str] = {}  # a one-input Concat of a past is the past itself
    appended: set[str] = set()
    kept: list[Node] = []
    readers: dict[str, str] = {}  # past name -> the layer of its first reader
    for node in graph.nodes:
        node.inputs = [alias.get(name, name) for name in node.inputs]
        first = node.inputs[0] if node.inputs else ""
        if node.op_type == "Concat" and first in slot and len(node.inputs) == 1:
            alias[node.outputs[0]] = first
            continue
        if node.op_type == "Concat" and first in slot and len(node.inputs) == 2:
            if int(node.attrs.get("axis", 0)) not in (2, -2):
                break
            node.op_type, node.attrs = "KvAppend", {"slot": slot[first]}
            node.inputs = [node.inputs[1], "attention_mask"]
            appended.add(first)
        for name in node.inputs:
            if name in slot:
                readers.setdefault(name, node.layer)
        kept.append(node)
    missing = [name for name in past_names if name not in appended]
    if missing:
        raise UnsupportedModelError(
            f"the decoder graph does not append to its cache input(s) {', '.join(missing[:3])} "
            "by a Concat along the sequence axis; the Numba decoder needs that form "
            "(workbench's own export has it)"
        )
    views = [
        Node(
            name=f"{name}::cache",
            op_type="KvPast",
            inputs=["input_ids", "attention_mask"],
            outputs=[name],
            attrs={"slot": slot[name]},
            layer=layer,
        )
        for name, layer in readers.items()
    ]
    graph.nodes = views + kept
    graph.inputs = [name for name in graph.inputs if name not in slot]
    graph.outputs = [name for name in graph.outputs if name not in set(present_names)]
    return graph
