"""Greedy decoding of an exported ONNX decoder (`workbench.loaders.causal_lm.export_decoder`)
in ONNX Runtime, the KV cache kept inside ORT between steps: the onnxruntime backend's
`Decoder` (`workbench.backends.base`), built by `exported_decoder`.

Each call runs through an IOBinding: the ``present`` values ORT returns stay ORT values
and are bound as the next step's ``past`` inputs, so no step copies the cache to numpy
and back. Only the last position's logits come out (batch × vocabulary) for the argmax.
The graph concatenates the cache, so each step's present is a new buffer ORT allocates;
a preallocated cache updated in place is not done here.

Per-layer tables of each phase (`OrtDecoder.phase_layer_timings`) are measured off the
timed generation, on the saved inputs of its prefill and of its middle decode step (the
cache those saw is kept, not copied): the decoder graph cut into blocks (each decoder
layer, the embeddings, the final norm, the head; `decoder_blocks`) runs as a chain of
plain sessions whose calls are timed, and ORT's node profiler, on a profiling copy of
the session, splits each block's time among the module paths its kernels were exported
from (``/model/model/layers.0/self_attn/q_proj/MatMul`` is
``model.layers.0.self_attn.q_proj``), the names the torch decoder's tables use. The
generations themselves run plain throughout.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import LayerTiming
from workbench.loaders.causal_lm import label_modules

if TYPE_CHECKING:
    from workbench.backends.onnxruntime.trace import NodeMap, TraceRun


#: block chains per kept call: each block's time is the median of these
CHAIN_REPEATS = 3


def middle_step(steps: int) -> int | None:
    """The decode step (1-based, of ``steps``) whose inputs the per-layer pass keeps: the
    middle one, whose cache length is the decode's average; None without a step."""
    return (steps + 1) // 2 if steps > 0 else None


