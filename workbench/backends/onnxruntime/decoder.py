"""Greedy decoding of an exported ONNX decoder (`workbench.loaders.causal_lm.export_decoder`)
in ONNX Runtime, the KV cache kept inside ORT between steps: the onnxruntime backend's
`Decoder` (`workbench.backends.base`), built by `exported_decoder`.

Each call runs through an IOBinding: the ``present`` values ORT returns stay ORT values
and are bound as the next step's ``past`` inputs, so no step copies the cache to numpy
and back. Only the last position's logits come out (batch × vocabulary) for the argmax.
The graph concatenates the cache, so each step's present is a new buffer ORT allocates;
a preallocated cache updated in place is not done here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np


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
    ) -> None:
        from workbench.backends.onnxruntime.options import intra_op_threads
        from workbench.backends.onnxruntime.plain import plain_session

        # the onnxruntime backend's own defaults, so a decoder runs as a profile's session does
        self.session = plain_session(Path(path), threads=intra_op_threads(threads))
        self.weights_copied = True
        self.past_names, self.present_names = past_names, present_names
        self.kv_heads, self.head_dim = kv_heads, head_dim
        self.cache_dtype = np.dtype(cache_dtype)
        self._past: list[Any] = []
        self._length = 0

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        batch, new = ids.shape
        binding = self.session.io_binding()
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
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self._past = list(outputs[1:])
        self._length += new
        return np.asarray(outputs[0].numpy()[:, -1].argmax(-1))

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Run the prompt (batch, length) on an empty cache; the next token of each row."""
        import onnxruntime as ort

        empty = np.zeros((ids.shape[0], self.kv_heads, 0, self.head_dim), self.cache_dtype)
        self._past = [ort.OrtValue.ortvalue_from_numpy(empty) for _ in self.past_names]
        self._length = 0
        return self._forward(ids)

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


def exported_decoder(model: Any, threads: int | None = None) -> OrtDecoder:
    """``model`` (a ``transformers`` causal LM) exported with its KV cache and loaded
    into ORT at the onnxruntime backend's defaults; never changes ``model``.

    The ONNX file lives in a temporary folder only until the session has read it.

    Raises:
        UnsupportedModelError: ``model`` is not a causal LM.
        BackendError: torch.onnx could not export it.
    """
    from workbench.loaders.causal_lm import export_decoder

    with tempfile.TemporaryDirectory(prefix="wb-decoder-") as folder:
        path = Path(folder) / "decoder.onnx"
        lm = export_decoder(model, path)
        past, present = lm.cache_names
        dtype = {2: np.float16, 4: np.float32, 8: np.float64}[lm.cache_itemsize]
        return OrtDecoder(path, past, present, lm.kv_heads, lm.head_dim, dtype, threads)
