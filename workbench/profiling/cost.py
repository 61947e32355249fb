"""FLOPs and bytes per layer, and the roofline against measured machine ceilings.

Conventions (the columns say which): ``flops`` counts a multiply-add as **2 FLOPs**
(``flops = 2 * MACs`` for Conv, Gemm, MatMul, Einsum), bias adds and fused activation
epilogues of those ops are not counted (as in ``torch.utils.flop_counter``);
elementwise ops count one FLOP per output element, batch norm two, layer/group/instance
norm and softmax five; pooling one per window element. ``bytes`` is what each op reads
(inputs and weights) plus what it writes, summed over the layer's ops, unfused. An op
the model does not know makes its layer's FLOPs NaN (unknown, never zero) and a note
names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.model import onnx_itemsize
from workbench.profiling.ceilings import Ceilings, machine_ceilings

if TYPE_CHECKING:
    import onnx

    from workbench.model import Model
    from workbench.profiling.profile import Profile

__all__ = [
    "Ceilings",
    "Roofline",
    "add_roofline",
    "estimate_latency_ms",
    "layer_costs",
    "machine_ceilings",
    "onnx_costs",
    "onnx_node_flops",
    "roofline",
    "torch_costs",
]

COST_COLUMNS = ["flops", "bytes", "params_bytes", "activation_bytes"]
_MOVE = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "GatherND", "Shape", "Size", "Constant", "ConstantOfShape",
    "Identity", "Cast", "CastLike", "Expand", "Pad", "Tile", "DepthToSpace", "SpaceToDepth",
    "Range", "Dropout", "ScatterND", "ScatterElements", "NonZero", "OneHot", "ReorderInput",
    "ReorderOutput",
}  # fmt: skip
_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Gelu", "Erf",
    "Exp", "Log", "Sqrt", "Pow", "Neg", "Abs", "Clip", "Min", "Max", "Sum", "Mean",
    "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Elu", "Selu", "Celu", "Where", "Equal",
    "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Reciprocal",
    "Floor", "Ceil", "Round", "Sign", "Cos", "Sin", "Mish", "BiasGelu", "FastGelu", "QuickGelu",
    "IsNaN", "IsInf", "Mod", "BitShift", "ThresholdedRelu", "Shrink", "QuantizeLinear",
    "DequantizeLinear", "DynamicQuantizeLinear",
}  # fmt: skip
_REDUCE = {
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "GlobalAveragePool",
    "GlobalMaxPool", "GlobalLpPool",
}  # fmt: skip
_NORM5 = {
    "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "SimplifiedLayerNormalization", "SkipLayerNormalization", "Softmax", "LogSoftmax",
}  # fmt: skip
_POOL = {"MaxPool", "AveragePool", "LpPool"}

Shapes = dict[str, tuple[tuple[int, ...], int]]  # tensor -> (shape, itemsize)


# ---- ONNX --------------------------------------------------------------------------------
def onnx_node_flops(node: onnx.NodeProto, shapes: Shapes) -> float | None:
    """FLOPs of one ONNX node (2 per multiply-add), or None when the op is unknown.

    Args:
        node: the node.
        shapes: known tensor shapes and item sizes (see `tensor_shapes`).

    Returns:
        FLOPs as a float, or None for an unknown op or a missing shape.

    Example:
        A Conv with weight (16, 3, 3, 3) and output (1, 16, 32, 32) has
        ``2 * 16*32*32 * 3*3*3 = 884,736`` FLOPs.
    """
    op = node.op_type
    ins = [shapes.get(t, (None, 0))[0] for t in node.input]
    outs = [shapes.get(t, (None, 0))[0] for t in node.output]
    out = outs[0] if outs else None
    if op in _MOVE:
        return 0.0
    if out is None:
        return None
    if op in ("Conv", "FusedConv", "ConvInteger", "QLinearConv"):
        w = ins[3] if op == "QLinearConv" else ins[1]
        return None if w is None else 2.0 * _prod(out) * _prod(w[1:])
    if op == "ConvTranspose":
        return None if ins[0] is None or ins[1] is None else 2.0 * _prod(ins[0]) * _prod(ins[1][1:])
    if op in ("MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "FusedGemm"):
        a = ins[0]
        if a is None:
            return None
        trans_a = any(x.name == "transA" and x.i for x in node.attribute)
        k = a[0] if (op in ("Gemm", "FusedGemm") and trans_a) or len(a) == 1 else a[-1]
        return 2.0 * _prod(out) * k
    if op == "Einsum":
        return _einsum_flops(node, ins)
    if op in _ELEMENTWISE or op == "Resize" or op == "Upsample":
        return float(_prod(out))
    if op == "BatchNormalization":
        return 2.0 * _prod(out)
    if op in _NORM5:
        return 5.0 * _prod(out)
    if op in _REDUCE:
        return None if ins[0] is None else float(_prod(ins[0]))
    if op in _POOL:
        kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), None)
        return None if kernel is None else float(_prod(out) * _prod(kernel))
    return None


def _einsum_flops(node: onnx.NodeProto, ins: Sequence[Any]) -> float | None:
    equation = next((a.s.decode() for a in node.attribute if a.name == "equation"), "")
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if "..." in equation or len(terms) != len(ins) or any(s is None for s in ins):
        return None
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, ins, strict=True):
        if len(term) != len(shape):
            return None
        sizes.update(zip(term, shape, strict=True))
    total = float(_prod(sizes.values()))
    contracted = set(sizes) - set(rhs)
    return 2.0 * total if contracted and len(terms) > 1 else total


def tensor_shapes(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> Shapes:
    """Concrete shapes of every tensor at the given inputs' sizes.

    ONNX shape inference (with data propagation) first, on a copy whose inputs have the
    concrete sizes; tensors it cannot resolve (old opsets, odd ops) are read from one
    onnxruntime run that exposes them as outputs. Never changes ``proto``.
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for value in model.graph.input:
        if value.name in inputs:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, inputs[value.name].shape, strict=False):
                dim.Clear()
                dim.dim_value = int(size)
    # inference is best effort; the ORT run below fills the gaps
    with contextlib.suppress(Exception):
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: Shapes = {}
    graph = model.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        shape = _static_shape(value)
        if shape is not None:
            shapes[value.name] = (shape, onnx_itemsize(value.type.tensor_type.elem_type))
    for init in graph.initializer:
        shapes[init.name] = (tuple(int(d) for d in init.dims), onnx_itemsize(init.data_type))
    missing = [t for n in graph.node for t in n.output if t and t not in shapes]
    if missing:
        shapes.update(_shapes_from_ort(proto, inputs, missing))
    return shapes


