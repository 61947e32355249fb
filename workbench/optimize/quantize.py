"""Quantization transforms: INT8 dynamic and static (ONNX Runtime), FP16, BF16.

INT8 always goes through ONNX Runtime's quantizer, for torch models too: torch's own
eager INT8 path (``torch.ao.quantization``) is deprecated, and its successor (torchao)
is not a dependency here, so a torch model is exported to ONNX and quantized there; the
result is an ONNX model that runs on onnxruntime (and on any backend that runs ONNX
with Q/DQ ops). FP16 has a torch route (``module.half()`` on a copy, inputs cast on the
way in and outputs cast back to float32) and an ONNX route (float16 weights and ops
with float32 inputs and outputs kept). BF16 is torch only.

Example:
    >>> q = wb.quantize(m, "int8-static", data=wb.samples.dataset("digits", "train"))
    >>> q.recipe["label"]
    'int8-static(entropy)'
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from workbench.argtypes import whole
from workbench.errors import InvalidArgumentError, TransformError
from workbench.model import LAYER_KEY, Model, set_layer_name
from workbench.optimize.base import (
    Migration,
    Transform,
    config_to_dict,
    field_added,
    field_renamed,
    register,
    transform,
)
from workbench.optimize.data_source import input_batches, resolve_data
from workbench.optimize.onnx_graph import nodes_for_layers, onnx_variant, parent_proto
from workbench.optimize.silence_ort import quiet_quantizer

#: most samples a calibration may ask for (each batch is held while calibrating)
MAX_CALIBRATION_SAMPLES = 10**6

if TYPE_CHECKING:
    import onnx
    import torch

#: how static INT8 chooses activation ranges from the calibration data
CalibrationMethod = Literal["minmax", "entropy", "percentile"]


@register("int8-dynamic")
@dataclasses.dataclass(frozen=True)
class Int8Dynamic(Transform):
    """INT8 weights, activations quantized on the fly per batch (ONNX Runtime).

    Needs no calibration data. Output is an ONNX model (MatMulInteger / DynamicQuantize
    ops) that runs on onnxruntime.

    Args:
        per_channel: one scale per output channel of each weight instead of one per tensor.
        op_types: ONNX op types to quantize (``MatMul``, ``Gemm``, ``Conv`` ...).
        exclude: canonical layer names to keep in float.
        reduce_range: 7-bit weights, for CPUs without VNNI (avoids saturation).

    Example:
        >>> q = wb.quantize(m, Int8Dynamic(per_channel=True))
    """

    per_channel: bool = False
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    exclude: tuple[str, ...] = ()
    reduce_range: bool = False

    def label(self) -> str:
        return "int8-dynamic" + ("(per-channel)" if self.per_channel else "")

    def apply(self, model: Model, data: Any = None) -> Model:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        def run(source: onnx.ModelProto, out: Path) -> None:
            quantize_dynamic(
                source,
                out,
                op_types_to_quantize=list(self.op_types) or None,
                per_channel=self.per_channel,
                reduce_range=self.reduce_range,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=nodes_for_layers(model, self.exclude),
                extra_options={"MatMulConstBOnly": True},
            )

        return _quantize_onnx(model, self, run)


@register("int8-static")
@dataclasses.dataclass(frozen=True)
class Int8Static(Transform):
    """INT8 weights and activations with scales calibrated on data (ONNX Runtime).

    The calibration data is the ``data`` of ``wb.quantize`` (or of `apply`); the
    config holds only settings.

    Args:
        method: how activation ranges are chosen from the calibration data:
            ``"minmax"``, ``"entropy"`` or ``"percentile"`` (99.999th). Named
            ``calibration`` before; that keyword still works, with a DeprecationWarning.
        per_channel: per-output-channel weight scales (else one per tensor).
        op_types: ONNX op types to quantize; None for all that ORT can quantize.
        exclude: canonical layer names to keep in float.
        calibration_samples: samples of the calibration data to use.
        quant_format: ``"qdq"`` (QuantizeLinear/DequantizeLinear pairs that ORT fuses
            into integer kernels) or ``"qoperator"`` (QLinearConv, QLinearMatMul ...).
        activations: activation type, ``"uint8"`` (fastest on x86 VNNI) or ``"int8"``.
        fold_batchnorm: fold BatchNormalization into the preceding Conv before
            quantizing (else Q/DQ pairs land between them and the batch norm runs in
            float); the folded layer keeps the Conv's name.

    Example:
        >>> q = wb.quantize(m, Int8Static(method="minmax"), data=train)
    """

    # version 2: BatchNorm folding (on by default) arrived after version 1 recipes were
    # written without the field, and those were built unfolded; version 3: the method
    # field was called ``calibration``, a word that means the data everywhere else
    version: ClassVar[int] = 3
    migrations: ClassVar[Mapping[int, Migration]] = {
        1: field_added("fold_batchnorm", False),
        2: field_renamed("calibration", "method"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"calibration": "method"}

    method: CalibrationMethod = "entropy"
    per_channel: bool = True
    op_types: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    calibration_samples: int = 256
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    activations: Literal["uint8", "int8"] = "uint8"
    fold_batchnorm: bool = True

    def __post_init__(self) -> None:
        if self.method not in ("minmax", "entropy", "percentile"):
            raise InvalidArgumentError(
                f"method must be minmax, entropy or percentile, got {self.method!r}"
            )
        if self.quant_format not in ("qdq", "qoperator"):
            raise InvalidArgumentError(
                f"quant_format must be qdq or qoperator, got {self.quant_format!r}"
            )
        whole("calibration_samples", self.calibration_samples, maximum=MAX_CALIBRATION_SAMPLES)

    def label(self) -> str:
        return f"int8-static({self.method})"

    def apply(self, model: Model, data: Any = None) -> Model:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        data = resolve_data(model, data, "train", "INT8 static calibration")
        onnx_model = model.to_onnx()
        reader = _reader(list(input_batches(onnx_model, data, self.calibration_samples)))
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[self.method]

        def run(source: onnx.ModelProto, out: Path) -> None:
            # tensors a histogram cannot bin (a mask fill) stay float, out of the calibration
            kept, cache = _extreme_tensors(source, reader, method, out.parent)
            quantize_static(
                source,
                out,
                reader,
                quant_format=QuantFormat.QDQ
                if self.quant_format == "qdq"
                else QuantFormat.QOperator,
                op_types_to_quantize=list(self.op_types) if self.op_types else None,
                per_channel=self.per_channel,
                activation_type=QuantType.QUInt8
                if self.activations == "uint8"
                else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=nodes_for_layers(model, self.exclude) + kept,
                calibrate_method=method,
                extra_options={"CalibTensorRangeSymmetric": False},
                **({"calibration_cache_path": cache} if cache else {}),
            )

        return _quantize_onnx(model, self, run, fold=self.fold_batchnorm)


@register("fp16")
@dataclasses.dataclass(frozen=True)
class Fp16(Transform):
    """Half-precision weights and arithmetic; inputs and outputs stay float32.

    Args:
        route: ``"auto"`` (torch for torch models, ONNX for ONNX models and whenever
            ``exclude`` is set), ``"torch"`` or ``"onnx"`` (a torch model is exported first).
        exclude: canonical layers kept in float32 (ONNX route).

    Example:
        >>> h = wb.quantize(m, "fp16")
    """

    route: Literal["auto", "torch", "onnx"] = "auto"
    exclude: tuple[str, ...] = ()

    def label(self) -> str:
        return "fp16" if self.route == "auto" else f"fp16({self.route})"

    def apply(self, model: Model, data: Any = None) -> Model:
        route = self.route
        if route == "auto":
            # per-layer control exists only in the ONNX route (node block list)
            route = "onnx" if self.exclude or model.framework == "onnx" else "torch"
        if route == "torch":
            if self.exclude:
                raise TransformError("fp16 exclude= needs route='onnx' (or 'auto')")
            return _torch_cast(model, self, "float16")
        return _onnx_fp16(model, self)


@register("bf16")
@dataclasses.dataclass(frozen=True)
class Bf16(Transform):
    """bfloat16 weights and arithmetic in torch (AMX on recent Xeons); float32 I/O.

    Example:
        >>> b = wb.quantize(m, "bf16")
    """

    def apply(self, model: Model, data: Any = None) -> Model:
        if model.framework != "torch":
            raise TransformError(
                "bf16 has a torch route only (ONNX Runtime's CPU provider has few bfloat16 "
                "kernels); load the torch model, or use fp16 for an ONNX model"
            )
        return _torch_cast(model, self, "bfloat16")


def quantize(
    model: Any,
    scheme_or_config: Transform | str = "int8-dynamic",
    data: Any = None,
    **fields: Any,
) -> Model:
    """Quantize a model; returns a new `Model`, never changes ``model`` (`transform` alias).

    Args:
        model: a `Model` or anything `workbench.load` accepts.
        scheme_or_config: ``"int8-dynamic"``, ``"int8-static"``, ``"fp16"``, ``"bf16"``
            or a config such as ``Int8Static(method="minmax")``.
        data: calibration data for static INT8 (a `Dataset` or an iterable of
            ``(inputs, labels)`` batches); for a sample model its training split is used
            when omitted.
        **fields: config fields, always overriding the config's (``per_channel=False``,
            ``method="minmax"``; the data goes in ``data``).

    Returns:
        The quantized model; INT8 variants are ONNX models. ``recipe`` holds the config
        (and the earlier steps when ``model`` was itself derived).

    Raises:
        TransformError: unknown scheme or field, data passed as ``calibration=``, missing
            calibration data, or the quantizer failed.

    Example:
        >>> q = wb.quantize(m, "int8-static", data=train, method="minmax")
    """
    return transform(model, scheme_or_config, data, **fields)


# ---- ONNX Runtime quantizer ---------------------------------------------------------
_QUANTIZED_OPS = {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearConv"}


def _quantize_onnx(model: Model, config: Transform, run: Any, fold: bool = False) -> Model:
    import onnx

    found = {n.op_type for n in model.to_onnx().proto.graph.node} & _QUANTIZED_OPS  # type: ignore[union-attr]
    if found:
        raise TransformError(
            f"{model.name!r} is already quantized ({', '.join(sorted(found))}; recipe "
            f"{model.recipe_name}); quantize its float parent instead"
        )
    source = _prepared(_folded(parent_proto(model)) if fold else parent_proto(model))
    with tempfile.TemporaryDirectory(prefix="wb-quant-") as folder:
        out = Path(folder) / "quantized.onnx"
        try:
            with quiet_quantizer():
                run(source, out)
        except TransformError:
            raise
        except Exception as exc:  # ORT's quantizer raises plain exceptions of many kinds
            raise TransformError(
                f"{config.label()} failed on {model.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        proto = onnx.load(str(out))
    return onnx_variant(model, proto, config_to_dict(config))


def _prepared(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Shape-inferred copy (the quantizer needs value shapes to pick kernels)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(proto)
    except Exception:  # shape inference is a help, not a requirement
        return proto


def _folded(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` after ONNX Runtime's basic graph optimizations (Conv+BatchNorm folding)."""
    import onnx

    from workbench.backends.onnxruntime.plain import plain_session

    with tempfile.TemporaryDirectory(prefix="wb-fold-") as folder:
        plain_session(proto, optimization="basic", optimized_model_filepath=f"{folder}/folded.onnx")
        folded = onnx.load(f"{folder}/folded.onnx")
    # the optimizer drops node metadata; names survive, so carry the layer labels over
    labels = {
        n.name: kv.value for n in proto.graph.node for kv in n.metadata_props if kv.key == LAYER_KEY
    }
    for node in folded.graph.node:
        if node.name in labels and not any(kv.key == LAYER_KEY for kv in node.metadata_props):
            set_layer_name(node, labels[node.name])
    return folded


