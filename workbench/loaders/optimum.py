"""ONNX decoders exported by Hugging Face optimum, loaded as generation models.

``optimum-cli export onnx --task text-generation-with-past`` writes a folder with
``config.json``, ``generation_config.json``, the tokenizer's files and the decoder,
``model.onnx`` (older versions: ``decoder_model_merged.onnx``, read through its
with-cache branch, `cache_branch`; its weights may lie in ``model.onnx_data``). The
decoder takes ``input_ids``, ``attention_mask``, ``position_ids`` and
``past_key_values.<layer>.key|value`` and returns ``logits`` (every position) and
``present.<layer>.key|value``: the workbench's own export
(`workbench.loaders.causal_lm.export_decoder`) under other cache names. `load_optimum`
reads such a folder as an `OptimumModel`, whose facts name optimum's cache inputs, so
the onnxruntime and numba decoders run the file as it is
(``wb.generate_profile(m, backend="onnxruntime")``); the runtimes take the last
position's logits.

Trust: the folder is read as data. Untrusted, it may hold only JSON, ONNX (and its
external data), tokenizer and safetensors files, and the graph's external data must lie
inside the folder; anything else is refused in one line (`UnsafeModelError`), and
``trust=True`` lifts those refusals.

Example:
    >>> m = load_optimum("exported/my-llama-onnx", reference="my-llama")
    >>> g = wb.generate_profile(m, backend="onnxruntime", prompt_length=16)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import InputError, ModelLoadError, UnsafeModelError, UnsupportedModelError
from workbench.loaders.causal_lm import CausalLM, DecoderFile, graph_weight_bytes
from workbench.loaders.genai import DATA_SUFFIXES
from workbench.loaders.trust import check_data_folder, check_size

if TYPE_CHECKING:
    import onnx

#: the decoder file optimum writes, newest layout first
DECODER_FILES = ("model.onnx", "decoder_model_merged.onnx")
#: a legacy merged decoder's flag choosing its branch (`cache_branch`)
BRANCH_INPUT = "use_cache_branch"

#: how a refusal tells the user to opt in
OPT_IN = "pass trust=True to load_optimum (CLI: --trust) only if you trust its author"

#: file endings an untrusted folder may hold: data, never code
SUFFIXES = (*DATA_SUFFIXES, ".safetensors")

#: optimum's cache names, as `CausalLM.past_name` / `present_name` formats
PAST_NAME = "past_key_values.{layer}.{kind}"
PRESENT_NAME = "present.{layer}.{kind}"

#: the inputs besides the cache that the runtimes' decoders feed
STEP_INPUTS = ("input_ids", "attention_mask", "position_ids")


def decoder_onnx(folder: str | Path) -> Path | None:
    """The optimum decoder file in ``folder`` (see `DECODER_FILES`), or None."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        return None
    return next((path / n for n in DECODER_FILES if (path / n).is_file()), None)


class OptimumModel:
    """An optimum-exported ONNX decoder folder, ready for the onnxruntime and numba
    decoders.

    Attributes:
        folder: the model folder.
        path: its decoder file.
        lm_facts: layers, KV heads, head width, context, vocabulary, weight bytes and
            optimum's cache names.
        reference: the ``transformers`` model whose greedy tokens these are checked
            against, or None (no check; the profile says so).
        modules: the module paths the graph's node names carry, the root named after
            the config's architecture (the canonical layers of the per-layer tables).
        variant_name: the name its profiles carry.
        runtimes: the backends that generate from the file.
    """

    runtimes = ("onnxruntime", "numba")
    #: what a profile without a reference suggests
    reference_hint = "load_optimum(folder, reference=<its transformers model or folder>)"

    def __init__(
        self,
        folder: Path,
        path: Path,
        lm_facts: CausalLM,
        modules: list[str],
        reference: Any,
        *,
        legacy: bool = False,
    ) -> None:
        self.folder, self.path, self.legacy = folder, path, legacy
        self.lm_facts, self.modules, self.reference = lm_facts, modules, reference
        self._branch: Path | None = None  # a legacy file's cache branch, written once
        self.variant_name = lm_facts.name
        # where `model_tokenizer` finds the folder's tokenizer files
        self.name_or_path = str(folder)

    def decoder_file(self) -> DecoderFile:
        """The decoder as the runtimes load it: the folder's file, never changed or
        removed, with a temporary folder of its own for what a runtime writes."""
        scratch = tempfile.TemporaryDirectory(prefix="wb-decoder-")
        path = self._cache_branch() if self.legacy else self.path
        return DecoderFile(path, self.lm_facts, self.modules, scratch, outer_scopes=0)

    def _cache_branch(self) -> Path:
        """A legacy merged decoder's cache branch as a file of its own (`cache_branch`),
        written once per model into a folder that goes with it, never into the model's."""
        if self._branch is None:
            import onnx

            folder = Path(tempfile.mkdtemp(prefix="wb-optimum-"))
            weakref.finalize(self, shutil.rmtree, folder, True)
            merged = onnx.load(str(self.path))  # the folder's external data, read in
            onnx.save(cache_branch(merged, self.path.name), str(folder / "model.onnx"),
                      save_as_external_data=True, location="model.onnx_data")  # fmt: skip
            self._branch = folder / "model.onnx"
        return self._branch

    def __repr__(self) -> str:
        return f"OptimumModel({str(self.folder)!r})"


