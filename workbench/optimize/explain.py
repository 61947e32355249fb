""" "Why is my INT8 model slower?": per-layer reasons a variant is slower than its baseline.

Given the profiles of a baseline and a variant (and, when available, the two models),
`explain` lines the layers up by canonical name and, for each layer that got slower,
says why it thinks so, from what the graph and the trace show:

- Quantize / Dequantize nodes the variant added to the layer (each one is a pass over
  the activations; on a small layer they can cost more than the integer math saves);
- layout or type conversions (Transpose, ORT's ReorderInput/ReorderOutput, Cast);
- ops that kept a float kernel although their inputs are quantized (no integer kernel
  in ONNX Runtime, e.g. BatchNormalization between DequantizeLinear and QuantizeLinear),
  and, from the trace when the profile recorded kernels, layers whose kernels are float
  ops wrapped in Q/DQ rather than integer ones (QLinearConv, QGemm, MatMulInteger).

`reasons` returns just ``{layer: "reason; reason"}``. `wb.compare`'s ``reasons`` column
comes from the row-level detector in `workbench.profiling.reasons`, whose op kinds and
slowdown thresholds this module shares.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.loaders.onnx import LAYOUT_LAYER
from workbench.profiling.reasons import INTEGER_KERNELS, LAYOUT_OPS, QDQ_OPS, is_slower

if TYPE_CHECKING:
    import onnx

    from workbench.model import Model
    from workbench.profiling.profile import Profile

#: ops ONNX Runtime's CPU provider runs on int8 data when wrapped in Q/DQ (or that just
#: move data); any other op between DequantizeLinear and QuantizeLinear runs in float
_INT8_CAPABLE = {
    "Conv", "MatMul", "Gemm", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool",
    "Concat", "Sigmoid", "LeakyRelu", "Softmax", "Resize", "Reshape", "Transpose",
    "Squeeze", "Unsqueeze", "Flatten", "Gather", "Split", "Where", "ArgMax", "Relu", "Clip",
    "Shape", "Constant",
}  # fmt: skip
_FLOAT_COMPUTE = {"Conv", "FusedConv", "MatMul", "Gemm", "FusedGemm", "FusedMatMul"}


def explain(
    base: Profile,
    variant: Profile,
    base_model: Model | None = None,
    variant_model: Model | None = None,
) -> pd.DataFrame:
    """Per-layer latency of a variant against its baseline, with reasons for slowdowns.

    Args:
        base: the baseline's profile (with per-layer timings).
        variant: the variant's profile (same backend, ideally same batch size).
        base_model: the baseline model, to diff graphs (optional).
        variant_model: the variant model, to diff graphs (optional).

    Returns:
        One row per layer in either profile: ``layer``, ``base_ms``, ``variant_ms``,
        ``delta_ms``, ``ratio`` (variant / base), ``slower`` and ``reasons`` (text; empty
        for layers that did not get slower). Sorted by ``delta_ms``, largest first.

    Example:
        >>> explain(wb.profile(m), wb.profile(q), m, q).query("slower")
    """
    left = _layer_ms(base).rename("base_ms")
    right = _layer_ms(variant).rename("variant_ms")
    table = pd.concat([left, right], axis=1).fillna(0.0)
    table["delta_ms"] = table["variant_ms"] - table["base_ms"]
    table["ratio"] = table["variant_ms"] / table["base_ms"].where(table["base_ms"] > 0)
    table["slower"] = [
        is_slower(before, after)
        for before, after in zip(table["base_ms"], table["variant_ms"], strict=True)
    ]
    why = reasons(base, variant, base_model, variant_model)
    table["reasons"] = [
        why.get(layer, "") if slow else "" for layer, slow in table["slower"].items()
    ]
    table = table.reset_index(names="layer")
    return table.sort_values("delta_ms", ascending=False, ignore_index=True)


def reasons(
    base: Profile | None,
    variant: Profile | None,
    base_model: Model | None = None,
    variant_model: Model | None = None,
) -> dict[str, str]:
    """``{layer: "reason; reason"}`` for every layer with something to say.

    Uses the graphs of the two models when given, and the kernels recorded in the
    variant's per-layer profile when it has them. Layers with nothing suspicious are
    absent. Never changes its inputs.
    """
    found: dict[str, list[str]] = {}
    if variant_model is not None:
        base_proto = base_model.to_onnx().proto if base_model is not None else None
        variant_proto = variant_model.to_onnx().proto
        assert variant_proto is not None
        for layer, items in graph_reasons(base_proto, variant_proto).items():
            found.setdefault(layer, []).extend(items)
    if variant is not None:
        for layer, items in kernel_reasons(variant).items():
            found.setdefault(layer, []).extend(items)
    if base is not None and variant is not None:
        extra = set(_layer_ms(variant).index) - set(_layer_ms(base).index)
        for layer in extra:
            found.setdefault(layer, []).append("new in the variant (not in the baseline)")
    return {layer: "; ".join(dict.fromkeys(items)) for layer, items in found.items() if items}


def graph_reasons(base: onnx.ModelProto | None, variant: onnx.ModelProto) -> dict[str, list[str]]:
    """Reasons read from the graphs: added Q/DQ, layout and cast nodes, float fallbacks."""
    before = _ops_by_layer(base) if base is not None else {}
    after = _ops_by_layer(variant)
    out: dict[str, list[str]] = {}
    for layer, ops in after.items():
        added = ops - before.get(layer, Counter())
        items = []
        qdq = sum(added[op] for op in QDQ_OPS)
        if qdq:
            items.append(f"{qdq} added Quantize/Dequantize node(s)")
        layout = {op: added[op] for op in LAYOUT_OPS if added[op]}
        if layout:
            items.append("layout conversion " + ", ".join(f"{k} x{v}" for k, v in layout.items()))
        if added["Cast"]:
            items.append(f"{added['Cast']} added Cast node(s) (type conversion)")
        if items:
            out[layer] = items
    for layer, op in _float_between_qdq(variant):
        out.setdefault(layer, []).append(
            f"{op} has no INT8 kernel: runs in float between Dequantize and Quantize"
        )
    return out


def kernel_reasons(profile: Profile) -> dict[str, list[str]]:
    """Reasons read from the kernels a per-layer ONNX Runtime profile recorded."""
    layers = profile.layers
    column = next((c for c in ("kernels", "detail") if c in layers.columns), None)
    out: dict[str, list[str]] = {}
    for _, row in layers.iterrows():
        layer = str(row.get("layer"))
        if layer == LAYOUT_LAYER:
            out[layer] = ["layout conversions ONNX Runtime inserted (ReorderInput/ReorderOutput)"]
            continue
        ops = _kernel_ops(row.get(column)) if column else []
        if not ops:
            continue
        has_qdq = any(op in QDQ_OPS for op in ops)
        integer = [op for op in ops if op in INTEGER_KERNELS]
        floats = [op for op in ops if op in _FLOAT_COMPUTE]
        if has_qdq and floats and not integer:
            out[layer] = [
                f"fell back to a float kernel ({', '.join(dict.fromkeys(floats))}) with "
                "Quantize/Dequantize around it"
            ]
        elif any(op in LAYOUT_OPS for op in ops):
            out[layer] = ["layout conversion kernels"]
    return out


def _kernel_ops(value: Any) -> list[str]:
    """Op names from a ``kernels`` cell: a list of ``"name:op"`` or a dict with ``kernels``."""
    if isinstance(value, dict):
        value = value.get("kernels", [])
    if isinstance(value, str):
        value = [v for v in value.replace(";", ",").split(",") if v]
    if not isinstance(value, list | tuple):
        return []
    return [str(v).rsplit(":", 1)[-1].strip() for v in value]


def _ops_by_layer(proto: onnx.ModelProto) -> dict[str, Counter[str]]:
    from workbench.loaders.onnx import canonical_layer_name

    out: dict[str, Counter[str]] = {}
    for index, node in enumerate(proto.graph.node):
        out.setdefault(canonical_layer_name(node, index), Counter())[node.op_type] += 1
    return out


def _float_between_qdq(proto: onnx.ModelProto) -> list[tuple[str, str]]:
    """(layer, op) of compute ops fed by DequantizeLinear that ORT cannot run in INT8."""
    from workbench.loaders.onnx import canonical_layer_name

    dequantized = {
        out
        for node in proto.graph.node
        if node.op_type == "DequantizeLinear"
        for out in node.output
    }
    weights = {init.name for init in proto.graph.initializer}
    found = []
    for index, node in enumerate(proto.graph.node):
        if node.op_type in _INT8_CAPABLE or node.op_type in QDQ_OPS:
            continue
        activations = [i for i in node.input if i and i not in weights]
        if activations and any(i in dequantized for i in activations):
            found.append((canonical_layer_name(node, index), node.op_type))
    return found


def _layer_ms(profile: Profile) -> pd.Series:
    layers = profile.layers
    if layers is None or layers.empty or "latency_ms" not in layers:
        return pd.Series(dtype=float)
    return layers.groupby("layer", sort=False)["latency_ms"].sum().astype(float)
