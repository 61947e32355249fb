"""Variants of a causal language model: weight-only int4/int8, dynamic int8, bf16.

`lm_quantize` turns a ``transformers`` causal LM into an `LMVariant`: a NEW object with
its recipe (`config_to_dict` of the config), the input model never changed. What each
config builds and where it runs:

- `WeightOnly` (``"int4"``, ``"int8"``): the decoder exported with its KV cache
  (`export_decoder`), its MatMul weights quantized by ONNX Runtime's
  ``MatMulNBitsQuantizer`` (``MatMulNBits`` nodes; block size, symmetry and accuracy
  level recorded); runs on ``"onnxruntime"``.
- `DynamicInt8` (``"int8-dynamic"``): the exported decoder through ORT's
  ``quantize_dynamic`` (int8 weights, activations quantized per call); ``"onnxruntime"``.
- `ExportOnly` (``"fp32"``): the exported decoder as it is, the fp32 row beside the
  quantized ones on ``"onnxruntime"``.
- `Cast` (``"bf16"``, ``"fp16"``): a copy of the torch model in that dtype; runs on
  ``"torch"``, and only where this CPU computes in it (`lm_methods` says why not).
- ``"torchao-int8"``: torchao's weight-only int8 when torchao is installed with CPU
  kernels; otherwise `lm_methods` says it is unavailable and why.

An `LMVariant` is accepted wherever the reference model is (`wb.generate_profile`,
`wb.lm_accuracy`): it answers the reference's attributes (config, modules), so the
token check compares its greedy tokens with the fp32 reference's, while the runtimes
it can run on (``runtimes``) time the variant itself.

Example:
    >>> q = wb.lm_quantize(model, "int4")          # WeightOnly(bits=4, block_size=32, ...)
    >>> q.recipe["label"], q.size_bytes
    >>> wb.generate_profile(q, backend="onnxruntime")
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, ClassVar, Literal

from workbench.errors import (
    InvalidArgumentError,
    TransformError,
    UnsupportedModelError,
    WorkbenchError,
)
from workbench.optimize.base import Transform, config_to_dict


@dataclasses.dataclass(frozen=True)
class LMTransform(Transform):
    """Base of the language-model variant configs: built by `lm_quantize`, not
    ``wb.transform`` (their input is a ``transformers`` causal LM, not a `Model`)."""

    #: the runtimes the variant it builds runs on
    runtimes: ClassVar[tuple[str, ...]] = ("onnxruntime",)

    def apply(self, model: Any, data: Any = None) -> Any:
        raise TransformError(
            f"{self.label()} builds a language-model variant; call wb.lm_quantize(model, config)"
        )

    def unavailable(self) -> str | None:
        """Why this config cannot run here, or None."""
        return None


@dataclasses.dataclass(frozen=True)
class ExportOnly(LMTransform):
    """The exported ONNX decoder unchanged (fp32): the quantized variants' ORT baseline."""

    name: ClassVar[str] = "fp32"


@dataclasses.dataclass(frozen=True)
class WeightOnly(LMTransform):
    """Weight-only int4/int8 MatMuls through ONNX Runtime's ``MatMulNBitsQuantizer``.

    Args:
        bits: 4 or 8.
        block_size: weights sharing one scale (a power of two, ≥ 16).
        symmetric: no zero point.
        accuracy_level: the activations' type inside ``MatMulNBits`` (0: unset, 1:
            fp32, 2: fp16, 3: bf16, 4: int8; 4 uses the CPU's int8 dot products).
        exclude: module paths kept in fp32 (``"lm_head"``, ``"model.layers.0"``: a
            module and everything under it), a per-layer combination.
    """

    name: ClassVar[str] = "weight-only"
    bits: Literal[4, 8] = 4
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 4
    exclude: tuple[str, ...] = ()

    def label(self) -> str:
        kept = f", {len(self.exclude)} kept fp32" if self.exclude else ""
        return f"int{self.bits}(block {self.block_size}, acc {self.accuracy_level}{kept})"