def load_optimum(
    folder: str | Path,
    *,
    trust: bool = False,
    reference: Any = None,
    max_bytes: int | None = None,
) -> OptimumModel:
    """An optimum text-generation-with-past export, checked under the trust rules.

    Args:
        folder: the folder with ``config.json`` and ``model.onnx`` (or
            ``decoder_model_merged.onnx``), and its tokenizer files when text is used.
        trust: lift the refusals of files that could carry code and of external data
            outside the folder (only if you trust the folder's author).
        reference: the ``transformers`` model (or its local folder) it was exported
            from, for the greedy-token check; None: the folder itself when it also holds
            ``*.safetensors`` weights, else no check.
        max_bytes: the largest file accepted (None: `MAX_MODEL_BYTES`).

    Raises:
        ModelLoadError: no such folder, no ``config.json`` or decoder file, a garbled
            config or graph, a config the graph does not match, a file over the size
            limit or missing external data.
        UnsafeModelError: untrusted, and the folder holds a file that is not data, or
            the graph's external data lies outside the folder.
        UnsupportedModelError: the graph is not a decoder with past key/values the
            runtimes can feed (a legacy merged decoder is read through its with-cache
            branch, `cache_branch`).
        InputError: the reference is not the model the graph was exported from.

    Example:
        >>> m = load_optimum("my-llama-onnx")
        >>> m.lm_facts.cache_names[0][:2]
        ['past_key_values.0.key', 'past_key_values.0.value']
    """
    import onnx

    from workbench.loaders.onnx import external_files
    from workbench.loaders.trust import MAX_MODEL_BYTES

    path = Path(folder)
    onnx_file = decoder_onnx(path)
    if onnx_file is None:
        raise ModelLoadError(
            f"{folder} is not an optimum decoder folder (config.json and "
            f"{' or '.join(DECODER_FILES)}); export one with optimum-cli export onnx "
            "--task text-generation-with-past"
        )
    if not trust:
        check_data_folder(path, SUFFIXES, "an optimum decoder folder", OPT_IN)
    limit = MAX_MODEL_BYTES if max_bytes is None else max_bytes
    for file in path.iterdir():
        if file.is_file():
            check_size(file, limit)
    try:
        config = json.loads((path / "config.json").read_text())
        proto = onnx.load(str(onnx_file), load_external_data=False)
    except Exception as exc:  # json and onnx raise many kinds: one line
        first = " ".join(str(exc).split())[:200]
        raise ModelLoadError(f"cannot read {folder} as an optimum decoder: {first}") from exc
    for tensor, location, target in external_files(proto, path):
        if not trust and not target.is_relative_to(path.resolve()):
            raise UnsafeModelError(
                f"{onnx_file.name} reads tensor {tensor!r} from {location!r}, outside "
                f"{folder}; {OPT_IN}"
            )
        if not target.is_file():
            raise ModelLoadError(f"{onnx_file.name}'s external data {location!r} is missing")
    legacy = BRANCH_INPUT in {v.name for v in proto.graph.input}
    if legacy:
        proto = cache_branch(proto, onnx_file.name)
    lm = _facts(path, onnx_file, config, proto)
    root = str((config.get("architectures") or ["model"])[0])
    model = OptimumModel(path, onnx_file, lm, _module_paths(proto, root), None, legacy=legacy)
    model.reference = _reference(model, reference)
    return model