def _shapes_from_ort(
    proto: onnx.ModelProto, inputs: dict[str, np.ndarray], names: list[str]
) -> Shapes:
    import onnx

    from workbench.backends.onnxruntime.plain import plain_session

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    known = {o.name for o in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    try:
        session = plain_session(model, optimization="disabled")
        values = session.run(names, inputs)
    except Exception:  # an op ORT cannot run here: those shapes stay unknown
        return {}
    return {
        n: (tuple(int(d) for d in np.shape(v)), np.asarray(v).dtype.itemsize)
        for n, v in zip(names, values, strict=True)
    }


def onnx_costs(
    proto: onnx.ModelProto, inputs: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, list[str]]:
    """FLOPs, bytes, parameter and activation bytes per canonical layer of an ONNX graph.

    Args:
        proto: the graph (not changed).
        inputs: inputs whose sizes fix the shapes (e.g. the profiled batch).

    Returns:
        A DataFrame indexed by canonical layer name with `COST_COLUMNS`, and notes
        naming the op types whose cost is unknown.
    """
    from workbench.loaders.onnx import canonical_layer_name, onnx_layers
    from workbench.profiling.embeddings import untouched_bytes

    shapes = tensor_shapes(proto, inputs)
    untouched = untouched_bytes(proto, inputs)  # a lookup reads its rows, not its table
    graph = proto.graph
    layer_of = {i: canonical_layer_name(n, i) for i, n in enumerate(graph.node)}
    consumers: dict[str, set[str]] = {}
    for i, node in enumerate(graph.node):
        for t in node.input:
            consumers.setdefault(t, set()).add(layer_of[i])
    outputs = {o.name for o in graph.output}
    rows: dict[str, dict[str, float]] = {}
    unknown: dict[str, set[str]] = {}
    for i, node in enumerate(graph.node):
        layer = layer_of[i]
        row = rows.setdefault(layer, {"flops": 0.0, "bytes": 0.0, "activation_bytes": 0.0})
        flops = onnx_node_flops(node, shapes)
        if flops is None:
            unknown.setdefault(node.op_type, set()).add(layer)
            flops = math.nan
        row["flops"] += flops
        row["bytes"] += _node_bytes(node, shapes) - untouched.get(i, 0.0)
        for t in node.output:
            leaves_layer = t in outputs or bool(consumers.get(t, set()) - {layer})
            if t and leaves_layer:
                row["activation_bytes"] += _tensor_bytes(t, shapes)
    table = pd.DataFrame.from_dict(rows, orient="index")
    params = {layer.name: layer.params_bytes for layer in onnx_layers(proto)}
    table["params_bytes"] = pd.Series(params).reindex(table.index).fillna(0)
    notes = [
        f"FLOPs unknown for op {op} (layers: {', '.join(sorted(layers)[:5])}); "
        "those layers show NaN, not zero"
        for op, layers in sorted(unknown.items())
    ]
    return table[COST_COLUMNS], notes


def _node_bytes(node: onnx.NodeProto, shapes: Shapes) -> float:
    tensors = [t for t in [*node.input, *node.output] if t]
    return float(sum(_tensor_bytes(t, shapes) for t in tensors))


def _tensor_bytes(name: str, shapes: Shapes) -> float:
    if name not in shapes:
        return math.nan
    shape, itemsize = shapes[name]
    return float(_prod(shape) * itemsize)


def _static_shape(value: Any) -> tuple[int, ...] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if not dim.HasField("dim_value"):
            return None
        dims.append(int(dim.dim_value))
    return tuple(dims)


def _prod(values: Any) -> int:
    total = 1
    for v in values:
        total *= int(v)
    return total


# ---- torch -------------------------------------------------------------------------------
def torch_costs(model: Model, inputs: dict[str, np.ndarray]) -> tuple[pd.DataFrame, list[str]]:
    """FLOPs and bytes per leaf module of a torch model, from one forward pass with hooks.

    Returns:
        A DataFrame indexed by module path with `COST_COLUMNS`, and notes naming the
        module types whose cost is unknown. The model is not changed (hooks are removed).
    """
    import torch

    from workbench.backends.torch.layers import module_paths
    from workbench.profiling.embeddings import is_table, touched_bytes

    module = model.module
    assert module is not None
    seen: dict[str, tuple[Any, list[Any], Any]] = {}
    handles = []
    try:
        for path, sub in module_paths(module).items():
            if list(sub.children()) and type(sub).__name__ not in _TORCH_CONTAINER_COSTS:
                continue

            def hook(m: Any, args: Any, out: Any, p: str = path) -> None:
                seen.setdefault(p, (m, [a for a in args if isinstance(a, torch.Tensor)], out))

            handles.append(sub.register_forward_hook(hook))
        with torch.inference_mode():
            module(*(torch.from_numpy(a) for a in inputs.values()))
    finally:
        for handle in handles:
            handle.remove()
    params = {layer.name: layer.params_bytes for layer in model.layers}
    rows: dict[str, dict[str, float]] = {}
    unknown: dict[str, list[str]] = {}
    for path, (sub, args, out) in seen.items():
        flat = out if isinstance(out, tuple | list) else (out,)
        outs = [o for o in flat if hasattr(o, "numel")]
        flops = module_flops(sub, args, outs)
        if flops is not None and list(sub.children()):
            # a container's own code: its formula less the children that ran as modules
            flops -= sum(
                module_flops(c, seen[p][1], [seen[p][2]]) or 0.0
                for p, c in module_paths(module).items()
                if p in seen and p.rsplit(".", 1)[0] == path and c is not sub
            )
        if flops is None:
            unknown.setdefault(type(sub).__name__, []).append(path)
        out_bytes = sum(o.numel() * o.element_size() for o in outs)
        in_bytes = sum(a.numel() * a.element_size() for a in args)
        read: float = params.get(path, 0)
        if is_table(sub) and args:  # a lookup reads its rows, not its table
            read = touched_bytes(args[0].numpy(), sub.weight.shape[1], sub.weight.element_size())
        rows[path] = {
            "flops": math.nan if flops is None else float(flops),
            "bytes": float(in_bytes + out_bytes + read),
            "params_bytes": params.get(path, 0),
            "activation_bytes": float(out_bytes),
        }
    notes = [
        f"FLOPs unknown for module type {kind} ({', '.join(paths[:5])}); NaN, not zero"
        for kind, paths in sorted(unknown.items())
    ]
    return pd.DataFrame.from_dict(rows, orient="index", columns=COST_COLUMNS), notes


def module_flops(sub: Any, args: list[Any], outs: list[Any]) -> float | None:
    """FLOPs of one torch module's call by its kind (None: a kind the model does not
    know), from its tensor ``args`` and outputs ``outs`` (module docstring's rules)."""
    from workbench.profiling.embeddings import is_table, table_flops

    kind = type(sub).__name__
    out = outs[0] if outs else None
    x = args[0] if args else None
    if out is None:
        return None
    if is_table(sub) and x is not None:
        return table_flops(sub, x)
    n_out = out.numel()
    if kind.startswith("Conv") and "Transpose" not in kind:
        return 2.0 * n_out * (sub.in_channels // sub.groups) * _prod(sub.kernel_size)
    if kind.startswith("ConvTranspose") and x is not None:
        return 2.0 * x.numel() * (sub.out_channels // sub.groups) * _prod(sub.kernel_size)
    if kind in ("Linear", "LazyLinear", "NonDynamicallyQuantizableLinear") and x is not None:
        return 2.0 * x.numel() * sub.out_features
    if kind == "MultiheadAttention":
        return _mha_flops(sub, args)
    if kind.startswith("BatchNorm"):
        return 2.0 * n_out
    if kind in ("LayerNorm", "GroupNorm", "RMSNorm", "Softmax", "LogSoftmax") or kind.startswith(
        "InstanceNorm"
    ):
        return 5.0 * n_out
    if kind.endswith(("RMSNorm", "LayerNorm")):  # transformers' own (LlamaRMSNorm ...)
        return 5.0 * n_out
    if kind in _TORCH_ELEMENTWISE or kind.endswith("Activation") or kind.startswith("GELU"):
        return float(n_out)  # transformers' activations: SiLUActivation, GELUTanh ...
    if kind in _TORCH_MOVE:
        return 0.0
    if kind.startswith(("MaxPool", "AvgPool")) and x is not None:
        k = sub.kernel_size
        return float(n_out * _prod(k if isinstance(k, tuple | list) else [k] * (x.dim() - 2)))
    if kind.startswith(("AdaptiveAvgPool", "AdaptiveMaxPool")) and x is not None:
        return float(x.numel())
    return None


def _mha_flops(sub: Any, args: list[Any]) -> float | None:
    """Projections and the two attention matmuls (softmax not counted), 2 per multiply-add."""
    if len(args) < 3:
        return None
    q, k = args[0], args[1]
    e = sub.embed_dim
    if sub.batch_first or q.dim() == 2:
        l_q, s = q.shape[-2], k.shape[-2]
        n = q.shape[0] if q.dim() == 3 else 1
    else:
        l_q, n, s = q.shape[0], q.shape[1], k.shape[0]
    projections = 2.0 * n * (2 * l_q * e * e + 2 * s * e * e)  # q and out; k and v
    attention = 2.0 * 2 * n * l_q * s * e
    return projections + attention


#: containers whose own code the cost model knows (their functional matmuls)
_TORCH_CONTAINER_COSTS = {"MultiheadAttention"}
_TORCH_ELEMENTWISE = {
    "ReLU", "ReLU6", "GELU", "SiLU", "Sigmoid", "Tanh", "LeakyReLU", "Hardswish", "Hardsigmoid",
    "ELU", "SELU", "CELU", "Softplus", "Mish", "PReLU", "Hardtanh", "Upsample", "Threshold",
}  # fmt: skip
_TORCH_MOVE = {
    "Identity", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d", "Embedding",
    "ZeroPad2d", "ConstantPad2d", "PixelShuffle", "ChannelShuffle",
}  # fmt: skip


# ---- choosing and combining ---------------------------------------------------------------
def layer_costs(
    model: Model,
    inputs: dict[str, np.ndarray],
    layers: Sequence[str],
    graph: onnx.ModelProto | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Costs for the given canonical layers, from the source whose layers match best.

    A torch model has module-level costs; its ONNX graph (used when already exported, as
    for a model run on onnxruntime or numba) has node-level costs. Layers one source does
    not know are filled from the other.

    Args:
        model: the model (not changed).
        inputs: the inputs whose sizes fix the shapes.
        layers: the canonical layers to cost.
        graph: the model's ONNX graph when the caller holds it already; None: the
            model's own when it has been exported (never exported here).

    Returns:
        A DataFrame indexed by layer with `COST_COLUMNS`, and notes.
    """
    sources: list[tuple[pd.DataFrame, list[str]]] = []
    if model.framework == "torch":
        sources.append(torch_costs(model, inputs))
    if graph is None and model.has_onnx:
        graph = model.to_onnx().proto
    if graph is not None:
        sources.append(onnx_costs(graph, inputs))
    wanted = list(dict.fromkeys(layers))
    sources.sort(key=lambda s: -len(set(wanted) & set(s[0].index)))
    table = pd.DataFrame(index=pd.Index(wanted, dtype=object), columns=COST_COLUMNS, dtype=float)
    notes: list[str] = []
    for costs, source_notes in sources:
        covered = table.index.intersection(costs.index)
        # a layer one source cannot cost (a custom module) takes the other source's numbers
        fill = table.loc[covered, "flops"].isna() & costs.loc[covered, "flops"].notna()
        fill |= table.loc[covered, "bytes"].isna()
        rows = covered[fill.to_numpy()]
        table.loc[rows, COST_COLUMNS] = costs.loc[rows, COST_COLUMNS].to_numpy(dtype=float)
        if len(rows):
            notes.extend(n for n in source_notes if any(r in n for r in rows))
    return table, notes


def estimate_latency_ms(
    profile: Profile,
    flops_scale: Mapping[str, float] | None = None,
    bytes_scale: Mapping[str, float] | None = None,
) -> float:
    """End-to-end median of a variant of the profiled model, estimated by the cost model.

    Each attributed layer's measured time scales with the resource that bounds it on the
    roofline (``bound``: its FLOPs when compute-bound, its bytes when memory-bound, the
    larger of the two ratios when unknown); layers fused into another run inside it and
    take its ratio. The profile's end-to-end median then scales by the change of the
    attributed time as a whole, so per-layer instrumentation overhead cancels out.

    Args:
        profile: a per-layer profile of the original model (``latency_ms``, ``bound``).
        flops_scale: layer -> the variant's FLOPs over the original's (1 when absent).
        bytes_scale: layer -> the variant's bytes over the original's (1 when absent).

    Returns:
        The estimated median latency in ms; the measured median when no layer changes or
        the profile has no per-layer times.

    Example:
        >>> estimate_latency_ms(p, flops_scale={"fc1": 0.5}, bytes_scale={"fc1": 0.5})
    """
    table = profile.layers
    base = float(profile.latency.median)
    if table.empty or "latency_ms" not in table:
        return base
    flops, nbytes = flops_scale or {}, bytes_scale or {}
    times = table["latency_ms"].astype(float).clip(lower=0.0)
    bounds = table["bound"] if "bound" in table else pd.Series(None, index=table.index)
    host = table["fused_into"] if "fused_into" in table else pd.Series(None, index=table.index)
    ratios = []
    for layer, bound, into in zip(table["layer"], bounds, host, strict=True):
        owner = into if isinstance(into, str) else layer
        by_flops, by_bytes = flops.get(owner, 1.0), nbytes.get(owner, 1.0)
        ratios.append(
            by_flops
            if bound == "compute"
            else by_bytes
            if bound == "memory"
            else max(by_flops, by_bytes)
        )
    attributed = float(times.sum())
    if attributed <= 0:
        return base
    return base * float((times * np.asarray(ratios)).sum()) / attributed


#: a layer above this fraction of the roof is impossible: the ceilings are re-measured once
ROOF_TOLERANCE = 1.05


@dataclass(frozen=True)
class Roofline:
    """A layer table placed on the roofline.

    Attributes:
        layers: the table with ``achieved_flops_per_s``, ``bound`` and ``roof_fraction``.
        ceilings: the ceilings used, as a profile's ``environment["machine_ceilings"]``
            records them (``above_roof`` and ``flops_basis`` when they apply); None: the
            roofline was not drawn.
        notes: layers still above the roof, in words.
    """

    layers: pd.DataFrame
    ceilings: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()


def roofline(
    layers: pd.DataFrame,
    device: str,
    ceilings: Ceilings | None = None,
    *,
    remeasure: bool = True,
) -> Roofline:
    """Place each layer on the roofline: ``achieved_flops_per_s``, ``bound``, ``roof_fraction``.

    A layer's work is its ``executed_flops`` where the backend reported them (a Winograd
    convolution executes fewer multiply-adds than its nominal ``flops``), else the nominal
    ``flops``; its intensity for the roof is that work over its bytes. ``bound`` is
    ``"compute"`` when the intensity is at or above the ridge point (peak FLOP/s /
    bandwidth), else ``"memory"``; ``roof_fraction`` is the attained FLOP/s over the roof at
    that intensity (1.0 = on the roof).

    A fraction above `ROOF_TOLERANCE` means the ceilings were measured low (a busy machine,
    a stale cache): unless ``ceilings`` were given or ``remeasure`` is False, they are
    measured again once. A layer still above the roof keeps its measured fraction, and a
    note and the ceilings' ``above_roof`` name it. ``layers`` is not changed.

    Args:
        layers: a per-layer table with ``flops``, ``bytes`` and ``latency_ms``.
        device: the device the layers ran on (whose ceilings to use).
        ceilings: the ceilings to use (default `machine_ceilings` of ``device``).
        remeasure: re-measure cached ceilings once when a layer is above the roof.

    Example:
        >>> roofline(p.layers, p.device).layers[["layer", "roof_fraction", "bound"]]
    """
    given = ceilings is not None
    ceilings = ceilings or machine_ceilings(device)
    table = layers.copy()
    _roof_columns(table, ceilings)
    if not given and remeasure and (table["roof_fraction"] > ROOF_TOLERANCE).any():
        ceilings = machine_ceilings(device, refresh=True)
        _roof_columns(table, ceilings)
    record = ceilings.to_dict()
    notes: list[str] = []
    above = table.loc[table["roof_fraction"] > ROOF_TOLERANCE, ["layer", "roof_fraction"]]
    if len(above):
        named = ", ".join(f"{r.layer} ({r.roof_fraction:.2f})" for r in above.itertuples())
        record["above_roof"] = dict(zip(above["layer"], above["roof_fraction"], strict=True))
        notes.append(
            f"above the measured roof even after re-measuring the ceilings: {named}; "
            "the ceilings are likely low (a busy machine), the fractions are as measured"
        )
    executed = _executed_flops(table)
    if executed.notna().any():
        record["flops_basis"] = "executed FLOPs where the backend reported them, else nominal"
    return Roofline(table, record, tuple(notes))


def add_roofline(
    profile: Profile, ceilings: Ceilings | None = None, *, remeasure: bool = True
) -> Profile:
    """A new profile whose layers are placed on the roofline (see `roofline`).

    Its notes name any layer still above the roof, and ``environment["machine_ceilings"]``
    records the ceilings used. ``profile`` is not changed.

    Example:
        >>> add_roofline(p).layers[["layer", "roof_fraction", "bound"]]
    """
    found = roofline(profile.layers, profile.device, ceilings, remeasure=remeasure)
    return dataclasses.replace(
        profile,
        layers=found.layers,
        notes=(*profile.notes, *found.notes),
        environment={**profile.environment, "machine_ceilings": found.ceilings},
    )


def _executed_flops(table: pd.DataFrame) -> pd.Series:
    if "executed_flops" not in table:
        return pd.Series(np.nan, index=table.index)
    return table["executed_flops"].astype(float)


def _roof_columns(table: pd.DataFrame, ceilings: Ceilings) -> None:
    seconds = table["latency_ms"].astype(float) / 1e3
    executed = _executed_flops(table)
    flops = executed.where(executed.notna(), table["flops"].astype(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        nbytes = table["bytes"].astype(float)
        intensity = flops / nbytes.where(nbytes > 0)
        achieved = (flops / seconds.where(seconds > 0)).astype(float)
        # the bytes a layer touches set its bandwidth roof: a cache's when they fit one
        bandwidth = pd.Series(ceilings.bandwidth_for(nbytes.fillna(np.inf)), index=table.index)
        roof = np.minimum(ceilings.peak_flops_per_s, intensity * bandwidth)
        table["achieved_flops_per_s"] = achieved
        table["roof_fraction"] = achieved / roof.where(roof > 0)
    ridge = ceilings.peak_flops_per_s / bandwidth
    bound = pd.Series(np.where(intensity >= ridge, "compute", "memory"), index=table.index)
    table["bound"] = bound.astype(object).where(intensity.notna(), None)