class OrtDecoder:
    """Prefill, then one step per token, on an exported decoder in ONNX Runtime (CPU).

    ORT holds the weights as its own initializers (``weights_copied``: the memory split
    counts them apart from the rest).

    Args:
        path: the ONNX file `export_decoder` wrote.
        past_names: its past key/value inputs, in order.
        present_names: its present key/value outputs, in the same order.
        kv_heads: key/value heads (the cache's second dimension).
        head_dim: the cache's last dimension.
        cache_dtype: the cache's element type (the weights').
        threads: intra-op threads (None: the onnxruntime backend's own default).
        modules: the exported model's module paths, its root named after its class
            (`phase_layer_timings` maps kernels to them); empty: no per-layer tables.
        outer_scopes: node-name scopes before the model's own (`label_modules`).
    """

    def __init__(
        self,
        path: str | Path,
        past_names: list[str],
        present_names: list[str],
        kv_heads: int,
        head_dim: int,
        cache_dtype: Any = np.float32,
        threads: int | None = None,
        modules: Collection[str] = (),
        outer_scopes: int = 1,
    ) -> None:
        from workbench.backends.onnxruntime.options import intra_op_threads
        from workbench.backends.onnxruntime.plain import plain_session

        # the onnxruntime backend's own defaults, so a decoder runs as a profile's session does
        self.path = Path(path)
        self.threads = threads
        self.session = plain_session(self.path, threads=intra_op_threads(threads))
        self.weights_copied = True
        self.modules, self.outer_scopes = modules, outer_scopes
        #: keeps the exported file (and its folder) for the per-layer copy until `close`
        self.folder: tempfile.TemporaryDirectory[str] | None = None
        self.past_names, self.present_names = past_names, present_names
        self.kv_heads, self.head_dim = kv_heads, head_dim
        self.cache_dtype = np.dtype(cache_dtype)
        self._past: list[Any] = []
        self._length = 0
        #: the per-layer pass's own generations, timed as the plain ones are ([TTFT,
        #: step, ...] per recorded generation, ms)
        self.layer_times: list[list[float]] = []
        #: how the per-layer pass measured (`phase_layer_timings` fills it)
        self.layers_method: dict[str, Any] = {}
        #: lines the generation profile reports
        self.notes: list[str] = []

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Run more tokens (batch, length) on the cache (`start` empties it first); the
        last position's logits (batch × vocabulary), e.g. to score a variant's
        next-token distributions against its reference's."""
        outputs = run_bound(self.session, self.feeds(ids))
        self._past = list(outputs[1:])
        self._length += ids.shape[1]
        return np.asarray(outputs[0].numpy()[:, -1])

    def feeds(self, ids: np.ndarray) -> dict[str, Any]:
        """The graph's inputs for running ``ids`` (batch, length) on the cache as it is
        now: numpy arrays, and the cache's ORT values (bound, never copied)."""
        batch, new = ids.shape
        positions = np.arange(self._length, self._length + new, dtype=np.int64)
        feeds: dict[str, Any] = {
            "input_ids": np.ascontiguousarray(ids, dtype=np.int64),
            "attention_mask": np.ones((batch, self._length + new), np.int64),
            "position_ids": np.ascontiguousarray(np.broadcast_to(positions, ids.shape)),
        }
        feeds.update(zip(self.past_names, self._past, strict=True))
        return feeds

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.logits(ids).argmax(-1))

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Run the prompt (batch, length) on an empty cache; the next token of each row."""
        self.start(ids.shape[0])
        return self._forward(ids)

    def start(self, batch: int) -> None:
        """Empty the cache for ``batch`` new sequences (`prefill` starts with it)."""
        import onnxruntime as ort

        empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), self.cache_dtype)
        self._past = [ort.OrtValue.ortvalue_from_numpy(empty) for _ in self.past_names]
        self._length = 0

    def extend(self, ids: np.ndarray) -> np.ndarray:
        """Run more tokens (batch, length) on the cache; the next token of each row."""
        return self._forward(ids)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per row; the next token of each row."""
        return self._forward(tokens[:, None])

    def cache_bytes(self) -> int:
        """Bytes the cache values ORT holds now."""
        itemsize = self.cache_dtype.itemsize
        return sum(int(np.prod(value.shape())) * itemsize for value in self._past)

    def close(self) -> None:
        self._past = []
        if self.folder is not None:
            self.folder.cleanup()
            self.folder = None

    def phase_layer_timings(
        self, ids: np.ndarray, output_length: int, context: np.ndarray | None, runs: int
    ) -> tuple[list[LayerTiming], list[LayerTiming]]:
        """Per-layer timings of the prefill and of a decode step, one warm-up generation
        then ``runs``, each generation plain and timed call by call into `layer_times`.

        The inputs each generation's prefill and middle decode step (`middle_step`)
        were given are kept (their cache kept, not copied). A profiling copy of the
        session (same threads and optimisation) runs them after the generation; its
        kernels, each less the profiler's own per-kernel cost (`profiler_overhead`),
        split each block's time among the module paths they were exported from. After
        the generations, the graph cut into blocks (`decoder_blocks`: each decoder layer,
        the embeddings, the final norm, the head) runs as a chain on every kept call,
        each block's call timed alone in a plain session, the sessions sharing one
        thread pool in a process of their own (`time_blocks`). So each layer's
        time is its share of its block's plain time (one share per layer, `block_scaled`),
        and `layers_method` records each block's plain time over its kernels' net sum,
        the blocks' and kernels' sums and the pass's own seconds.

        Returns:
            (prefill, decode) `LayerTiming` lists, one sample per recorded generation;
            fused kernels on the first module they cover, as the onnxruntime backend's
            tables.
        """
        import shutil

        import onnx

        from workbench.backends.onnxruntime.decoder_blocks import time_blocks
        from workbench.backends.onnxruntime.options import intra_op_threads
        from workbench.backends.onnxruntime.plain import plain_session
        from workbench.backends.onnxruntime.trace import (
            less_overhead,
            map_kernels,
            optimized_graph,
            profiler_overhead,
            read_trace,
        )
        from workbench.loaders.onnx import model_from_proto

        threads = intra_op_threads(self.threads)
        # beside the decoder's own files, never in a folder the model brought
        where = Path(self.folder.name) if self.folder is not None else self.path.parent
        labelled = where / "layers.onnx"
        proto = onnx.load(str(self.path))
        label_modules(proto, self.modules, outer_scopes=self.outer_scopes)
        onnx.save(proto, str(labelled))
        steps = output_length - 1
        kept = middle_step(steps)
        clock = time.perf_counter
        self.layer_times, self.layers_method = [], {}
        calls: list[str] = []  # the phase of each call the profiler traced, in order
        blocks: dict[str, list[dict[str, float]]] = {"prefill": [], "decode": []}
        kept_calls: list[tuple[str, dict[str, Any]]] = []  # the chains' calls, for after
        pass_s = 0.0
        try:
            profiler = plain_session(labelled, threads=threads, profiling=True)
            for run in range(runs + 1):
                if context is not None:  # untimed, as in the plain generations
                    self.prefill(context)
                else:
                    self.start(ids.shape[0])
                saved = {"prefill": self.feeds(ids)}
                began = clock()
                token = self._forward(ids)
                times = [(clock() - began) * 1000.0]
                for step in range(1, output_length):
                    if step == kept:
                        saved["decode"] = self.feeds(token[:, None])
                    began = clock()
                    token = self._forward(token[:, None])
                    times.append((clock() - began) * 1000.0)
                began = clock()
                for phase, feeds in saved.items():
                    run_bound(profiler, feeds)
                    calls.append(phase if run else "warm-up")
                    if run:
                        kept_calls.append((phase, feeds))
                if run:
                    self.layer_times.append(times)
                    pass_s += clock() - began
            trace = profiler.end_profiling()
            began = clock()
            block_names, subgraphs, per_call = time_blocks(
                labelled, threads, [feeds for _, feeds in kept_calls], CHAIN_REPEATS
            )
            pass_s += clock() - began
            for (phase, _), block_ms in zip(kept_calls, per_call, strict=True):
                blocks[phase].append(block_ms)
        finally:
            labelled.unlink(missing_ok=True)
        try:
            raw = read_trace(trace)
        finally:  # the profiler wrote into a folder of its own
            shutil.rmtree(Path(trace).parent, ignore_errors=True)
        overhead = profiler_overhead(threads)
        net = less_overhead(raw, overhead.kernel_ms)
        node_map = map_kernels(
            proto,
            optimized_graph(model_from_proto(proto, "decoder"), "all", "CPUExecutionProvider"),
        )
        tables = {}
        for phase in ("prefill", "decode"):
            chosen = [k for k, c in enumerate(calls) if c == phase]
            tables[phase], scales = block_scaled(
                [raw[k] for k in chosen], [net[k] for k in chosen], blocks[phase], node_map
            )
            self.layers_method[phase] = {
                **kernel_sums([raw[k] for k in chosen], [net[k] for k in chosen]),
                "blocks_sum_ms": _median([sum(b.values()) for b in blocks[phase]]),
                "block_scale": scales,
            }
        self.layers_method.update(
            method="blocks",
            blocks=block_names,
            block_calls=subgraphs,
            decode_step=kept,
            decode_steps=steps,
            profiler_overhead_ms=overhead.kernel_ms,
            calibration=overhead.describe(),
            pass_s=pass_s,
        )
        self.notes.append(
            "per-layer tables: off the timed generations, on the inputs of each prefill"
            + (f" and of decode step {kept} of {steps}" if kept else "")
            + f"; {len(block_names)} blocks ({subgraphs} sub-graphs) timed in plain sessions "
            "sharing one thread pool (in a process of their own), each block's time split "
            "among its modules by ORT's node profiler "
            f"(kernels less {overhead.kernel_ms * 1e3:.2f} us each): the layers are scaled "
            f"per block (factors in layers_method); the pass took {pass_s:.2f} s beside "
            f"{runs} generation(s)"
        )
        return tables["prefill"], tables["decode"]


