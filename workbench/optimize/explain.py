""" "Why is my INT8 model slower?": per-layer reasons a variant is slower than its baseline.

Given the profiles of a baseline and a variant (and, when available, the two models),
`explain` lines the layers up by canonical name and, for each layer that got slower,
says why it thinks so, from what the graph and the trace show:

- Quantize / Dequantize nodes the variant added to the layer (each one is a pass over
  the activations; on a small layer they can cost more than the integer math saves);
- layout or type conversions (Transpose, ORT's ReorderInput/ReorderOutput, Cast);
- ops that kept a float kernel although their inputs are quantized (no integer kernel
  in ONNX Runtime, e.g. BatchNormalization between DequantizeLinear and QuantizeLinear);
- from the kernels each layer ran (the profile's ``kernels`` column, recorded from the
  trace): the layer's work named as what it is (``QLinearConv``, an INT8 convolution, or
  a ``QDQ-wrapped Conv`` that fell back to float), the float kernels that remain, the
  Quantize/Dequantize kernels and the layout conversions ONNX Runtime added;
- half precision (FP16/BF16) on a CPU without native arithmetic in that type, where
  the runtime emulates it (torch's digits-cnn in FP16 runs about 14x slower than FP32).

`reasons` returns just ``{layer: "reason; reason"}``. `wb.compare`'s ``reasons`` column
comes from the row-level detector in `workbench.profiling.reasons`, whose op kinds and
slowdown thresholds this module shares.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.loaders.onnx import LAYOUT_LAYER
from workbench.profiling.reasons import (
    FLOAT_COMPUTE,
    INTEGER_KERNELS,
    INTEGER_WORK,
    LAYOUT_OPS,
    QDQ_OPS,
    half_precision_reason,
    is_slower,
    ops_of,
    work_name,
)
from workbench.profiling.table import UNATTRIBUTED

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
#: why the end-to-end time no layer accounts for grew (it is not a layer of the model)
_UNATTRIBUTED_REASON = (
    "not a layer: end-to-end time outside every layer's timing (the runtime's work between "
    "nodes, which grows with the nodes a variant adds, such as quantize, dequantize and "
    "layout conversions, and with noise on a busy machine)"
)
#: recipe names whose model computes in a half type
_HALF_RECIPES = {"fp16": "float16", "bf16": "bfloat16"}


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
        ``delta_ms``, ``ratio`` (variant / base), ``slower``, ``base_work`` and
        ``variant_work`` (what the layer ran: its kernels when the profile recorded them,
        e.g. ``Conv`` then ``QLinearConv``, else its op type) and ``reasons`` (text; empty
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
    table["base_work"] = _layer_work(base).reindex(table.index).fillna("")
    table["variant_work"] = _layer_work(variant).reindex(table.index).fillna("")
    why = {UNATTRIBUTED: _UNATTRIBUTED_REASON, **reasons(base, variant, base_model, variant_model)}
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

    Uses the graphs of the two models when given, the kernels recorded in the variant's
    per-layer profile (against the baseline's), and the variant's precision (from its
    recipe or its torch weights) against the CPU's native arithmetic. Layers with nothing
    suspicious are absent. Never changes its inputs.
    """
    found: dict[str, list[str]] = {}
    if variant_model is not None:
        base_proto = base_model.to_onnx().proto if base_model is not None else None
        variant_proto = variant_model.to_onnx().proto
        assert variant_proto is not None
        for layer, items in graph_reasons(base_proto, variant_proto).items():
            found.setdefault(layer, []).extend(items)
    if variant is not None:
        for layer, items in kernel_reasons(variant, base).items():
            found.setdefault(layer, []).extend(items)
        for layer, items in precision_reasons(variant, variant_model).items():
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


