"""Token-by-token greedy decoding of a ``transformers`` causal LM, and its ONNX export.

A decoder runs a prefill call (the whole prompt) and then one step per token, keeping the
KV cache between calls; `workbench.profiling.generate` times each call. `export_decoder`
writes the ONNX graph `workbench.backends.onnxruntime.decoder.OrtDecoder` runs: inputs
``input_ids``, ``attention_mask``, ``position_ids`` and ``past.<layer>.key|value``, outputs
``logits`` (the last position only) and ``present.<layer>.key|value``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import LayerTiming
from workbench.errors import BackendError, UnsupportedModelError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CausalLM:
    """What generation needs to know of a causal LM, read from its config.

    Attributes:
        name: the model's class name.
        layers: decoder layers (one K and one V cache tensor each).
        kv_heads: key/value heads (fewer than attention heads under grouped-query attention).
        head_dim: width of one head.
        context: the longest sequence (prompt + output) the model's positions cover.
        vocab_size: rows of the embedding; every token id must be below it.
        cache_itemsize: bytes of one cached element (the dtype of the weights).
        weights_bytes: bytes of the distinct parameter tensors (tied weights counted once).
        step_weights_bytes: the weight bytes one decode step reads: all of them but an
            input embedding table not shared with the output head (a step reads one row
            of it per sequence, counted with the activations, i.e. not at all).
    """

    name: str
    layers: int
    kv_heads: int
    head_dim: int
    context: int
    vocab_size: int
    cache_itemsize: int
    weights_bytes: int
    step_weights_bytes: int

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token of one sequence adds: K and V in every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.cache_itemsize

    @property
    def cache_names(self) -> tuple[list[str], list[str]]:
        """The exported graph's past (input) and present (output) cache names, in order."""
        kinds = [(i, kv) for i in range(self.layers) for kv in ("key", "value")]
        return [f"past.{i}.{kv}" for i, kv in kinds], [f"present.{i}.{kv}" for i, kv in kinds]


def causal_lm(model: Any) -> CausalLM:
    """The facts of a ``transformers`` causal LM object.

    Raises:
        UnsupportedModelError: the object is not a decoder-only ``transformers`` model
            that can generate (e.g. a plain ``nn.Module``, an encoder, a seq2seq model).
    """
    config = getattr(model, "config", None)
    can_generate = getattr(model, "can_generate", None)
    if (
        config is None
        or not callable(can_generate)
        or not can_generate()
        or getattr(config, "is_encoder_decoder", False)
    ):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a causal language model; give a transformers "
            "decoder-only model (e.g. LlamaForCausalLM or AutoModelForCausalLM.from_pretrained)"
        )
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    context = getattr(text, "max_position_embeddings", None)
    if not context:
        raise UnsupportedModelError(
            f"{type(model).__name__}'s config has no max_position_embeddings; "
            "generation needs the model's context length"
        )
    params = {id(p): p for p in model.parameters()}.values()
    first = next(iter(params), None)
    weights = sum(p.numel() * p.element_size() for p in params)
    embedding = getattr(model.get_input_embeddings(), "weight", None)
    head = getattr(model.get_output_embeddings(), "weight", None)
    lookup_only = (
        0
        if embedding is None or embedding is head
        else embedding.numel() * embedding.element_size()
    )
    return CausalLM(
        name=type(model).__name__,
        layers=int(text.num_hidden_layers),
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=int(head_dim),
        context=int(context),
        vocab_size=int(text.vocab_size),
        cache_itemsize=first.element_size() if first is not None else 4,
        weights_bytes=weights,
        step_weights_bytes=weights - lookup_only,
    )


def _cache_keyword(model: Any) -> str:
    # transformers 5 renamed ``past_key_values`` to ``cache`` (argument and output)
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _new_cache(model: Any, pairs: list[tuple[Any, Any]] | None = None) -> Any:
    from transformers import DynamicCache

    if pairs is None:
        return DynamicCache(config=model.config)
    return DynamicCache(ddp_cache_data=pairs, config=model.config)


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """The K and V tensors of a ``transformers`` cache, layer by layer."""
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return [t for pair in cache for t in pair]  # a legacy tuple of (key, value) pairs


class TorchDecoder:
    """Greedy decoding in torch eager, one call per phase, the cache kept in between.

    Example:
        >>> d = TorchDecoder(model)
        >>> first = d.prefill(prompt_ids)  # (batch,) next tokens
        >>> second = d.step(first)
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._keyword = _cache_keyword(model)
        self._cache: Any = None
        self._length = 0

    def _forward(self, ids: torch.Tensor) -> np.ndarray:
        import torch

        positions = torch.arange(self._length, self._length + ids.shape[1]).expand(ids.shape[0], -1)
        with torch.inference_mode():
            out = self.model(
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

        self._cache, self._length = _new_cache(self.model), 0
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


def export_decoder(model: Any, path: str | Path) -> CausalLM:
    """Export ``model`` as an ONNX decoder with past/present key-values (see module doc).

    Raises:
        UnsupportedModelError: ``model`` is not a causal LM (see `causal_lm`).
        BackendError: torch.onnx could not export it (the exporter's message, one line).
    """
    import torch

    lm = causal_lm(model)
    past_names, present_names = lm.cache_names

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.keyword = _cache_keyword(model)

        def forward(
            self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any
        ) -> Any:
            pairs = [(past[2 * i], past[2 * i + 1]) for i in range(lm.layers)]
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                logits_to_keep=1,
                **{self.keyword: _new_cache(self.model, pairs)},
            )
            return (out.logits, *cache_tensors(getattr(out, self.keyword)))

    # traced at 2 new tokens after 3 cached ones so that neither length is specialised
    batch, new, cached = 1, 2, 3
    dtype = next(model.parameters()).dtype
    past = [torch.zeros(batch, lm.kv_heads, cached, lm.head_dim, dtype=dtype) for _ in past_names]
    example = (
        torch.zeros(batch, new, dtype=torch.long),
        torch.ones(batch, cached + new, dtype=torch.long),
        torch.arange(cached, cached + new)[None],
        *past,
    )
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "total"},
        "position_ids": {0: "batch", 1: "sequence"},
        "logits": {0: "batch"},
    }
    axes.update({name: {0: "batch", 2: "past"} for name in past_names})
    axes.update({name: {0: "batch", 2: "total"} for name in present_names})
    import warnings

    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's warnings on transformers' branches
            torch.onnx.export(
                Wrapper().eval(),
                example,
                str(path),
                input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                output_names=["logits", *present_names],
                dynamic_axes=axes,
                dynamo=False,
                opset_version=17,
            )
    except Exception as exc:  # the exporter raises many kinds; the user needs its one line
        first = " ".join(str(exc).split())[:300]
        raise BackendError(f"could not export {lm.name} to ONNX with a KV cache: {first}") from exc
    return lm


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