def run_bound(session: Any, feeds: dict[str, Any]) -> list[Any]:
    """One call of ``session`` on ``feeds`` (numpy arrays or ORT values, bound as they
    are), every output left in ORT on the CPU; the outputs as ORT values, in order."""
    binding = session.io_binding()
    for name, value in feeds.items():
        if isinstance(value, np.ndarray):
            binding.bind_cpu_input(name, value)
        else:
            binding.bind_ortvalue_input(name, value)
    for output in session.get_outputs():
        binding.bind_output(output.name, "cpu")
    session.run_with_iobinding(binding)
    return list(binding.get_outputs())


def block_scaled(
    raw: Sequence[TraceRun],
    net: Sequence[TraceRun],
    block_ms: Sequence[dict[str, float]],
    node_map: NodeMap,
) -> tuple[list[LayerTiming], dict[str, float]]:
    """Per-layer timings whose every sample is the layer's share of its block's plain
    time: each layer's share of its block is the median over the calls of its net
    kernels' part of the block's (``net``, less the profiler's cost; ``raw`` in a call
    whose block kernels net to 0), the medians made to add up to 1 within each block
    (`block_of`), and call i's sample is that share of ``block_ms[i][block]``. One share
    per layer, not one per call: the profiler's calls are noisy, and splitting each call
    apart let each layer's median come from another call, so a block's rows added up to
    less than its median time (llama-100m's prefill: 0.82 of it). A layer whose block was
    not timed keeps its net kernel time.

    Returns:
        (`LayerTiming` per layer in graph order, one sample per call; each block's
        median factor: its plain time over its net kernels' sum, or over its reported
        kernels' sum where that was used; 1.0 for a block not timed).
    """
    from workbench.backends.onnxruntime.decoder_blocks import block_of
    from workbench.backends.onnxruntime.trace import timings_from_runs

    if not net:
        return [], {}
    shares: dict[str, list[float]] = defaultdict(list)
    untimed: dict[str, list[float]] = defaultdict(list)
    factors: dict[str, list[float]] = defaultdict(list)
    first: list[LayerTiming] = []
    for raw_call, net_call, times in zip(raw, net, block_ms, strict=True):
        every = timings_from_runs([net_call], node_map)
        timings = [t for t in every if t.samples_ms]
        reported = {t.layer: sum(t.samples_ms) for t in timings_from_runs([raw_call], node_map)}
        first = first or every
        kernels: dict[str, float] = defaultdict(float)
        totals: dict[str, float] = defaultdict(float)
        for t in timings:
            kernels[block_of(t.layer)] += sum(t.samples_ms)
            totals[block_of(t.layer)] += reported.get(t.layer, 0.0)
        for t in timings:
            block = block_of(t.layer)
            if block not in times:
                untimed[t.layer].append(sum(t.samples_ms))
                factors[block].append(1.0)
            elif kernels[block] > 0:
                shares[t.layer].append(sum(t.samples_ms) / kernels[block])
                factors[block].append(times[block] / kernels[block])
            else:  # every kernel shorter than the profiler's cost: the reported shares
                total = totals[block]
                shares[t.layer].append(reported.get(t.layer, 0.0) / total if total else 0.0)
                factors[block].append(times[block] / total if total else 0.0)
    median_share = {layer: float(np.median(values)) for layer, values in shares.items()}
    block_sum: dict[str, float] = defaultdict(float)
    for layer, share in median_share.items():
        block_sum[block_of(layer)] += share
    samples: dict[str, tuple[float, ...]] = {
        layer: tuple(values) for layer, values in untimed.items()
    }
    for layer, share in median_share.items():
        block = block_of(layer)
        part = share / block_sum[block] if block_sum[block] > 0 else 0.0
        samples[layer] = tuple(part * times[block] for times in block_ms if block in times)
    scaled = [
        LayerTiming(t.layer, t.op_type, samples[t.layer], t.detail) if t.layer in samples else t
        for t in first
    ]
    return scaled, {block: float(np.median(f)) for block, f in factors.items()}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def kernel_sums(raw: Sequence[TraceRun], net: Sequence[TraceRun]) -> dict[str, Any]:
    """A phase's profiled calls: how many, the median call's kernels, and the median of
    their summed times as the profiler reported them (``raw``) and net of its own cost
    (``net``, the same calls after `less_overhead`), in ms; None where no call was."""
    return {
        "calls": len(net),
        "kernels_per_call": _median([len(t.events) for t in net]),
        "raw_sum_ms": _median([sum(e[3] for e in t.events) for t in raw]),
        "net_sum_ms": _median([sum(e[3] for e in t.events) for t in net]),
    }


