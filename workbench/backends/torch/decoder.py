"""Token-by-token greedy decoding of a ``transformers`` causal LM in torch eager.

`TorchDecoder` is the torch backend's `Decoder` (`workbench.backends.base`): a prefill
call on the whole prompt, then one step per token, the KV cache kept between calls;
`workbench.profiling.generate` times each call. The model's facts (`causal_lm`) and its
ONNX decoder export (`export_decoder`) live in `workbench.loaders.causal_lm`, below every
backend, and are re-exported here.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import LayerTiming
from workbench.loaders.causal_lm import (
    CausalLM,
    cache_keyword,
    cache_tensors,
    causal_lm,
    export_decoder,
    new_cache,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch

__all__ = [
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
    depth) is run but never recorded.

    Returns:
        (prefill timings, decode timings), each as `torch_layer_timings` returns them
        (leaf, container and self rows; decode empty when ``output_length`` is 1).
    """
    from workbench.backends.torch.layers import HookRecorder, module_hooks

    def quiet() -> None:  # CPU: nothing to synchronise
        pass

    ignored, prefill, decode = (HookRecorder(sync=quiet) for _ in range(3))
    current = [ignored]
    model = decoder.model
    with module_hooks(model, lambda p: current[0].pre(p), lambda p: current[0].post(p)):
        for run in range(runs + 1):
            recorded = run > 0  # the first generation warms up
            current[0] = ignored
            if context is not None:
                decoder.prefill(context)
            current[0] = prefill if recorded else ignored
            if recorded:
                prefill.start_run()
            token = decoder.prefill(ids) if context is None else decoder.extend(ids)
            current[0] = decode if recorded else ignored
            for _ in range(output_length - 1):
                if recorded:
                    decode.start_run()
                token = decoder.step(token)
    phases = [recorder.timings(model) if recorder.inner else [] for recorder in (prefill, decode)]
    return phases[0], phases[1]
