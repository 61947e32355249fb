"""Greedy decoding on the Numba executor: the ``numba`` backend's `Decoder`
(`workbench.backends.base`), built by `numba_decoder`.

It runs the same exported ONNX decoder ONNX Runtime runs
(`workbench.loaders.causal_lm.decoder_file`), compiled by the Numba executor with its
KV cache kept in place (`decoder_ops.keep_cache_in_place`): one array per layer's K and
V, preallocated to the model's context and written only where the new tokens go; the
attention reads it where it lies. The executor plans once per set of input shapes, and
a generation's shapes differ at every step (the cache grows by one), so each length
gets its plan the first time it is seen and keeps it: `prepare` (which
`generate_profile` calls before the warm-up) runs one generation untimed so that every
plan the timed ones need exists, its seconds in ``compile_s``. Only the last position's
logits come out, for the argmax.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from workbench.backends.base import LayerTiming
from workbench.errors import InputError
from workbench.loaders.causal_lm import DecoderFile, label_modules


class NumbaDecoder:
    """Prefill, then one step per token, on an exported decoder run by the Numba executor.

    The executor folds the weights into its own arrays (``weights_copied``: the memory
    split counts them apart from the rest).

    Args:
        exported: the exported decoder (`decoder_file`); the decoder removes its folder
            on `close`.
        threads: threads the kernels run on (Numba's own count capped by the free CPUs
            when None, as the numba backend's sessions).
        gemm: the numba backend's ``gemm`` option (``"blas"`` or ``"tiled"``).
    """

    def __init__(self, exported: DecoderFile, threads: int, gemm: str = "blas") -> None:
        import onnx

        from workbench.backends.numba import decoder_ops
        from workbench.backends.numba.cpu_ops import make_kernels
        from workbench.backends.numba.executor import CpuDevice, Executor
        from workbench.backends.numba.graph import build_graph

        self.exported = exported
        self.threads = threads
        self.weights_copied = True
        lm = exported.lm
        self.lm = lm
        past, present = lm.cache_names
        dtype = {2: np.float16, 4: np.float32, 8: np.float64}[lm.cache_itemsize]
        self.cache = decoder_ops.KvCache(len(past), lm.kv_heads, lm.head_dim, lm.context, dtype)
        proto = onnx.load(str(exported.path))
        label_modules(proto, exported.modules, outer_scopes=exported.outer_scopes)
        table = {**make_kernels(gemm, threads), **decoder_ops.kernels(self.cache)}
        table["MatMulColumns"] = decoder_ops.matmul_columns(table["MatMul"])
        fold = decoder_ops.fold_with(table)
        graph = build_graph(proto, fold, table, lambda node: False)
        graph = decoder_ops.keep_cache_in_place(graph, past, present)
        self.graph = decoder_ops.weights_by_columns(graph)
        self.executor = Executor(self.graph, table, fold, CpuDevice())
        self.compile_s: float | None = None
        #: the per-layer pass's own generations, timed whole as the plain ones are
        #: ([TTFT, step, ...] per recorded generation, ms): what the breakdown costs
        self.layer_times: list[list[float]] = []
        self._batch = 0
        self._length = 0

    @property
    def notes(self) -> list[str]:
        """What a profile of this decoder should say about it."""
        reserved = self.cache.reserved_bytes()
        return [
            f"numba: the KV cache is preallocated for {self.lm.context} tokens per sequence "
            f"({reserved / 2**20:.1f} MiB reserved, pages touched only as tokens are written; "
            "kv_cache_bytes_measured counts the positions filled); one plan per sequence "
            f"length, {self.plans} made"
        ]

    @property
    def plans(self) -> int:
        """How many input shapes the executor has planned (one per length seen)."""
        return len(self.executor.plans)

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """Numba's thread count set to `threads` while generating, the caller's after."""
        import numba

        before = numba.get_num_threads()
        wanted = min(self.threads, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        numba.set_num_threads(wanted)
        try:
            yield
        finally:
            numba.set_num_threads(before)

    def _plan(self, ids: np.ndarray) -> Any:
        batch, new = ids.shape
        total = self._length + new
        if total > self.cache.capacity:
            raise InputError(
                f"{total} tokens exceed {self.lm.name}'s context of {self.cache.capacity}; "
                "shorten the prompt or the output"
            )
        positions = np.arange(self._length, total, dtype=np.int64)
        inputs = {
            "input_ids": np.ascontiguousarray(ids, dtype=np.int64),
            "attention_mask": np.ones((batch, total), np.int64),
            "position_ids": np.ascontiguousarray(np.broadcast_to(positions, ids.shape)),
        }
        plan = self.executor.stage(inputs)
        self._length = total
        return plan

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Run more tokens (batch, length) on the cache; the last position's logits
        (batch × vocabulary)."""
        (logits,) = self.executor.execute(self._plan(ids))
        return np.asarray(logits[:, -1])

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.logits(ids).argmax(-1))

    def start(self, batch: int) -> None:
        """Empty the cache for ``batch`` new sequences (`prefill` starts with it); the
        arrays stay where they are, later tokens overwrite them."""
        self._batch, self._length = batch, 0

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Run the prompt (batch, length) on an empty cache; the next token of each row."""
        self.start(ids.shape[0])
        return self._forward(ids)

    def extend(self, ids: np.ndarray) -> np.ndarray:
        """Run more tokens (batch, length) on the cache; the next token of each row."""
        return self._forward(ids)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per row; the next token of each row."""
        return self._forward(tokens[:, None])

    def cache_bytes(self) -> int:
        """Bytes of the cache positions filled now (every layer's K and V)."""
        return self.cache.filled_bytes(self._batch, self._length) if self._batch else 0

    def prepare(self, ids: np.ndarray, output_length: int, context: np.ndarray | None) -> None:
        """Plan every length one generation of ``ids`` takes (and compile the kernels),
        untimed, so no timed step plans; the seconds go to ``compile_s``."""
        began = time.perf_counter()
        self._generate(ids, output_length, context)
        self.compile_s = time.perf_counter() - began

    def _generate(self, ids: np.ndarray, output_length: int, context: np.ndarray | None) -> None:
        if context is not None:
            self.prefill(context)
        token = self.prefill(ids) if context is None else self.extend(ids)
        for _ in range(output_length - 1):
            token = self.step(token)

    def phase_layer_timings(
        self, ids: np.ndarray, output_length: int, context: np.ndarray | None, runs: int
    ) -> tuple[list[LayerTiming], list[LayerTiming]]:
        """Per-layer timings of the prefill and of the decode steps: ``runs`` generations
        with every executor step timed (`Executor.execute_timed`), after one untimed;
        a ``context`` prefill is run, never recorded. Each recorded call is also timed
        whole, instruments and all, into `layer_times`.

        Returns:
            (prefill, decode) `LayerTiming` lists: one sample per prefill / per decode
            step, each layer's steps summed, on the module paths the nodes were exported
            from (the names the torch and onnxruntime tables use).
        """
        self._generate(ids, output_length, context)
        phases: dict[str, list[tuple[Any, list[float]]]] = {"prefill": [], "decode": []}
        clock = time.perf_counter
        self.layer_times = []
        for _ in range(runs):
            if context is not None:
                self.prefill(context)
            began = clock()
            phases["prefill"].append(self._timed(ids, first=context is None))
            times = [(clock() - began) * 1000.0]
            for _ in range(output_length - 1):
                began = clock()
                phases["decode"].append(self._timed(self._last[:, None], first=False))
                times.append((clock() - began) * 1000.0)
            self.layer_times.append(times)
        return _timings(phases["prefill"]), _timings(phases["decode"])

    def _timed(self, ids: np.ndarray, first: bool) -> tuple[Any, list[float]]:
        if first:
            self.start(ids.shape[0])
        plan = self._plan(ids)
        times = self.executor.execute_timed(plan)
        self._last = np.asarray(plan.outputs[0][:, -1].argmax(-1))
        return plan, times

    def close(self) -> None:
        """Drop the plans and the cache, and remove the exported file."""
        self.executor.drop_plans()
        self.cache.release()
        self.exported.cleanup()