#: an activation reaching this magnitude is a fill value, not a signal: an attention mask
#: filled with float32's lowest value (-3.4e38, GPT-2), or infinities
EXTREME = 1e30


def _extreme_tensors(
    source: onnx.ModelProto, reader: Any, method: Any, folder: Path
) -> tuple[list[str], Path | None]:
    """Nodes to keep in float, and calibration ranges computed without their tensors.

    ONNX Runtime calibrates every float tensor of a quantizable node. The histogram
    methods (entropy, percentile) bin each over ``[-max|x|, max|x|]``; for a tensor
    holding values near float32's limits (GPT-2's causal mask, filled with its lowest
    value) that width overflows float32 and the calibration fails with "Too many bins
    for data range". The first calibration batch shows such tensors (|x| >= `EXTREME`
    or not finite); the nodes reading or writing them stay float, and the ranges of the
    rest are calibrated here and handed to the quantizer as its calibration cache.
    MinMax needs no histogram and is left to the quantizer.

    Returns:
        ``(node names, cache path)``; ``([], None)`` for MinMax or when no tensor is
        extreme.

    Raises:
        TransformError: extreme tensors with an onnxruntime whose quantizer takes no
            calibration cache, for the histogram methods.
    """
    import inspect

    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if method == CalibrationMethod.MinMax:
        return [], None
    path = folder / "calibrate.onnx"
    onnx.save(source, str(path))
    calibrator = create_calibrator(
        path,
        sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
        augmented_model_path=str(folder / "augmented.onnx"),
        calibrate_method=method,
        extra_options={"symmetric": False},
    )
    reader.rewind()
    session = calibrator.infer_session
    names = [o.name for o in session.get_outputs()]
    values = session.run(None, reader.get_next())
    reader.rewind()
    extreme = {
        name
        for name, value in zip(names, values, strict=True)
        if name in calibrator.tensors_to_calibrate
        and np.asarray(value).dtype.kind == "f"
        and not (np.abs(np.asarray(value)) < EXTREME).all()
    }
    if not extreme:
        return [], None
    kept = [n.name for n in source.graph.node if extreme & {*n.input, *n.output}]
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise TransformError(
            f"tensors {sorted(extreme)[:3]} hold values beyond ±{EXTREME:g} (a mask fill), "
            "which this onnxruntime's histogram calibration cannot bin: use "
            "method='minmax', or onnxruntime with calibration_cache_path"
        )
    calibrator.tensors_to_calibrate -= extreme
    calibrator.collect_data(reader)
    reader.rewind()
    cache = folder / "ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return kept, cache