def _facts(
    folder: Path, onnx_file: Path, config: dict[str, Any], proto: onnx.ModelProto
) -> CausalLM:
    """What generation needs, from the config, checked against the graph's inputs."""
    import numpy as np
    from onnx import helper

    text = config.get("text_config") or config
    try:
        heads = int(text["num_attention_heads"])
        layers = int(text["num_hidden_layers"])
        kv_heads = int(text.get("num_key_value_heads") or heads)
        head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
        context = int(text["max_position_embeddings"])
        vocab = int(text["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(
            f"{folder / 'config.json'} lacks or garbles {exc}: generation needs the layers, "
            "heads, context and vocabulary of a causal LM"
        ) from exc
    inputs = {v.name: v for v in proto.graph.input}
    lm = CausalLM(
        name=f"{folder.name} optimum",
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context=context,
        vocab_size=vocab,
        cache_itemsize=4,
        weights_bytes=0,
        step_weights_bytes=0,
        past_name=PAST_NAME,
        present_name=PRESENT_NAME,
    )
    past, present = lm.cache_names
    outputs = {v.name for v in proto.graph.output}
    missing = [n for n in (*STEP_INPUTS, *past) if n not in inputs]
    missing += [n for n in ("logits", *present) if n not in outputs]
    extra = sorted(set(inputs) - {*STEP_INPUTS, *past} - {i.name for i in proto.graph.initializer})
    if missing or extra:
        wrong = (
            f"lacks {', '.join(missing[:4])}" if missing else f"also takes {', '.join(extra[:4])}"
        )
        raise UnsupportedModelError(
            f"{onnx_file.name} {wrong}: not a decoder with past key/values for the "
            f"{layers} layers of its config.json (optimum-cli export onnx --task "
            "text-generation-with-past)"
        )
    cache = inputs[past[0]].type.tensor_type
    dims = [d.dim_value or None for d in cache.shape.dim]
    if len(dims) != 4 or dims[1] not in (None, kv_heads) or dims[3] not in (None, head_dim):
        raise ModelLoadError(
            f"{onnx_file.name}'s cache is {dims}, not (batch, {kv_heads}, length, {head_dim}) "
            "as its config.json says: the two do not belong together"
        )
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(cache.elem_type)).itemsize
    weights, step = graph_weight_bytes(proto)
    return replace(lm, cache_itemsize=itemsize, weights_bytes=weights, step_weights_bytes=step)


def cache_branch(proto: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """A legacy merged decoder's with-cache branch as a decoder of its own.

    Older optimum versions wrote ``decoder_model_merged.onnx``: an ``If`` on a
    ``use_cache_branch`` input choosing between the decoder without a cache (the first
    pass) and the one with it. The with-cache branch also runs the first pass, on a cache
    of length 0 (as current exports do), so that branch alone is the decoder: its nodes
    take the ``If``'s place (reading the outer graph's inputs and weights, as they did),
    their outputs renamed to the ``If``'s, and ``use_cache_branch`` is dropped. ``proto``
    is not changed.

    Raises:
        UnsupportedModelError: ``use_cache_branch`` feeds anything but one ``If``.
    """
    from onnx import helper

    graph = proto.graph
    users = [n for n in graph.node if BRANCH_INPUT in n.input]
    if len(users) != 1 or users[0].op_type != "If" or users[0].input[0] != BRANCH_INPUT:
        raise UnsupportedModelError(
            f"{name} has a {BRANCH_INPUT} input that does not choose one If's branch: not a "
            "merged decoder the workbench can read; re-export with a current optimum"
        )
    (branch_node,) = users
    branch = next(a.g for a in branch_node.attribute if a.name == "then_branch")
    renames = [
        helper.make_node("Identity", [inner.name], [outer], name=f"/{BRANCH_INPUT}/{outer}")
        for inner, outer in zip(branch.output, branch_node.output, strict=True)
        if inner.name != outer
    ]
    nodes = []
    for node in graph.node:
        nodes.extend([*branch.node, *renames] if node is branch_node else [node])
    new = helper.make_graph(
        nodes,
        graph.name,
        [v for v in graph.input if v.name != BRANCH_INPUT],
        list(graph.output),
        initializer=[*graph.initializer, *branch.initializer],
        value_info=[*graph.value_info, *branch.value_info],
    )
    out = helper.make_model(new, opset_imports=list(proto.opset_import))
    out.ir_version = proto.ir_version
    return out


def _module_paths(proto: onnx.ModelProto, root: str) -> list[str]:
    """The module paths in the graph's node names (``/model/layers.0/mlp/MatMul`` has
    ``model``, ``model.layers.0``, ``model.layers.0.mlp``), the root first."""
    paths: set[str] = set()
    for node in proto.graph.node:
        if node.name.startswith("/"):
            scopes = node.name.split("/")[1:-1]
            paths.update(".".join(scopes[:i]) for i in range(1, len(scopes) + 1))
    return [root, *sorted(paths - {root})]


def _reference(model: OptimumModel, reference: Any) -> Any:
    """The ``transformers`` model to check tokens against (see `load_optimum`)."""
    from workbench.loaders.causal_lm import causal_lm, load_causal_lm

    if reference is None:
        if not any(model.folder.glob("*.safetensors")):
            return None
        reference = model.folder
    if isinstance(reference, (str, Path)):
        reference = load_causal_lm(reference)
    facts, lm = causal_lm(reference), model.lm_facts
    if (facts.layers, facts.vocab_size, facts.kv_heads) != (lm.layers, lm.vocab_size, lm.kv_heads):
        raise InputError(
            f"the reference {facts.name} ({facts.layers} layers, vocabulary "
            f"{facts.vocab_size}) is not the model {model.folder} was exported from "
            f"({lm.layers} layers, vocabulary {lm.vocab_size})"
        )
    return reference