@dataclasses.dataclass(frozen=True)
class MixedWeightOnly(WeightOnly):
    """Per-layer precisions: ``bits`` (int4) for every MatMul but those under ``int8``
    (8-bit, the same block size and accuracy level) and ``exclude`` (fp32): the plan
    `lm_mixed_plan` finds under a KL budget, or one written by hand.

    Args:
        int8: module paths quantized to 8 bits instead (a module and everything under it).
        bits, block_size, symmetric, accuracy_level, exclude: as `WeightOnly`'s.
    """

    name: ClassVar[str] = "weight-only-mixed"
    int8: tuple[str, ...] = ()

    def label(self) -> str:
        kept = [f"{len(self.int8)} int8"] * bool(self.int8)
        kept += [f"{len(self.exclude)} fp32"] * bool(self.exclude)
        return f"int{self.bits}-mixed(block {self.block_size}, acc {self.accuracy_level}" + (
            f", {', '.join(kept)})" if kept else ")"
        )


@dataclasses.dataclass(frozen=True)
class DynamicInt8(LMTransform):
    """int8 weights, activations quantized per call (ORT ``quantize_dynamic``).

    Args:
        per_channel: one scale per output channel of each weight.
        exclude: module paths kept in fp32 (as `WeightOnly`'s).
    """

    name: ClassVar[str] = "int8-dynamic"
    per_channel: bool = False
    exclude: tuple[str, ...] = ()

    def label(self) -> str:
        options = ["per-channel"] * self.per_channel
        options += [f"{len(self.exclude)} kept fp32"] if self.exclude else []
        return "int8-dynamic" + (f"({', '.join(options)})" if options else "")


#: the CPU flags a dtype's arithmetic needs (any one of them) for `Cast`
DTYPE_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


@dataclasses.dataclass(frozen=True)
class Cast(LMTransform):
    """A copy of the torch model in bf16 or fp16 (weights, activations and KV cache).

    Args:
        dtype: ``"bf16"`` or ``"fp16"``.
    """

    name: ClassVar[str] = "cast"
    runtimes: ClassVar[tuple[str, ...]] = ("torch",)
    dtype: Literal["bf16", "fp16"] = "bf16"

    def label(self) -> str:
        return self.dtype

    def unavailable(self) -> str | None:
        from workbench.machine import cpu_info

        needed = DTYPE_FLAGS[self.dtype]
        if set(needed) & set(cpu_info()["flags"]):
            return None
        return (
            f"{self.dtype}: this CPU has none of {', '.join(needed)}, so torch would "
            "emulate it by converting to fp32 (slower than fp32)"
        )


@dataclasses.dataclass(frozen=True)
class TorchaoInt8(LMTransform):
    """torchao's weight-only int8 (``Int8WeightOnlyConfig``) on a copy of the model."""

    name: ClassVar[str] = "torchao-int8"
    runtimes: ClassVar[tuple[str, ...]] = ("torch",)

    def unavailable(self) -> str | None:
        try:
            import torchao  # noqa: F401
        except ImportError:
            return (
                "torchao-int8: torchao is not installed (an optional extra: "
                'pip install "inference-workbench[torchao]")'
            )
        return None


#: the short names `lm_quantize` takes
LM_METHODS: dict[str, LMTransform] = {
    "fp32": ExportOnly(),
    "int4": WeightOnly(bits=4),
    "int8": WeightOnly(bits=8),
    "int8-dynamic": DynamicInt8(),
    "bf16": Cast("bf16"),
    "fp16": Cast("fp16"),
    "torchao-int8": TorchaoInt8(),
}