def _reader(feeds: list[dict[str, Any]]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    if not feeds:
        raise TransformError("the calibration data holds no samples")

    class _Feeds(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._iter = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._iter, None)

        def rewind(self) -> None:
            self._iter = iter(feeds)

    return _Feeds()


# ---- float16 / bfloat16 ---------------------------------------------------------------
def _onnx_fp16(model: Model, config: Fp16) -> Model:
    import warnings

    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = parent_proto(model)
    blocked = nodes_for_layers(model, config.exclude)
    with warnings.catch_warnings():
        # it warns about each weight clipped to the float16 range; we report nothing lost
        warnings.simplefilter("ignore")
        converted = convert_float_to_float16(
            proto, keep_io_types=True, node_block_list=blocked or None
        )
    return onnx_variant(model, converted, config_to_dict(config))


def _torch_cast(model: Model, config: Transform, dtype_name: str) -> Model:
    import copy

    import torch

    if model.framework != "torch" or model.module is None:
        raise TransformError(f"{config.label()} via torch needs a torch model")
    dtype = getattr(torch, dtype_name)
    module = copy.deepcopy(model.module).to(dtype).eval()
    # hooks on the root keep the canonical layer names (no wrapper module) and keep the
    # model's float32 interface, so the same data and inputs work for every variant
    module.register_forward_pre_hook(functools.partial(_cast_inputs, dtype=dtype))
    module.register_forward_hook(functools.partial(_cast_outputs, dtype=torch.float32))
    return torch_variant(model, module, config_to_dict(config))


def _cast_inputs(module: torch.nn.Module, args: tuple[Any, ...], dtype: Any) -> tuple[Any, ...]:
    return tuple(a.to(dtype) if a.is_floating_point() else a for a in args)


def _cast_outputs(module: torch.nn.Module, args: Any, output: Any, dtype: Any) -> Any:
    from workbench.model import map_arrays

    # a Hugging Face ModelOutput, a tuple or dict of tensors: every float tensor in it
    return map_arrays(output, lambda t: t.to(dtype) if t.is_floating_point() else t)


def torch_variant(parent: Model, module: torch.nn.Module, recipe: dict[str, Any]) -> Model:
    """A new torch `Model` derived from ``parent`` running ``module`` (not copied again)."""
    from workbench.loaders.torch import module_layers

    module.eval()
    return parent.derive(module=module, layers=module_layers(module), recipe=recipe, proto=None)
