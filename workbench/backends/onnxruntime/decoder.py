"""Greedy decoding of an exported ONNX decoder (`workbench.loaders.causal_lm.export_decoder`)
in ONNX Runtime, the KV cache kept inside ORT between steps: the onnxruntime backend's
`Decoder` (`workbench.backends.base`), built by `exported_decoder`.

Each call runs through an IOBinding: the ``present`` values ORT returns stay ORT values
and are bound as the next step's ``past`` inputs, so no step copies the cache to numpy
and back. Only the last position's logits come out (batch × vocabulary) for the argmax.
The graph concatenates the cache, so each step's present is a new buffer ORT allocates;
a preallocated cache updated in place is not done here.

Per-layer tables of each phase (`OrtDecoder.phase_layer_timings`) come from ORT's node
profiler on a profiling copy of the session: every kernel is mapped to the module path
the exporter recorded in its node's name (``/model/model/layers.0/self_attn/q_proj/MatMul``
is ``model.layers.0.self_attn.q_proj``), the names the torch decoder's tables use. The
copy shares the bound cache with this session and runs every prefill but only one decode
step in `PROFILE_EVERY`, consecutive ones in the middle of the decode (the rest run
plain), so the breakdown costs the decode phase little; each kernel's time is taken net
of the profiler's own per-kernel cost, measured on this machine
(`workbench.backends.onnxruntime.trace.profiler_overhead`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import LayerTiming
from workbench.loaders.causal_lm import label_modules

if TYPE_CHECKING:
    from workbench.backends.onnxruntime.trace import TraceRun

#: the per-layer pass profiles one decode step in this many (the others run plain)
PROFILE_EVERY = 8


def profiled_steps(steps: int, every: int = PROFILE_EVERY) -> list[int]:
    """The decode steps (1-based, of ``steps``) the per-layer pass profiles: one run of
    ``ceil(steps / every)`` consecutive steps in the middle of the decode.

    One run, not every ``every``-th step: each switch between the two sessions wakes
    the other's sleeping thread pool, so fewer switches cost less and leave fewer
    samples slowed by a wake; in the middle, the steps' cache lengths average the
    decode's.
    """
    if steps <= 0:
        return []
    count = -(-steps // every)
    first = (steps - count) // 2 + 1
    return list(range(first, first + count))


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
        self.profile_every = PROFILE_EVERY

    def logits(self, ids: np.ndarray, session: Any = None) -> np.ndarray:
        """Run more tokens (batch, length) on the cache (`start` empties it first); the
        last position's logits (batch × vocabulary), e.g. to score a variant's
        next-token distributions against its reference's. ``session``: another session
        of the same graph to run it on (the per-layer pass's profiling copy), the cache
        bound to it as it is to this one's."""
        batch, new = ids.shape
        session = self.session if session is None else session
        binding = session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
        binding.bind_cpu_input("attention_mask", np.ones((batch, self._length + new), np.int64))
        positions = np.arange(self._length, self._length + new, dtype=np.int64)
        binding.bind_cpu_input(
            "position_ids", np.ascontiguousarray(np.broadcast_to(positions, ids.shape))
        )
        for name, value in zip(self.past_names, self._past, strict=True):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.present_names:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self._past = list(outputs[1:])
        self._length += new
        return np.asarray(outputs[0].numpy()[:, -1])

    def _forward(self, ids: np.ndarray, session: Any = None) -> np.ndarray:
        return np.asarray(self.logits(ids, session).argmax(-1))

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
        """Per-layer timings of the prefill and of the decode steps from ORT's node
        profiler, one warm-up generation then ``runs``.

        A profiling copy of this session (same threads and optimisation, its nodes
        labelled with module paths) shares the bound cache: it runs every prefill and
        the decode steps `profiled_steps` picks (one in ``profile_every``, consecutive,
        in the middle), this session the other steps and any ``context`` prefill, so
        the instrumented generations' TPOT stays near the plain one's. Every call is
        timed whole into `layer_times` (what the breakdown costs). Each kernel's time is
        the profiler's reported time less its own per-kernel cost on this machine
        (`profiler_overhead`, floored at 0); `layers_method` records the calibration,
        the profiled steps and the kernels' sums before and after, and `notes` says so
        in words.

        Returns:
            (prefill, decode) `LayerTiming` lists: one sample per prefill / per profiled
            decode step, each kernel's time on the module path it was exported from
            (fused kernels on the first module they cover, as the onnxruntime backend's
            tables).
        """
        import shutil

        import onnx

        from workbench.backends.onnxruntime.options import intra_op_threads
        from workbench.backends.onnxruntime.plain import plain_session
        from workbench.backends.onnxruntime.trace import (
            less_overhead,
            map_kernels,
            optimized_graph,
            profiler_overhead,
            read_trace,
            timings_from_runs,
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
        chosen = set(profiled_steps(steps, self.profile_every))
        clock = time.perf_counter
        self.layer_times, self.layers_method = [], {}
        calls = []  # the phase of each call the profiler traced, in order
        try:
            profiler = plain_session(labelled, threads=threads, profiling=True)
            for run in range(runs + 1):
                began = clock()
                if context is None:
                    self.start(ids.shape[0])
                else:  # on the plain session: untimed, untraced
                    self.prefill(context)
                    began = clock()
                token = self._forward(ids, profiler)
                times = [(clock() - began) * 1000.0]
                calls.append("prefill" if run else "warm-up")
                for step in range(1, output_length):
                    traced = step in chosen
                    began = clock()
                    token = self._forward(token[:, None], profiler if traced else None)
                    times.append((clock() - began) * 1000.0)
                    if traced:
                        calls.append("decode" if run else "warm-up")
                if run:
                    self.layer_times.append(times)
            trace = profiler.end_profiling()
        finally:
            labelled.unlink(missing_ok=True)
        try:
            raw = read_trace(trace)
        finally:  # the profiler wrote into a folder of its own
            shutil.rmtree(Path(trace).parent, ignore_errors=True)
        overhead = profiler_overhead(threads)
        traced_runs = less_overhead(raw, overhead.kernel_ms)
        node_map = map_kernels(
            proto,
            optimized_graph(model_from_proto(proto, "decoder"), "all", "CPUExecutionProvider"),
        )
        phases = {}
        for phase in ("prefill", "decode"):
            phases[phase] = [t for t, c in zip(traced_runs, calls, strict=True) if c == phase]
            self.layers_method[phase] = kernel_sums(
                [t for t, c in zip(raw, calls, strict=True) if c == phase], phases[phase]
            )
        self.layers_method.update(
            profile_every=self.profile_every,
            profiled_steps=sorted(chosen),
            decode_steps=steps,
            profiler_overhead_ms=overhead.kernel_ms,
            calibration=overhead.describe(),
        )
        sampled = (
            f"every prefill and {len(chosen)} of {steps} decode steps profiled (one in "
            f"{self.profile_every}, steps {min(chosen)}-{max(chosen)}), the other steps plain "
            "on the same bound cache"
            if steps
            else "the prefill profiled (no decode step)"
        )
        self.notes.append(
            f"per-layer tables (ORT node profiler): {sampled}; each kernel's time less the "
            f"profiler's own cost, {overhead.describe()}"
        )
        prefill, decode = (timings_from_runs(p, node_map) if p else [] for p in phases.values())
        return prefill, decode


def kernel_sums(raw: Sequence[TraceRun], net: Sequence[TraceRun]) -> dict[str, Any]:
    """A phase's profiled calls: how many, the median call's kernels, and the median of
    their summed times as the profiler reported them (``raw``) and net of its own cost
    (``net``, the same calls after `less_overhead`), in ms; None where no call was."""

    def median(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    return {
        "calls": len(net),
        "kernels_per_call": median([len(t.events) for t in net]),
        "raw_sum_ms": median([sum(e[3] for e in t.events) for t in raw]),
        "net_sum_ms": median([sum(e[3] for e in t.events) for t in net]),
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
