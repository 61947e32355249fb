"""Why a layer got slower, in words: the op kinds and thresholds both `compare` and
`workbench.optimize.explain` judge by, and the row-level detector `compare` runs.

`quantization_reasons` needs only the per-layer rows of the compared profiles (op types
and trace notes), so `compare` can fill its ``reasons`` column for a quantized variant;
`workbench.optimize.explain` builds on the same op kinds to add what the two graphs and
the recorded kernels show.
"""

from __future__ import annotations

from typing import Any

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

#: a layer counts as slower when it takes this much longer, relatively and absolutely
SLOWER_RATIO = 1.05
SLOWER_MS = 0.001


def is_slower(base_ms: float, variant_ms: float) -> bool:
    """Whether ``variant_ms`` is slower than ``base_ms`` by both `SLOWER_MS` and `SLOWER_RATIO`."""
    return variant_ms - base_ms > SLOWER_MS and variant_ms > SLOWER_RATIO * base_ms


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
    for label, row in zip(labels[1:], rows[1:], strict=True):
        if row is None or not is_slower(before, float(row.get("latency_ms") or 0.0)):
            continue
        op = str(row.get("op_type") or "")
        note = str(row.get("note") or "")
        if op in QDQ_OPS or any(q in note for q in QDQ_OPS):
            out.append(f"Quantize/Dequantize work in {label} ({op or 'fused'})")
        elif op in LAYOUT_OPS or op in CAST_OPS:
            out.append(f"{'layout' if op in LAYOUT_OPS else 'type'} conversion ({op}) in {label}")
        elif op in INTEGER_KERNELS:
            out.append(
                f"integer kernel {op} in {label} is slower than the float one: on a layer this "
                "small, quantizing and dequantizing the activations costs more than it saves"
            )
    return out