def _timings(calls: list[tuple[Any, list[float]]]) -> list[LayerTiming]:
    """One `LayerTiming` per layer: the sum of its steps in each call, one sample each
    (every plan of a graph has the same steps, in the same order)."""
    if not calls:
        return []
    order: dict[str, list[int]] = {}
    for index, step in enumerate(calls[0][0].steps):
        order.setdefault(step.node.layer, []).append(index)
    timings = []
    for layer, indices in order.items():
        nodes = [calls[0][0].steps[i].node for i in indices]
        timings.append(
            LayerTiming(
                layer=layer,
                op_type=nodes[0].op_type,
                samples_ms=tuple(sum(times[i] for i in indices) for _, times in calls),
                detail={
                    "nodes": [n.name for n in nodes],
                    "fused": [f for n in nodes for f in n.fused],
                },
            )
        )
    return timings


def numba_decoder(model: Any, threads: int, gemm: str = "blas") -> NumbaDecoder:
    """``model`` (a ``transformers`` causal LM) exported with its KV cache
    (`decoder_file`) and compiled for the Numba executor; never changes ``model``.

    Raises:
        UnsupportedModelError: ``model`` is not a causal LM, or its decoder has ops the
            executor cannot run (named).
        BackendError: torch.onnx could not export it.
    """
    from workbench.loaders.causal_lm import decoder_file

    exported = decoder_file(model)
    try:
        return NumbaDecoder(exported, threads, gemm)
    except BaseException:
        exported.cleanup()
        raise
