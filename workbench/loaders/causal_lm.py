"""What generation knows of a ``transformers`` causal LM, and its ONNX decoder export.

`causal_lm` reads the facts generation needs from the model's config (layers, KV heads,
context, vocabulary, weight bytes); `export_decoder` writes the ONNX graph a runtime
generates with: inputs ``input_ids``, ``attention_mask``, ``position_ids`` and
``past.<layer>.key|value``, outputs ``logits`` (the last position only) and
``present.<layer>.key|value``. Both sit with the loaders (below every backend), so each
runtime's decoder reaches them without reaching into another runtime's package.
`load_causal_lm` reads a local ``transformers`` folder (safetensors only), for every
loader that needs the model a decoder came from. torch and transformers are imported
only inside the functions.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from workbench.errors import BackendError, ModelLoadError, UnsafeModelError, UnsupportedModelError

#: the last segment of the row that holds a layer's KV-cache write, under the attention
#: module that makes it (torch: the cache's ``update``; an exported decoder: the Concat
#: nodes that write ``present.*``), so the runtimes' phase tables align on it
CACHE_UPDATE = "cache_update"

if TYPE_CHECKING:
    import onnx
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
        past_name: how the ONNX decoder names a layer's past input, a format of
            ``layer`` and ``kind`` (``key``/``value``): ``past.{layer}.{kind}`` in the
            workbench's export, ``past_key_values.{layer}.{kind}`` in optimum's.
        present_name: the same for the present outputs (``present.{layer}.{kind}``).
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
    past_name: str = "past.{layer}.{kind}"
    present_name: str = "present.{layer}.{kind}"

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token of one sequence adds: K and V in every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.cache_itemsize

    @property
    def cache_names(self) -> tuple[list[str], list[str]]:
        """The ONNX decoder's past (input) and present (output) cache names, in order."""
        kinds = [(i, kv) for i in range(self.layers) for kv in ("key", "value")]
        return (
            [self.past_name.format(layer=i, kind=kv) for i, kv in kinds],
            [self.present_name.format(layer=i, kind=kv) for i, kv in kinds],
        )


def causal_lm(model: Any) -> CausalLM:
    """The facts of a ``transformers`` causal LM object (or of a model that carries
    them as ``lm_facts``, e.g. a `workbench.loaders.genai.GenaiModel`).

    Raises:
        UnsupportedModelError: the object is not a decoder-only ``transformers`` model
            that can generate (e.g. a plain ``nn.Module``, an encoder, a seq2seq model).
    """
    facts = getattr(model, "lm_facts", None)
    if isinstance(facts, CausalLM):  # a model a runtime loaded whole (an onnxruntime-genai
        return facts  # folder, `workbench.loaders.genai`): its facts come with it
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
    step = weights - lookup_only
    # a variant (`workbench.optimize.lm_quantize`) names itself, and when its runtime
    # holds the weights in another form (int4 in its ONNX decoder) says what they take
    stored = getattr(model, "stored_weights_bytes", None)
    if stored is not None:
        weights, step = stored
    return CausalLM(
        name=getattr(model, "variant_name", None) or type(model).__name__,
        layers=int(text.num_hidden_layers),
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=int(head_dim),
        context=int(context),
        vocab_size=int(text.vocab_size),
        cache_itemsize=first.element_size() if first is not None else 4,
        weights_bytes=weights,
        step_weights_bytes=step,
    )