def lm_config_from_recipe(recipe: dict[str, Any]) -> LMTransform:
    """The config a variant's ``recipe`` was built from (`config_to_dict`'s output).

    Raises:
        TransformError: not a language-model variant's recipe.
    """
    kinds: dict[str, type[LMTransform]] = {type(c).name: type(c) for c in LM_METHODS.values()}
    kinds[MixedWeightOnly.name] = MixedWeightOnly
    kind = kinds.get(str(recipe.get("name")))
    if kind is None:
        raise TransformError(
            f"{recipe.get('name')!r} is not a language-model variant's recipe; "
            f"known: {sorted(kinds)}"
        )
    values = recipe.get("config", {})  # JSON made the tuples lists
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def lm_methods() -> dict[str, str | None]:
    """Each short name `lm_quantize` takes: None where it runs here, else why not."""
    return {name: config.unavailable() for name, config in LM_METHODS.items()}


class LMVariant:
    """A causal LM variant: the reference model's facts, the variant's own weights.

    Attributes:
        reference: the fp32 ``transformers`` model it was derived from (never changed).
        recipe: how it was derived (`config_to_dict` of its config).
        runtimes: the backends that run the variant itself.
        onnx_decoder: its ONNX decoder file (ORT variants), in a folder the variant
            keeps until it is garbage-collected; None for torch variants.
        torch_model: its converted torch copy (torch variants); None for ORT ones.
        size_bytes: its weights on disk or in memory (the ONNX file; the copy's tensors).
        stored_weights_bytes: (all weight bytes, those one decode step reads), as the
            runtime holds them (read by `causal_lm`).
        variant_name: ``"<reference class> <label>"``, the name its profiles carry.
    """

    def __init__(
        self,
        reference: Any,
        recipe: dict[str, Any],
        runtimes: tuple[str, ...],
        *,
        onnx_decoder: Path | None = None,
        folder: Path | None = None,
        torch_model: Any = None,
        stored_weights_bytes: tuple[int, int] | None = None,
        size_bytes: int = 0,
    ) -> None:
        self.reference, self.recipe, self.runtimes = reference, recipe, runtimes
        self.onnx_decoder, self.torch_model = onnx_decoder, torch_model
        # the decoder's folder goes with the variant (no ResourceWarning, unlike a
        # TemporaryDirectory left to the collector); `close` removes it sooner
        self._cleanup = (
            None if folder is None else weakref.finalize(self, shutil.rmtree, folder, True)
        )
        self.stored_weights_bytes, self.size_bytes = stored_weights_bytes, size_bytes
        self.variant_name = f"{type(reference).__name__} {recipe['label']}"

    @property
    def label(self) -> str:
        """The recipe's label, e.g. ``"int4(block 32, acc 4)"``."""
        return str(self.recipe["label"])

    def __getattr__(self, name: str) -> Any:
        # the facts generation reads (config, modules, forward) are the reference's; a
        # torch variant's are its converted copy's
        if name.startswith("_") or name in {"reference", "torch_model"}:
            return object.__getattribute__(self, name)  # the usual AttributeError
        source = self.reference if self.torch_model is None else self.torch_model
        return getattr(source, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The torch variant's forward; an ONNX variant has none in torch."""
        if self.torch_model is None:
            raise UnsupportedModelError(
                f"{self.variant_name} runs on {', '.join(self.runtimes)}, not in torch; "
                "call its reference (.reference) for the fp32 forward"
            )
        return self.torch_model(*args, **kwargs)

    def close(self) -> None:
        """Remove the variant's decoder folder now (an ORT variant cannot run after)."""
        if self._cleanup is not None:
            self._cleanup()

    def __repr__(self) -> str:
        return f"LMVariant({self.variant_name!r}, runtimes={list(self.runtimes)})"


def lm_quantize(
    model: Any, config: str | LMTransform = "int4", *, decoder: str | Path | None = None
) -> LMVariant:
    """A variant of a causal LM, built by ``config``; never changes ``model``.

    Args:
        model: a ``transformers`` causal LM (fp32).
        config: a short name (`LM_METHODS`: ``"int4"``, ``"int8"``, ``"int8-dynamic"``,
            ``"fp32"``, ``"bf16"``, ``"fp16"``, ``"torchao-int8"``) or a config
            (`WeightOnly`, `MixedWeightOnly`, `DynamicInt8`, `ExportOnly`, `Cast`,
            `TorchaoInt8`).
        decoder: the ONNX decoder ``export_decoder`` wrote for ``model``, copied instead
            of exporting again (many variants of one model, as `lm_sensitivity` builds);
            ORT variants only, not read otherwise.

    Returns:
        An `LMVariant` whose ``recipe`` is the config's (`config_to_dict`).

    Raises:
        InvalidArgumentError: an unknown name, or a block size that is not a power of
            two ≥ 16, or bits other than 4 and 8.
        TransformError: the method cannot run here (the reason in one line), or the
            quantizer failed.
        UnsupportedModelError: ``model`` is not a causal LM.

    Example:
        >>> q = wb.lm_quantize(model, WeightOnly(bits=4, block_size=32, accuracy_level=4))
    """
    from workbench.loaders.causal_lm import causal_lm

    if isinstance(model, LMVariant):
        raise InvalidArgumentError(
            f"{model.variant_name} is already a variant; quantize its reference (.reference)"
        )
    if isinstance(config, str):
        if config not in LM_METHODS:
            raise InvalidArgumentError(
                f"no language-model variant named {config!r}; known: {sorted(LM_METHODS)}"
            )
        config = LM_METHODS[config]
    causal_lm(model)  # refuses what is not a causal LM, in one line
    why = config.unavailable()
    if why is not None:
        raise TransformError(f"cannot build this variant here: {why}")
    recipe = config_to_dict(config)
    if isinstance(config, Cast | TorchaoInt8):
        return _torch_variant(model, config, recipe)
    return _onnx_variant(model, config, recipe, None if decoder is None else Path(decoder))


def _torch_variant(model: Any, config: LMTransform, recipe: dict[str, Any]) -> LMVariant:
    import torch

    clone = copy.deepcopy(model)  # the caller's model keeps its weights and dtype
    if isinstance(config, Cast):
        clone = clone.to({"bf16": torch.bfloat16, "fp16": torch.float16}[config.dtype])
    else:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(clone, Int8WeightOnlyConfig())
    params = {id(p): p for p in clone.parameters()}.values()  # tied weights once
    size = sum(tensor_bytes(p) for p in params)
    embedding = clone.get_input_embeddings().weight
    shared = embedding is clone.get_output_embeddings().weight
    step = size if shared else size - tensor_bytes(embedding)  # looked up, not read whole
    return LMVariant(
        model,
        recipe,
        config.runtimes,
        torch_model=clone.eval(),
        stored_weights_bytes=(size, step),
        size_bytes=size,
    )


def tensor_bytes(tensor: Any) -> int:
    """Bytes a tensor holds; a tensor subclass (torchao's quantized weights) is the sum
    of the plain tensors it is made of (its data, scales and zero points)."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if callable(flatten):
        names, _ = flatten()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return int(tensor.numel() * tensor.element_size())


def _onnx_variant(
    model: Any, config: LMTransform, recipe: dict[str, Any], decoder: Path | None
) -> LMVariant:
    import onnx

    from workbench.loaders.causal_lm import export_decoder
    from workbench.optimize.silence_ort import quiet_quantizer

    if isinstance(config, WeightOnly):
        _check_weight_only(config)
    exclude = getattr(config, "exclude", ())
    int8 = getattr(config, "int8", ())
    both = sorted(set(int8) & set(exclude))
    if both:
        raise InvalidArgumentError(
            f"{both[0]!r} is in both int8 and exclude; give it one precision"
        )
    modules = _module_paths(model, (*exclude, *int8))  # before the export: a typo fails at once
    folder = Path(tempfile.mkdtemp(prefix="wb-lm-variant-"))
    path = folder / "decoder.onnx"
    try:
        if decoder is None:
            export_decoder(model, path)
        else:
            shutil.copyfile(decoder, path)
        kept = _excluded_nodes(path, modules, exclude)
        with quiet_quantizer():
            if isinstance(config, WeightOnly):
                # the 8-bit layers are left out of the first pass; the second quantizes
                # the MatMuls still left but those kept in fp32
                wider = _excluded_nodes(path, modules, int8)
                _matmul_nbits(path, config, config.bits, [*kept, *wider])
                if wider:
                    _matmul_nbits(path, config, 8, kept)
            elif isinstance(config, DynamicInt8):
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(
                    path,
                    path,
                    weight_type=QuantType.QInt8,
                    per_channel=config.per_channel,
                    op_types_to_quantize=["MatMul"],
                    nodes_to_exclude=kept,
                )
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if not isinstance(exc, Exception) or isinstance(exc, WorkbenchError):
            raise
        # the quantizers raise many kinds; the user needs one line
        first = " ".join(str(exc).split())[:300]
        raise TransformError(f"ONNX Runtime could not build {config.label()}: {first}") from exc
    return LMVariant(
        model,
        recipe,
        config.runtimes,
        onnx_decoder=path,
        folder=folder,
        stored_weights_bytes=decoder_weight_bytes(onnx.load(str(path))),
        size_bytes=path.stat().st_size,
    )


def _matmul_nbits(path: Path, config: WeightOnly, bits: int, exclude: list[str]) -> None:
    """Quantize the decoder's MatMul weights at ``path`` in place to ``bits``, but the
    nodes in ``exclude``."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(path)),
        bits=bits,
        block_size=config.block_size,
        is_symmetric=config.symmetric,
        accuracy_level=config.accuracy_level,
        nodes_to_exclude=exclude,
    )
    quantizer.process()
    onnx.save(quantizer.model.model, str(path))


