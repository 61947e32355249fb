"""Why a layer got slower, in words: the op kinds and thresholds both `compare` and
`workbench.optimize.explain` judge by, and the row-level detector `compare` runs.

`quantization_reasons` needs only the per-layer rows of the compared profiles (op types,
the ``kernels`` each layer ran and trace notes), so `compare` can fill its ``reasons``
column for a quantized variant; `workbench.optimize.explain` builds on the same op kinds
to add what the two graphs show. `work_name` names what a layer ran (``QLinearConv``, a
``QDQ-wrapped Conv``) and `half_precision_reason` says why float16 is slow on a CPU
without native half-precision arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

from workbench.backends.base import half_precision_fallback_of
from workbench.loaders.onnx import LAYOUT_LAYER

#: ops that quantize or dequantize activations (each one is a pass over the data)
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
#: layout conversions: ONNX transposes and the reorders ONNX Runtime inserts
LAYOUT_OPS = frozenset({"Transpose", "ReorderInput", "ReorderOutput"})
#: type conversions
CAST_OPS = frozenset({"Cast"})
#: kernels that compute on integers (what a quantized layer should run)
INTEGER_KERNELS = frozenset({
    "QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSoftmax", "QLinearConcat",
})  # fmt: skip
#: what each integer kernel computes, to name a quantized layer's work in words
INTEGER_WORK = {
    "QLinearConv": "INT8 convolution", "ConvInteger": "INT8 convolution",
    "QLinearMatMul": "INT8 matrix multiply", "MatMulInteger": "INT8 matrix multiply",
    "MatMulIntegerToFloat": "INT8 matrix multiply", "DynamicQuantizeMatMul": "INT8 matrix multiply",
    "QGemm": "INT8 fully connected layer",
}  # fmt: skip
#: ops that compute in float: in a quantized model they are the float work that remains
FLOAT_COMPUTE = frozenset({
    "Conv", "FusedConv", "MatMul", "Gemm", "FusedGemm", "FusedMatMul", "BatchNormalization",
    "LayerNormalization", "SkipLayerNormalization", "Softmax", "Gelu", "BiasGelu", "FastGelu",
    "Erf", "Sigmoid", "Tanh", "Div", "Pow", "Sqrt", "ReduceMean",
})  # fmt: skip
#: CPU flags (x86 and Arm /proc/cpuinfo names) that give native arithmetic in a half type
NATIVE_HALF_FLAGS = {
    "float16": ("avx512_fp16", "amx_fp16", "asimdhp", "fphp"),
    "bfloat16": ("avx512_bf16", "amx_bf16", "bf16"),
}

#: a layer counts as slower when it takes this much longer, relatively and absolutely
SLOWER_RATIO = 1.05
SLOWER_MS = 0.001


def is_slower(base_ms: float, variant_ms: float) -> bool:
    """Whether ``variant_ms`` is slower than ``base_ms`` by both `SLOWER_MS` and `SLOWER_RATIO`."""
    return variant_ms - base_ms > SLOWER_MS and variant_ms > SLOWER_RATIO * base_ms


def ops_of(row: dict[str, Any] | None) -> list[str]:
    """The ops a layer row ran: its ``kernels`` (``"A, B"``) when recorded, else its op type."""
    if row is None:
        return []
    kernels = row.get("kernels")
    if isinstance(kernels, str) and kernels:
        return [k.strip() for k in kernels.split(",") if k.strip()]
    op = row.get("op_type")
    return [str(op)] if isinstance(op, str) and op else []


def work_name(ops: list[str]) -> str:
    """What a layer ran, in a few words: ``QLinearConv``, ``QDQ-wrapped Conv``, or its ops.

    Args:
        ops: the layer's kernel ops in order (`ops_of`).

    Returns:
        The integer kernels when there are any (plus the float compute ops that remain),
        ``QDQ-wrapped <op>`` for a float kernel between Quantize/Dequantize kernels, else
        the ops joined; empty when ``ops`` is.
    """
    integer = [op for op in ops if op in INTEGER_KERNELS]
    floats = [op for op in ops if op in FLOAT_COMPUTE]
    if integer:
        rest = f" + float {', '.join(floats)}" if floats else ""
        return ", ".join(dict.fromkeys(integer)) + rest
    if floats and any(op in QDQ_OPS for op in ops):
        return "QDQ-wrapped " + ", ".join(dict.fromkeys(floats))
    return ", ".join(dict.fromkeys(ops))


def half_precision_reason(
    dtype: str, backend: str, device: str, flags: list[str] | set[str]
) -> str | None:
    """Why a model computing in ``dtype`` is slow on this CPU, or None when it should not be.

    Args:
        dtype: ``"float16"`` or ``"bfloat16"`` (other dtypes: None).
        backend: the backend's name; the backend words how it computes
            (`workbench.backends.base.half_precision_fallback_of`).
        device: the profile's device (only ``cpu`` devices are judged).
        flags: the CPU's feature flags (`workbench.machine.cpu_info` ``["flags"]``).

    Returns:
        The reason in words when the CPU has none of `NATIVE_HALF_FLAGS` for ``dtype``.
    """
    native = NATIVE_HALF_FLAGS.get(dtype)
    if native is None or not device.startswith("cpu") or any(f in flags for f in native):
        return None
    how = half_precision_fallback_of(backend)
    return (
        f"computes in {dtype} on a CPU without native {dtype} arithmetic (none of "
        f"{', '.join(native)}): {backend} {how}, so {dtype} is slower than float32 here"
    )


def quantization_reasons(
    layer: str, rows: list[dict[str, Any] | None], labels: list[str]
) -> list[str]:
    """Why a layer got slower than in the first profile, from the per-layer rows alone.

    A `workbench.profiling.compare` reason detector (built in): it names time spent in
    Quantize/Dequantize kernels, layout or type conversions, and integer kernels slower
    than the float ones they replaced.

    Args:
        layer: the canonical layer.
        rows: that layer's row in each profile (None where a profile lacks it); the
            first is the baseline.
        labels: the profiles' labels, in the same order.

    Returns:
        Reasons in words; empty when the layer did not get slower or nothing explains it.
    """
    base = rows[0] if rows else None
    before = float(base.get("latency_ms") or 0.0) if base is not None else 0.0
    out = []
    if layer == LAYOUT_LAYER and any(r is not None for r in rows[1:]):
        out.append("layout conversions ONNX Runtime inserted (ReorderInput/ReorderOutput)")
    base_ops = ops_of(base)
    for label, row in zip(labels[1:], rows[1:], strict=True):
        if row is None or not is_slower(before, _ms(row)):
            continue
        ops = ops_of(row)
        note = str(row.get("note") or "")
        qdq = [op for op in ops if op in QDQ_OPS]
        integer = [op for op in ops if op in INTEGER_KERNELS]
        converts = [op for op in ops if op in LAYOUT_OPS | CAST_OPS and op not in base_ops]
        if qdq or any(q in note for q in QDQ_OPS):
            out.append(f"Quantize/Dequantize work in {label} ({', '.join(qdq) or 'fused'})")
        if converts:
            kind = "layout" if set(converts) & LAYOUT_OPS else "type"
            out.append(f"{kind} conversion ({', '.join(dict.fromkeys(converts))}) in {label}")
        if integer:
            was = work_name(base_ops) or "the float kernel"
            out.append(
                f"integer kernel {work_name(ops)} in {label} is slower than {was}: on a layer "
                "this small, its fixed costs (requantizing the output, reordering the data) "
                "outweigh the cheaper integer arithmetic"
            )
    return out


def _ms(row: dict[str, Any]) -> float:
    value = row.get("latency_ms")
    return 0.0 if value is None or math.isnan(float(value)) else float(value)