def load_causal_lm(folder: str | Path) -> Any:
    """A ``transformers`` causal LM from a local folder, safetensors weights only.

    Raises:
        ModelLoadError: no such folder, no ``config.json``, or transformers cannot build it.
        UnsafeModelError: the weights are pickled (``*.bin``, ``*.pt``) rather than safetensors.
    """
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} is not a model folder (no config.json); give a transformers folder "
            "(config.json and *.safetensors)"
        )
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.glob("*") if p.suffix in {".bin", ".pt", ".pth"})
        if pickled:
            raise UnsafeModelError(
                f"{folder} holds pickled weights ({', '.join(pickled)}), which run code when "
                "loaded; convert them to safetensors"
            )
        raise ModelLoadError(f"{folder} has no *.safetensors weights")
    from workbench.loaders.thirdparty import transformers

    try:
        model = transformers().AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False, use_safetensors=True
        )
    except (OSError, ValueError, KeyError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise ModelLoadError(f"transformers cannot load {folder} as a causal LM: {first}") from exc
    return model.eval()


def cache_keyword(model: Any) -> str:
    """The keyword a model's ``forward`` takes its KV cache by."""
    # transformers 5 renamed ``past_key_values`` to ``cache`` (argument and output)
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def new_cache(model: Any, pairs: list[tuple[Any, Any]] | None = None) -> Any:
    """A ``transformers`` ``DynamicCache`` for ``model``: empty, or holding (key, value)
    pairs, one per layer."""
    from transformers import DynamicCache

    if pairs is None:
        return DynamicCache(config=model.config)
    return DynamicCache(ddp_cache_data=pairs, config=model.config)


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """The K and V tensors of a ``transformers`` cache, layer by layer."""
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return [t for pair in cache for t in pair]  # a legacy tuple of (key, value) pairs


def export_decoder(model: Any, path: str | Path, *, logits_to_keep: int = 1) -> CausalLM:
    """Export ``model`` as an ONNX decoder with past/present key-values (see module doc).

    Args:
        model: a ``transformers`` causal LM; not changed.
        path: the ONNX file to write.
        logits_to_keep: the positions whose logits come out, as ``transformers`` means
            it: 1, the last one (all generation needs); 0, every position (as optimum's
            export writes them).

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
            self.keyword = cache_keyword(model)

        def forward(
            self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any
        ) -> Any:
            pairs = [(past[2 * i], past[2 * i + 1]) for i in range(lm.layers)]
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                logits_to_keep=logits_to_keep,
                **{self.keyword: new_cache(self.model, pairs)},
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
        "logits": {0: "batch"} if logits_to_keep == 1 else {0: "batch", 1: "sequence"},
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


@dataclass
class DecoderFile:
    """An exported decoder on disk, as every runtime's decoder loads it (`decoder_file`).

    Attributes:
        path: the ONNX file (inputs and outputs as `export_decoder` names them).
        lm: the facts of the model it came from (cache names, heads, context, ...).
        modules: the model's module paths, the root first named after its class (a
            variant's after its reference's, so its tables align with the fp32 model's):
            the canonical layers `label_modules` puts nodes on.
        folder: a temporary folder of the decoder's own until `cleanup`: it holds the
            export, or what a runtime writes beside a file the model brought (e.g. a
            quantized variant's, which is never removed).
        outer_scopes: the node-name scopes before the model's own modules
            (`label_modules`): 1 in the workbench's export (its wrapper's attribute),
            0 in a graph exported from the model itself (optimum's).
    """

    path: Path
    lm: CausalLM
    modules: list[str]
    folder: tempfile.TemporaryDirectory[str] | None
    outer_scopes: int = 1

    def cleanup(self) -> None:
        """Remove the temporary folder (the file with it); a second call does nothing."""
        if self.folder is not None:
            self.folder.cleanup()
            self.folder = None


def decoder_file(model: Any) -> DecoderFile:
    """``model`` (a ``transformers`` causal LM) exported with its KV cache into a
    temporary folder (`export_decoder`); never changes ``model``. A model with an
    ``onnx_decoder`` (a path: a language-model variant's pre-made decoder, in a folder of
    its own, as `workbench.optimize.lm_quantize` writes it) gives that file instead, and a
    model that brings its own decoder file (a ``decoder_file()`` method: an optimum
    folder, `workbench.loaders.optimum`) gives what that returns.

    Raises:
        UnsupportedModelError: ``model`` is not a causal LM.
        BackendError: torch.onnx could not export it.
    """
    own = getattr(model, "decoder_file", None)
    if callable(own):
        return cast("DecoderFile", own())
    folder = tempfile.TemporaryDirectory(prefix="wb-decoder-")
    try:
        path = Path(folder.name) / "decoder.onnx"
        made = getattr(model, "onnx_decoder", None)
        if made is not None:
            path, lm = Path(made), causal_lm(model)
        else:
            lm = export_decoder(model, path)
        root = type(getattr(model, "reference", model)).__name__
        modules = [name or root for name, _ in model.named_modules()]
    except BaseException:
        folder.cleanup()
        raise
    return DecoderFile(path, lm, modules, folder)


def label_modules(
    proto: onnx.ModelProto, modules: Collection[str], *, outer_scopes: int = 1
) -> None:
    """Record each node's module path as its canonical layer (``workbench.layer``).

    torch's TorchScript exporter names a node after the module scopes it ran in,
    ``/<wrapper attribute>/<child>/.../<op>``; the path is the scopes after the
    ``outer_scopes`` outer ones (the workbench export's wrapper: 1; a graph exported from
    the model itself, as optimum's: 0), cut back to the deepest one in ``modules`` (the
    first entry is the root, named after its class, which holds what no module scope
    claims). A node that writes a ``present.*`` output (the cache's concatenation) goes
    on its own row, ``<module>.cache_update``, as the torch decoder's cache writes do.
    """
    from workbench.model import set_layer_name

    known = set(modules)
    root = next(iter(modules), "")
    present = {out.name for out in proto.graph.output if out.name.startswith("present.")}
    for node in proto.graph.node:
        scopes = node.name.split("/")[1 + outer_scopes : -1] if node.name.startswith("/") else []
        while scopes and ".".join(scopes) not in known:
            scopes.pop()
        layer = ".".join(scopes) or root
        if present.intersection(node.output):
            layer = f"{layer}.{CACHE_UPDATE}"
        set_layer_name(node, layer)


def graph_weight_bytes(proto: onnx.ModelProto, ids_input: str = "input_ids") -> tuple[int, int]:
    """(all weights, what a decode step reads) of an ONNX decoder, in bytes, from its
    initializers (external data by its recorded length, never read): the step leaves out
    an embedding only looked up (a Gather on ``ids_input`` and used by nothing else),
    as `CausalLM.step_weights_bytes` does."""
    import numpy as np
    from onnx import external_data_helper, helper

    sizes: dict[str, int] = {}
    for tensor in proto.graph.initializer:
        if external_data_helper.uses_external_data(tensor):
            info = {e.key: e.value for e in tensor.external_data}
            sizes[tensor.name] = int(info.get("length", 0))
        else:
            sizes[tensor.name] = len(tensor.raw_data) or int(
                np.prod(tensor.dims) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            )
    users: dict[str, list[str]] = {}
    for node in proto.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node.op_type)
    lookup = sum(
        sizes.get(node.input[0], 0)
        for node in proto.graph.node
        if node.op_type == "Gather"
        and len(node.input) > 1
        and node.input[1] == ids_input
        and users.get(node.input[0]) == ["Gather"]
    )
    weights = sum(sizes.values())
    return weights, weights - lookup