def _module_paths(model: Any, exclude: tuple[str, ...]) -> list[str]:
    """``model``'s module paths, the root first (named after its class).

    Raises:
        InvalidArgumentError: a path in ``exclude`` that is no module of ``model``.
    """
    modules = [name or type(model).__name__ for name, _ in model.named_modules()]
    unknown = [name for name in exclude if name not in modules[1:]]
    if unknown:
        raise InvalidArgumentError(
            f"{type(model).__name__} has no module {unknown[0]!r}; give module paths such "
            "as 'lm_head' or 'model.layers.0.mlp'"
        )
    return modules


def _excluded_nodes(path: Path, modules: list[str], exclude: tuple[str, ...]) -> list[str]:
    """The exported decoder's nodes under the module paths in ``exclude``."""
    if not exclude:
        return []
    import onnx

    from workbench.loaders.causal_lm import label_modules
    from workbench.model import LAYER_KEY

    proto = onnx.load(str(path))
    label_modules(proto, modules)  # each node's module path, as the per-layer tables name it
    kept = []
    for node in proto.graph.node:
        layer = next((p.value for p in node.metadata_props if p.key == LAYER_KEY), "")
        if any(layer == name or layer.startswith(name + ".") for name in exclude):
            kept.append(node.name)
    return kept


def _check_weight_only(config: WeightOnly) -> None:
    if config.bits not in (4, 8):
        raise InvalidArgumentError(f"bits must be 4 or 8 for MatMulNBits, got {config.bits}")
    size = config.block_size
    if size < 16 or size & (size - 1):
        raise InvalidArgumentError(f"block_size must be a power of two ≥ 16, got {size}")


def decoder_weight_bytes(proto: Any) -> tuple[int, int]:
    """(all initializer bytes, those a decode step reads) of an ONNX decoder: a table
    read only by ``Gather`` (the input embedding) is looked up one row per token."""
    import numpy as np
    from onnx import helper

    sizes = {
        t.name: int(np.prod(t.dims, dtype=np.int64))
        * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        for t in proto.graph.initializer
    }
    users: dict[str, set[str]] = {}
    for node in proto.graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    looked_up = sum(size for name, size in sizes.items() if users.get(name) == {"Gather"})
    total = sum(sizes.values())
    return total, total - looked_up