def exported_decoder(model: Any, threads: int | None = None) -> OrtDecoder:
    """``model`` (a ``transformers`` causal LM) exported with its KV cache and loaded
    into ORT at the onnxruntime backend's defaults; never changes ``model``. A model
    with an ``onnx_decoder`` (a path: a language-model variant's pre-made decoder, in a
    folder of its own, as `workbench.optimize.lm_quantize` writes it) loads that file
    instead of exporting.

    The ONNX file lives in a temporary folder until the decoder is closed (its per-layer
    pass builds a profiling copy from it).

    Raises:
        UnsupportedModelError: ``model`` is not a causal LM.
        BackendError: torch.onnx could not export it.
    """
    from workbench.loaders.causal_lm import decoder_file

    exported = decoder_file(model)
    try:
        lm = exported.lm
        past, present = lm.cache_names
        dtype = {2: np.float16, 4: np.float32, 8: np.float64}[lm.cache_itemsize]
        decoder = OrtDecoder(
            exported.path,
            past,
            present,
            lm.kv_heads,
            lm.head_dim,
            dtype,
            threads,
            modules=exported.modules,
            outer_scopes=exported.outer_scopes,
        )
    except BaseException:
        exported.cleanup()
        raise
    decoder.folder = exported.folder
    return decoder
