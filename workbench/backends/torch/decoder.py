"""Token-by-token greedy decoding of a ``transformers`` causal LM in torch eager.

`TorchDecoder` is the torch backend's `Decoder` (`workbench.backends.base`): a prefill
call on the whole prompt, then one step per token, the KV cache kept between calls;
`workbench.profiling.generate` times each call. The model's facts (`causal_lm`) and its
ONNX decoder export (`export_decoder`) live in `workbench.loaders.causal_lm`, below every
backend, and are re-exported here.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import LayerTiming
from workbench.loaders.causal_lm import (
    CACHE_UPDATE,
    CausalLM,
    cache_keyword,
    cache_tensors,
    causal_lm,
    export_decoder,
    new_cache,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import torch

__all__ = [
    "CACHE_UPDATE",
    "CausalLM",
    "TorchDecoder",
    "cache_tensors",
    "causal_lm",
    "export_decoder",
    "phase_layer_timings",
]


class TorchDecoder:
    """Greedy decoding in torch eager, one call per phase, the cache kept in between.

    Example:
        >>> d = TorchDecoder(model)
        >>> first = d.prefill(prompt_ids)  # (batch,) next tokens
        >>> second = d.step(first)
    """

    def __init__(self, model: Any, threads: int | None = None) -> None:
        import torch

        from workbench.backends.cpus import default_threads

        self.model = model
        #: what each call runs: the model itself here, its compiled copy in torch-compile's
        self.call: Any = model
        # the torch backend's own default, as its sessions run: torch's count capped by
        # the free CPUs (OpenMP threads waiting on a busy core cost 10-100x)
        self.threads = threads or default_threads(torch.get_num_threads())
        self._keyword = cache_keyword(model)
        self._cache: Any = None
        self._length = 0
        #: called with every new cache (the per-layer pass times its updates)
        self.on_new_cache: Callable[[Any], None] | None = None
        #: the per-layer pass's own generations, timed as the plain ones are ([TTFT,
        #: step, ...] per recorded generation, ms): what the instruments cost
        self.layer_times: list[list[float]] = []

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """Apply `threads` process-wide while inside (torch has no per-decoder count);
        the count before is restored on exit. `generate_profile` enters it around the
        timed generations (the optional ``settings`` of the `Decoder` protocol)."""
        import torch

        before = torch.get_num_threads()
        if before == self.threads:
            yield
            return
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _forward(self, ids: torch.Tensor) -> np.ndarray:
        import torch

        positions = torch.arange(self._length, self._length + ids.shape[1]).expand(ids.shape[0], -1)
        with torch.inference_mode():
            out = self.call(
                input_ids=ids,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,  # as generate() does: lm_head on the last position only
                **{self._keyword: self._cache},
            )
        self._cache = getattr(out, self._keyword)
        self._length += ids.shape[1]
        return np.asarray(out.logits[:, -1].argmax(-1))

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Run the prompt (batch, length) on a new cache; the next token of each row."""
        import torch

        self._cache, self._length = new_cache(self.model), 0
        if self.on_new_cache is not None:
            self.on_new_cache(self._cache)
        return self._forward(torch.from_numpy(ids))

    def extend(self, ids: np.ndarray) -> np.ndarray:
        """Run more tokens (batch, length) on the cache; the next token of each row."""
        import torch

        return self._forward(torch.from_numpy(ids))

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per row; the next token of each row."""
        return self.extend(tokens[:, None])

    def cache_bytes(self) -> int:
        """Bytes the cache tensors hold now."""
        return sum(t.numel() * t.element_size() for t in cache_tensors(self._cache))

    def close(self) -> None:
        self._cache = None

    def phase_layer_timings(
        self, ids: np.ndarray, output_length: int, context: np.ndarray | None, runs: int
    ) -> tuple[list[LayerTiming], list[LayerTiming]]:
        """Per-module timings of the prefill and of one decode step (`phase_layer_timings`),
        the optional per-layer method of the `Decoder` protocol."""
        return phase_layer_timings(self, ids, output_length, context, runs)


def phase_layer_timings(
    decoder: TorchDecoder,
    ids: np.ndarray,
    output_length: int,
    context: np.ndarray | None,
    runs: int,
) -> tuple[list[LayerTiming], list[LayerTiming]]:
    """Per-module timings of the prefill and of the decode steps, kept apart.

    The forward hooks of `torch_layer_timings` time every module; one warm-up generation
    first, then ``runs`` instrumented generations. A prefill is one sample of the prefill
    phase; each decode step is one sample of the decode phase. A ``context`` prefill (the
    depth) is run but never recorded. Each layer's KV-cache write (the cache's ``update``,
    called by the attention module) is timed too, as its own row
    ``<attention path>.cache_update`` (`CACHE_UPDATE`), taken out of the attention
    module's own-code row, so the rows still add up to the same time. Every recorded
    call is also timed whole, hooks and all, into ``decoder.layer_times`` (what the
    breakdown costs, against the plain generations).

    Returns:
        (prefill timings, decode timings), each as `torch_layer_timings` returns them
        (leaf, container and self rows, plus the cache-update rows; decode empty when
        ``output_length`` is 1).
    """
    from workbench.backends.torch.layers import HookRecorder, module_hooks

    def quiet() -> None:  # CPU: nothing to synchronise
        pass

    ignored, prefill, decode = (HookRecorder(sync=quiet) for _ in range(3))
    current = [ignored]
    # per recorder and run: the cache writes' time under each calling module's path
    updates: dict[int, list[dict[str, float]]] = {id(prefill): [], id(decode): []}

    def timed_updates(cache: Any) -> None:
        update = cache.update

        def timed(*args: Any, **kwargs: Any) -> Any:
            recorder = current[0]
            start = time.perf_counter()
            try:
                return update(*args, **kwargs)
            finally:
                runs_of = updates.get(id(recorder))
                if recorder.recording and runs_of and recorder.open:
                    caller = recorder.open[-1][0]
                    spent = (time.perf_counter() - start) * 1e3
                    runs_of[-1][caller] = runs_of[-1].get(caller, 0.0) + spent

        cache.update = timed

    def start(recorder: HookRecorder) -> None:
        recorder.start_run()
        updates[id(recorder)].append({})

    model = decoder.model
    clock = time.perf_counter
    decoder.on_new_cache = timed_updates
    decoder.layer_times = []
    try:
        with module_hooks(model, lambda p: current[0].pre(p), lambda p: current[0].post(p)):
            for run in range(runs + 1):
                recorded = run > 0  # the first generation warms up
                current[0] = ignored
                if context is not None:
                    decoder.prefill(context)
                current[0] = prefill if recorded else ignored
                if recorded:
                    start(prefill)
                began = clock()
                token = decoder.prefill(ids) if context is None else decoder.extend(ids)
                times = [(clock() - began) * 1000.0]
                current[0] = decode if recorded else ignored
                for _ in range(output_length - 1):
                    if recorded:
                        start(decode)
                    began = clock()
                    token = decoder.step(token)
                    times.append((clock() - began) * 1000.0)
                if recorded:
                    decoder.layer_times.append(times)
    finally:
        decoder.on_new_cache = None
    phases = [
        with_cache_updates(recorder.timings(model), updates[id(recorder)]) if recorder.inner else []
        for recorder in (prefill, decode)
    ]
    return phases[0], phases[1]


def with_cache_updates(
    timings: list[LayerTiming], updates: list[dict[str, float]]
) -> list[LayerTiming]:
    """``timings`` with a ``<caller>.cache_update`` row after each caller's own-code row,
    whose samples (one per run, from ``updates``) are taken out of that row."""
    callers = {path for run in updates for path in run}
    result = []
    for timing in timings:
        path = timing.layer
        if path not in callers or timing.detail.get("scope") == "container":
            result.append(timing)
            continue
        spent = tuple(run.get(path, 0.0) for run in updates)
        own = tuple(max(0.0, a - b) for a, b in zip(timing.samples_ms, spent, strict=True))
        result.append(LayerTiming(path, timing.op_type, own, timing.detail))
        detail = {
            "scope": "leaf",
            "parent": path,
            "note": "the KV cache's write (the cache's update: a concatenation)",
        }
        result.append(LayerTiming(f"{path}.{CACHE_UPDATE}", "CacheUpdate", spent, detail))
    return result
