"""Greedy token-by-token generation in onnxruntime-genai: the ``genai`` backend's `Decoder`.

Each call is one of onnxruntime-genai's own: `GenaiDecoder.prefill` is ``append_tokens``
(the prompt's forward pass) and ``generate_next_token`` (the greedy pick), as its own
benchmark counts the time to first token; each `GenaiDecoder.step` is one
``generate_next_token``, which feeds the token picked before and picks the next. A token
other than the one it picked (and `GenaiDecoder.extend`, which drops the picked token
first) is fed by rewinding one token, which onnxruntime-genai allows at batch 1 only.

The cache is onnxruntime-genai's: one buffer per layer of the generation's full length
(``max_length``), allocated with the generator and written in place. `prepare` sizes it
to the generation about to run (as a user sets ``max_length``); without it, the model's
context. `cache_bytes` reads the buffers' shapes, so it counts what is allocated.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import InputError
from workbench.loaders.genai import GenaiModel


class GenaiDecoder:
    """An onnxruntime-genai model folder generating greedily on the CPU.

    Args:
        model: the folder (`workbench.loaders.genai.GenaiModel`).
        threads: intra-op threads (None: ORT's own count, one per physical core, capped
            by the free CPUs, as the onnxruntime backend's sessions run).
    """

    #: onnxruntime-genai holds its own copy of the weights (the memory split's rest
    #: leaves it out)
    weights_copied = True

    def __init__(self, model: GenaiModel, threads: int | None = None) -> None:
        import onnxruntime_genai as og

        self.threads = threads or _default_threads()
        config = og.Config(str(model.folder))
        config.clear_providers()  # the CPU
        options = {"intra_op_num_threads": self.threads}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.og = og
        self.model = og.Model(config)
        self.facts = model.lm_facts
        self.max_length = self.facts.context
        names = model.config["model"]["decoder"]["outputs"]
        self.present_names = [
            names[kind] % i
            for i in range(self.facts.layers)
            for kind in ("present_key_names", "present_value_names")
        ]
        #: removed on `close` when this decoder built the folder itself
        self.folder: tempfile.TemporaryDirectory[str] | None = None
        self.notes: tuple[str, ...] = ()
        self._generator: Any = None
        self._picked: np.ndarray | None = None

    def prepare(self, ids: np.ndarray, output_length: int, context: np.ndarray | None) -> None:
        """Size the cache to the generation about to run: depth + prompt + output."""
        depth = 0 if context is None else context.shape[1]
        self.max_length = min(self.facts.context, depth + ids.shape[1] + output_length)

    def _pick(self) -> np.ndarray:
        self._generator.generate_next_token()
        self._picked = np.asarray(self._generator.get_next_tokens(), dtype=np.int64)
        return self._picked

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Run the prompt (batch, length) on a new generator; the next token of each row."""
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(
            max_length=self.max_length, do_sample=False, batch_size=int(ids.shape[0])
        )
        self._generator = self.og.Generator(self.model, params)
        self._generator.append_tokens(np.ascontiguousarray(ids, dtype=np.int32))
        return self._pick()

    def _unpick(self, why: str) -> None:
        """Drop the token picked last (not fed yet), so other tokens can be fed."""
        if self._picked is not None and self._picked.shape[0] > 1:
            raise InputError(
                f"onnxruntime-genai rewinds at batch 1 only: {why} at batch "
                f"{self._picked.shape[0]} is not supported; use batch 1 or backend='onnxruntime'"
            )
        self._generator.rewind_to(self._generator.token_count() - 1)

    def extend(self, ids: np.ndarray) -> np.ndarray:
        """Run more tokens (batch, length) on the cache; the next token of each row."""
        self._unpick("running more tokens on a cache (depth)")
        self._generator.append_tokens(np.ascontiguousarray(ids, dtype=np.int32))
        return self._pick()

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per row; the next token of each row."""
        if self._picked is not None and np.array_equal(tokens, self._picked):
            return self._pick()  # feeds the picked token and picks the next
        self._unpick("feeding a token other than the one it picked")
        self._generator.append_tokens(np.ascontiguousarray(tokens[:, None], dtype=np.int32))
        return self._pick()

    def cache_bytes(self) -> int:
        """Bytes of the cache buffers the generator allocated (its full length)."""
        if self._generator is None:
            return 0
        total = 0
        for name in self.present_names:
            value = self._generator.get_output(name)
            total += int(np.prod(value.shape)) * value.dtype.itemsize
        return total

    def close(self) -> None:
        self._generator = None
        self._picked = None
        self.model = None
        if self.folder is not None:
            self.folder.cleanup()
            self.folder = None


def _default_threads() -> int:
    import os

    import psutil

    from workbench.backends.cpus import default_threads

    return default_threads(int(psutil.cpu_count(logical=False) or os.cpu_count() or 1))


def genai_decoder(model: Any, threads: int | None = None) -> GenaiDecoder:
    """A `GenaiDecoder` of a `GenaiModel`, or of a ``transformers`` causal LM built first
    (fp32, `genai_build`) into a temporary folder the decoder removes on `close`."""
    import time

    from workbench.loaders.genai import genai_build

    if isinstance(model, GenaiModel):
        return GenaiDecoder(model, threads)
    from workbench.loaders.tokenizers import HFTokenizer, model_tokenizer

    # the builder needs a tokenizer; without the model's own, a byte-level one stands in
    # (the prompt's ids reach the model as they are: the workbench tokenizes, not genai)
    source = getattr(getattr(model, "config", None), "_name_or_path", "")
    tokenizer = source if isinstance(model_tokenizer(model), HFTokenizer) else "bytes"
    folder = tempfile.TemporaryDirectory(prefix="wb-genai-decoder-")
    try:
        started = time.perf_counter()
        built = genai_build(model, Path(folder.name) / "model", tokenizer=tokenizer)
        took = time.perf_counter() - started
        decoder = GenaiDecoder(built, threads)
    except BaseException:
        folder.cleanup()
        raise
    decoder.folder = folder
    decoder.notes = (
        f"built with onnxruntime-genai's model builder (fp32, CPU) in {took:.1f} s before "
        "timing, in no number",
    )
    return decoder
