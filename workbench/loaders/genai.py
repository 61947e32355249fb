"""onnxruntime-genai model folders: loaded under the trust rules, or built from a local
``transformers`` folder with onnxruntime-genai's model builder (no downloads).

An onnxruntime-genai model folder holds ``genai_config.json`` (the decoder's file, input
and output names, the search defaults), the ONNX decoder (``model.onnx``, its weights in
``model.onnx.data``) and the tokenizer's files. `load_genai` reads one as a `GenaiModel`,
which `wb.generate_profile(m, backend="genai")` times token by token;
`genai_build` makes one (``python -m onnxruntime_genai.models.builder``, fp32 or int4,
CPU) from a local folder with ``config.json`` and ``*.safetensors`` or from a
``transformers`` model object.

Trust: onnxruntime-genai reads JSON, ONNX graphs with their weights and tokenizer files,
none of which is code, so a folder holding only those (``*.json``, ``*.onnx``,
``*.onnx.data`` / ``*.data``, ``tokenizer.model``, ``*.txt``, ``*.tiktoken``) loads
untrusted. Untrusted, a folder is refused (`UnsafeModelError`, one line) when it holds
any other file (a native library, Python, a pickle: nothing onnxruntime-genai loads from
a clean folder, so its presence is a sign of code), when ``genai_config.json`` names a
custom-op library (``custom_ops_library``: native code that onnxruntime loads and runs),
or when it names a file outside the folder. ``trust=True`` lifts these refusals.

The package ``onnxruntime-genai`` is an optional extra: ``pip install
'inference-workbench[genai]'``; without it these functions say so in one line.

Example:
    >>> m = genai_build("sample_models/my-llama", "my-llama-genai", precision="int4")
    >>> g = wb.generate_profile(m, backend="genai", prompt_length=16, output_length=16)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from workbench.errors import (
    BackendError,
    InputError,
    ModelLoadError,
    ParameterError,
    UnsafeModelError,
    UnsupportedModelError,
)
from workbench.loaders.causal_lm import CausalLM, graph_weight_bytes
from workbench.loaders.trust import check_data_folder, check_size

#: how to install the optional runtime
GENAI_EXTRA = "pip install 'inference-workbench[genai]'"

#: how a refusal tells the user to opt in
OPT_IN = "pass trust=True to load_genai only if you trust its author"

#: precisions the builder writes for the CPU here
PRECISIONS = ("fp32", "int4")

#: file endings an untrusted folder may hold: data that onnxruntime-genai reads, never code
DATA_SUFFIXES = (".json", ".onnx", ".data", ".onnx_data", ".model", ".txt", ".tiktoken")

#: what `genai_build` writes beside the builder's files: where the model came from
BUILD_RECORD = "workbench_build.json"

#: the builder's CPU attention (GroupQueryAttention with its rotary embedding) needs
#: heads this wide (a multiple): other widths compute wrong tokens or fail at run time
HEAD_MULTIPLE = 16


def genai_unavailable() -> str | None:
    """Why onnxruntime-genai cannot be used here, or None when it can."""
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return f"onnxruntime-genai is not installed: {GENAI_EXTRA}"
    return None


def _require_genai() -> None:
    why = genai_unavailable()
    if why is not None:
        raise UnsupportedModelError(why)


class GenaiModel:
    """An onnxruntime-genai model folder, ready for the ``genai`` backend.

    Answers what generation asks of a causal LM (`lm_facts`, read from
    ``genai_config.json`` and the ONNX file's weights) and runs only on ``genai``.

    Attributes:
        folder: the model folder.
        config: ``genai_config.json`` as read.
        lm_facts: layers, KV heads, head width, context, vocabulary, weight bytes.
        reference: the ``transformers`` model it was built from (the greedy-token check
            runs it in torch), or None when unknown.
        precision: ``"fp32"``, ``"int4"`` (from its MatMulNBits nodes), or ``"fp16"``.
        variant_name: the name its profiles carry.
        runtimes: ``("genai",)``.
    """

    runtimes = ("genai",)
    #: what a profile without a reference suggests
    reference_hint = "load_genai(folder, reference=<its transformers folder>)"

    def __init__(self, folder: Path, config: dict[str, Any], reference: Any = None) -> None:
        self.folder = folder
        self.config = config
        self.reference = reference
        self.lm_facts, self.precision = _facts(folder, config)
        self.variant_name = f"{folder.name} genai-{self.precision}"
        # where `model_tokenizer` finds the folder's tokenizer files
        self.name_or_path = str(folder)

    def __repr__(self) -> str:
        return f"GenaiModel({str(self.folder)!r}, precision={self.precision!r})"


def load_genai(
    folder: str | Path,
    *,
    trust: bool = False,
    reference: Any = None,
    max_bytes: int | None = None,
) -> GenaiModel:
    """An onnxruntime-genai model folder, checked under the trust rules (module doc).

    Args:
        folder: the folder with ``genai_config.json``, the ONNX decoder and its tokenizer.
        trust: lift the refusals of files that could run code (only if you trust the
            folder's author).
        reference: the ``transformers`` model (or its local folder) it was built from,
            for the greedy-token check; None: the folder's build record
            (`genai_build` writes one), else no check.
        max_bytes: the largest file accepted (None: `MAX_MODEL_BYTES`).

    Raises:
        ModelLoadError: no such folder, no or a garbled ``genai_config.json``, a file it
            names is missing, or a file over the size limit.
        UnsafeModelError: untrusted, and the folder holds or names code (module doc).
    """
    from workbench.loaders.trust import MAX_MODEL_BYTES

    path = Path(folder)
    config_file = path / "genai_config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"{folder} is not an onnxruntime-genai model folder (no genai_config.json); "
            "build one with wb.genai_build(<transformers folder>, <output folder>)"
        )
    try:
        config = json.loads(config_file.read_text())
        decoder = config["model"]["decoder"]
        filename = str(decoder["filename"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{config_file} is not a genai config: {exc}") from exc
    if not trust:
        _check_untrusted(path, config)
    onnx_file = path / filename
    if not onnx_file.is_file():
        raise ModelLoadError(f"{config_file} names {filename}, which {folder} does not hold")
    limit = MAX_MODEL_BYTES if max_bytes is None else max_bytes
    for file in path.iterdir():
        if file.is_file():
            check_size(file, limit)
    if reference is None:
        reference = _recorded_reference(path)
    elif isinstance(reference, (str, Path)):
        from workbench.loaders.causal_lm import load_causal_lm

        reference = load_causal_lm(reference)
    return GenaiModel(path, config, reference)


def _check_untrusted(folder: Path, config: dict[str, Any]) -> None:
    """Refuse what could run code when an untrusted folder is loaded (module doc)."""
    check_data_folder(folder, DATA_SUFFIXES, "onnxruntime-genai", OPT_IN)
    for key, value in _items(config):
        if key == "custom_ops_library" and value:
            raise UnsafeModelError(
                f"{folder / 'genai_config.json'} names a custom-op library ({value}), native "
                f"code that onnxruntime would load and run; {OPT_IN}"
            )
        if key == "filename" and isinstance(value, str):
            inside = (folder / value).resolve()
            if not inside.is_relative_to(folder.resolve()):
                raise UnsafeModelError(
                    f"{folder / 'genai_config.json'} names {value}, outside the model "
                    f"folder; {OPT_IN}"
                )


def _items(node: Any) -> list[tuple[str, Any]]:
    """Every (key, value) pair of a JSON document, at any depth."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((str(key), value))
            found += _items(value)
    elif isinstance(node, list):
        for value in node:
            found += _items(value)
    return found


def _recorded_reference(folder: Path) -> Any:
    """The ``transformers`` model `genai_build` recorded as the source, when it is still
    there (a model built from an object in memory records none)."""
    record = folder / BUILD_RECORD
    if not record.is_file():
        return None
    try:
        source = json.loads(record.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    if not source or not (Path(source) / "config.json").is_file():
        return None
    from workbench.loaders.causal_lm import load_causal_lm

    return load_causal_lm(source)


def _facts(folder: Path, config: dict[str, Any]) -> tuple[CausalLM, str]:
    """What generation needs from the folder: the config's shape and the ONNX weights."""
    import numpy as np
    import onnx
    from onnx import helper

    model = config["model"]
    decoder = model["decoder"]
    try:
        proto = onnx.load(str(folder / decoder["filename"]), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...: one line
        raise ModelLoadError(f"cannot read {decoder['filename']} in {folder}: {exc}") from exc
    weights, step = graph_weight_bytes(proto, decoder["inputs"].get("input_ids", "input_ids"))
    past = decoder["inputs"]["past_key_names"] % 0
    itemsize = 4
    for value in proto.graph.input:
        if value.name == past:
            dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
            itemsize = np.dtype(dtype).itemsize
    ops = {node.op_type for node in proto.graph.node}
    precision = "int4" if "MatMulNBits" in ops else {2: "fp16"}.get(itemsize, "fp32")
    facts = CausalLM(
        name=f"{folder.name} genai-{precision}",
        layers=int(decoder["num_hidden_layers"]),
        kv_heads=int(decoder["num_key_value_heads"]),
        head_dim=int(decoder["head_size"]),
        context=int(model["context_length"]),
        vocab_size=int(model["vocab_size"]),
        cache_itemsize=itemsize,
        weights_bytes=weights,
        step_weights_bytes=step,
    )
    return facts, precision


def genai_build(
    source: Any,
    output: str | Path,
    *,
    precision: str = "fp32",
    tokenizer: str | Path | None = None,
) -> GenaiModel:
    """Build an onnxruntime-genai model folder with its model builder, offline.

    Runs ``python -m onnxruntime_genai.models.builder -i <source> -o <output> -p
    <precision> -e cpu`` in a child process with the Hugging Face hub offline, so
    nothing is downloaded; the source is read as safetensors, without remote code.
    The folder is built beside ``output`` and moved there only when the build
    succeeded, so a failure leaves nothing half-written. Never changes ``source``.

    Args:
        source: a local ``transformers`` folder (``config.json`` and ``*.safetensors``)
            or a ``transformers`` causal LM object (saved to a temporary folder first).
        output: the new folder (must not exist, or be empty).
        precision: ``"fp32"`` or ``"int4"`` (the builder's MatMulNBits, block 32).
        tokenizer: the builder copies a tokenizer into the folder and needs one: a
            folder with tokenizer files, ``"bytes"`` (a byte-level tokenizer, token id =
            byte value, written as ``tokenizer.json``), or None: the source folder's
            own (its tokenizer files, or ``"tokenizer": "bytes"`` in its ``card.json``).

    Returns:
        The built folder as a `GenaiModel`, its ``reference`` the source model.

    Raises:
        UnsupportedModelError: onnxruntime-genai is not installed, the source is not a
            causal LM, or its head width is not a multiple of 16 (the CPU attention's).
        ParameterError: an unknown precision.
        InputError: ``output`` exists and is not empty; no tokenizer to build with.
        ModelLoadError, UnsafeModelError: the source folder cannot be read, or holds
            pickled weights.
        BackendError: the builder failed (its last line).

    Example:
        >>> m = genai_build("my-llama", "my-llama-int4", precision="int4")
        >>> m.precision
        'int4'
    """
    from workbench.loaders.causal_lm import causal_lm, load_causal_lm

    _require_genai()
    if precision not in PRECISIONS:
        raise ParameterError(
            f"precision must be one of {', '.join(PRECISIONS)} (the builder's CPU precisions), "
            f"not {precision!r}"
        )
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{output} exists and is not an empty folder; give a new folder")
    from_folder = isinstance(source, (str, Path))
    reference = load_causal_lm(source) if from_folder else source
    lm = causal_lm(reference)
    if lm.head_dim % HEAD_MULTIPLE:
        raise UnsupportedModelError(
            f"{lm.name} has heads {lm.head_dim} wide; onnxruntime-genai's CPU attention "
            f"(GroupQueryAttention with its rotary embedding) needs a multiple of "
            f"{HEAD_MULTIPLE}: build a model with such heads, or use backend='onnxruntime'"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wb-genai-", dir=out.parent) as work:
        staged = Path(work) / "source"
        if from_folder:
            shutil.copytree(source, staged)
        else:
            reference.save_pretrained(staged, safe_serialization=True)
        _stage_tokenizer(staged, source if from_folder else None, tokenizer)
        built = Path(work) / "built"
        _run_builder(staged, built, precision, Path(work) / "cache")
        record = {"source": str(Path(source).resolve()) if from_folder else None}
        (built / BUILD_RECORD).write_text(json.dumps({**record, "precision": precision}))
        if out.exists():
            out.rmdir()
        shutil.move(str(built), str(out))
    return load_genai(out, reference=reference)


def _stage_tokenizer(staged: Path, source: Any, tokenizer: str | Path | None) -> None:
    """Put the tokenizer the builder needs into the staged source folder."""
    from workbench.loaders.tokenizers import (
        TOKENIZER_FILES,
        ByteTokenizer,
        folder_tokenizer,
    )

    if tokenizer is None:
        if any((staged / name).is_file() for name in TOKENIZER_FILES):
            return
        found = folder_tokenizer(source) if source is not None else None
        if not isinstance(found, ByteTokenizer):
            raise InputError(
                "onnxruntime-genai's builder needs a tokenizer and the model has none; pass "
                "tokenizer= (a folder with tokenizer.json, or 'bytes' for a byte-level model)"
            )
        tokenizer = "bytes"
    if str(tokenizer) == "bytes":
        write_byte_tokenizer(staged)
        return
    folder = Path(tokenizer)
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not files:
        raise InputError(f"{tokenizer} holds no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    for file in [*files, *folder.glob("special_tokens_map.json"), *folder.glob("merges.txt")]:
        shutil.copy(file, staged / file.name)


def write_byte_tokenizer(folder: Path) -> None:
    """Write a byte-level ``tokenizer.json`` (token id = the UTF-8 byte's value, no
    merges: `ByteTokenizer` as a ``tokenizers`` file) and its ``tokenizer_config.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    # GPT-2's byte-to-character table: printable bytes stand for themselves, the others
    # for the characters from U+0100 up, in byte order
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(extra)}
    byte_level = Tokenizer(models.BPE(vocab={chars[b]: b for b in range(256)}, merges=[]))
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    byte_level.decoder = decoders.ByteLevel()
    byte_level.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"})
    )


def _run_builder(source: Path, output: Path, precision: str, cache: Path) -> None:
    """onnxruntime-genai's model builder in a child process, the hub offline."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    command = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(source),
        "-o",
        str(output),
        "-p",
        precision,
        "-e",
        "cpu",
        "-c",
        str(cache),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not (output / "genai_config.json").is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no output"]
        raise BackendError(
            f"onnxruntime-genai's builder failed (exit {done.returncode}): {lines[-1][:300]}"
        )