def kernel_reasons(profile: Profile, base: Profile | None = None) -> dict[str, list[str]]:
    """Reasons read from the kernels each layer ran (the per-layer ``kernels`` column).

    Args:
        profile: the variant's per-layer profile.
        base: the baseline's, to tell added layout conversions and replaced kernels.

    Returns:
        ``{layer: [reason, ...]}`` naming an integer kernel's work (``QLinearConv``: an
        INT8 convolution, replacing the baseline's ``Conv``), a float kernel between
        Quantize/Dequantize kernels (a QDQ-wrapped ``Conv``), float kernels that remain
        in a quantized layer, Quantize/Dequantize kernels and layout conversions.
    """
    before = {row["layer"]: ops_of(row) for row in _rows(base)} if base is not None else {}
    out: dict[str, list[str]] = {}
    for row in _rows(profile):
        layer = str(row.get("layer"))
        if layer == LAYOUT_LAYER:
            out[layer] = ["layout conversions ONNX Runtime inserted (ReorderInput/ReorderOutput)"]
            continue
        ops = ops_of(row) if isinstance(row.get("kernels"), str) else []
        items = _kernel_items(ops, before.get(layer, []) if base is not None else None)
        if items:
            out[layer] = items
    return out


def _kernel_items(ops: list[str], base_ops: list[str] | None) -> list[str]:
    integer = [op for op in ops if op in INTEGER_KERNELS]
    floats = list(dict.fromkeys(op for op in ops if op in FLOAT_COMPUTE))
    qdq = list(dict.fromkeys(op for op in ops if op in QDQ_OPS))
    layout = [op for op in dict.fromkeys(ops) if op in LAYOUT_OPS]
    items = []
    for op in dict.fromkeys(integer):
        was = f", replacing {work_name(base_ops)}" if base_ops else ""
        items.append(f"runs {op} ({INTEGER_WORK.get(op, 'integer kernel')}){was}")
    if integer and floats:
        items.append(f"float kernels remain: {', '.join(floats)}")
    if qdq and floats and not integer:
        items.append(
            f"fell back to a float kernel ({', '.join(floats)}) with Quantize/Dequantize "
            f"around it (a {work_name(ops)}: no integer kernel ran)"
        )
    elif qdq:
        items.append(f"Quantize/Dequantize kernels ({', '.join(qdq)}): a pass over the data each")
    added = [op for op in layout if base_ops is None or op not in base_ops]
    if added:
        what = "layout conversion kernels" if base_ops is None else "layout conversion added"
        items.append(f"{what} ({', '.join(added)})")
    return items


def precision_reasons(profile: Profile, model: Model | None = None) -> dict[str, list[str]]:
    """Why every layer of a half-precision variant is slow on a CPU without half arithmetic.

    The precision comes from the profile's recipe (``fp16``, ``bf16``) or, for a torch
    model, from its floating-point weights; the CPU's flags from this machine.

    Returns:
        ``{layer: [reason]}`` for each timed layer, or ``{}`` when the variant computes in
        float32, runs on a GPU, or the CPU has native arithmetic in its type.
    """
    from workbench.machine import cpu_info

    dtype = _compute_dtype(profile, model)
    why = half_precision_reason(dtype or "", profile.backend, profile.device, cpu_info()["flags"])
    if why is None:
        return {}
    layers = _layer_ms(profile)
    return {str(layer): [why] for layer in layers.index if layer != LAYOUT_LAYER}


def _compute_dtype(profile: Profile, model: Model | None) -> str | None:
    recipe = profile.recipe or {}
    if str(recipe.get("name")) in _HALF_RECIPES:
        return _HALF_RECIPES[str(recipe["name"])]
    if model is not None and model.framework == "torch" and model.module is not None:
        floating = [p.dtype for p in model.module.parameters() if p.dtype.is_floating_point]
        if floating:
            return str(floating[0]).removeprefix("torch.")
    return None


def _rows(profile: Profile | None) -> list[dict[str, Any]]:
    layers = profile.layers if profile is not None else None
    if layers is None or layers.empty:
        return []
    records: list[dict[str, Any]] = layers.to_dict(orient="records")
    return records


def _layer_work(profile: Profile) -> pd.Series:
    """What each layer ran (`work_name` of its kernels, or its op type)."""
    work = {str(row["layer"]): work_name(ops_of(row)) for row in _rows(profile)}
    return pd.Series(work, dtype=object)


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
