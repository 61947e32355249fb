"""Structured channel pruning that physically shrinks torch layers and their consumers.

The module is traced with ``torch.fx``; from each Linear / Conv2d (the producer) the
graph is followed through ops that keep channels independent (activations, pooling,
dropout, upsampling) to the layers that read its channels: a following BatchNorm is
cut to the kept channels, and the next Linear / Conv2d loses the matching inputs (after
a Flatten, each channel is ``H*W`` consecutive input features). Producers whose
outputs meet in an ``add`` (residual connections) are tied into one group that keeps
the same channels, when every input of those adds comes from the group. A producer
whose output reaches anything else (a reshape, a concat, a LayerNorm, the model output,
an add with a model input or a parameter) is left whole, and the reason goes into the
recipe's notes. A module torch.fx cannot trace (Python control flow: every Hugging Face
model) is exported with ``torch.export`` instead, and its Linear layers are followed
through the aten graph (`_plan_exported`): a transformer's MLP hidden layers shrink.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import TransformError

if TYPE_CHECKING:
    import torch
    from torch import fx, nn


@dataclass
class ChannelGroup:
    """One prunable producer and the layers that read its output channels.

    Attributes:
        producer: module path of the Linear / Conv2d whose outputs are pruned.
        norms: module paths of BatchNorm layers cut to the kept channels.
        consumers: ``(module path, features per channel)`` of layers losing inputs.
        tied: other producers whose outputs are added to this one's (a residual
            connection); all of them keep the same channels.
    """

    producer: str
    norms: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)
    tied: list[str] = field(default_factory=list)
    channels: int = 0
    adds: list[Any] = field(default_factory=list, repr=False)
    visited: set[Any] = field(default_factory=set, repr=False)


@dataclass
class Plan:
    """What can be pruned in a module, and why the rest cannot."""

    groups: list[ChannelGroup]
    skipped: dict[str, str]


_PASS_MODULES = (
    "ReLU",
    "ReLU6",
    "GELU",
    "SiLU",
    "Sigmoid",
    "Tanh",
    "LeakyReLU",
    "Hardswish",
    "ELU",
    "Dropout",
    "Identity",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "Upsample",
)


def plan_channels(module: nn.Module, example: tuple[torch.Tensor, ...], tie: bool = True) -> Plan:
    """Find the prunable producers of ``module`` (traced on ``example`` inputs).

    With ``tie``, producers whose outputs meet in an ``add`` (residual connections)
    form one group that keeps the same channels, provided every input of those adds
    comes from the group's producers; otherwise such producers are skipped.

    Raises:
        TransformError: the module cannot be traced by ``torch.fx``.
    """
    from torch import fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        traced = fx.symbolic_trace(module)
        ShapeProp(traced).propagate(*example)
    except Exception as exc:  # fx fails on Python control flow (every Hugging Face model)
        return _plan_exported(module, example, exc)
    modules = dict(traced.named_modules())
    groups, skipped = [], {}
    for node in traced.graph.nodes:
        if node.op != "call_module" or not _is_producer(modules[str(node.target)]):
            continue
        group, reason = _follow(node, modules, tie)
        if group is None:
            skipped[str(node.target)] = reason
        else:
            groups.append(group)
    if tie:
        groups = _tie(groups, skipped)
    return Plan(groups, skipped)


#: aten ops that keep channels independent (elementwise, dropout in eval mode)
_ATEN_PASS = frozenset(
    {"relu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "leaky_relu"}
    | {"elu", "relu6", "dropout", "clone", "contiguous", "alias", "identity"}
)


def _plan_exported(
    module: nn.Module, example: tuple[torch.Tensor, ...], fx_error: Exception
) -> Plan:
    """The plan from a torch.export graph, for modules torch.fx cannot trace.

    torch.export records Python control flow away, leaving aten ops whose weights name
    their modules: each ``aten.linear`` of an ``nn.Linear`` is followed through
    elementwise ops to the ``aten.linear`` layers reading it. Anything else it reaches (a
    reshape, a LayerNorm, an add) keeps it whole, said in the notes; residual ties and
    convolutions are left to the torch.fx route.

    Raises:
        TransformError: torch.export fails too; one line with both reasons.
    """
    import torch
    from torch import nn

    try:
        program = torch.export.export(module, example, strict=False)
    except Exception as exc:
        raise TransformError(
            f"no layer of {type(module).__name__} can be channel-pruned: structured pruning "
            f"follows each layer's channels through a torch.fx trace ({_first(fx_error)}) "
            f"or a torch.export graph ({_first(exc)}), and neither works on this model; "
            "prune single weights instead: wb.prune(m, sparsity=..., structured=False)"
        ) from exc
    params = program.graph_signature.inputs_to_parameters
    modules = dict(module.named_modules())

    def linear_of(node: Any) -> str:
        """The module path of the nn.Linear an ``aten.linear`` node applies, or ""."""
        if node.op != "call_function" or _aten(node) != "linear" or len(node.args) < 2:
            return ""
        path = params.get(getattr(node.args[1], "name", ""), "").removesuffix(".weight")
        return path if isinstance(modules.get(path), nn.Linear) else ""

    groups: list[ChannelGroup] = []
    skipped: dict[str, str] = {}
    calls = [(node, linear_of(node)) for node in program.graph.nodes]
    counts: dict[str, int] = {}
    for _, path in calls:
        counts[path] = counts.get(path, 0) + 1
    for node, path in calls:
        if not path:
            continue
        if counts[path] > 1:
            skipped[path] = "it runs more than once (shared weights)"
            continue
        group = ChannelGroup(path, channels=int(modules[path].weight.shape[0]))
        reason = _follow_exported(node, group, linear_of)
        if reason:
            skipped[path] = reason
        else:
            groups.append(group)
    return Plan(groups, skipped)


def _follow_exported(start: Any, group: ChannelGroup, linear_of: Any) -> str:
    """Walk an ``aten.linear`` output to the linear layers reading its features, or why not."""
    pending, seen = [start], set()
    while pending:
        node = pending.pop()
        seen.add(node)
        for user in node.users:
            if user.op == "output":
                return "its output is a model output"
            first = user.args[0] if user.args else None
            if linear_of(user) and first is node:
                group.consumers.append((linear_of(user), 1))
            elif user.op == "call_function" and _aten(user) in _ATEN_PASS and first is node:
                if user not in seen:
                    pending.append(user)
            else:
                return f"its output feeds {_aten(user) or user.op}"
    return "" if group.consumers else "no layer consumes its features"


def _aten(node: Any) -> str:
    """``gelu`` for ``aten.gelu.default``; "" for anything not an aten op."""
    parts = str(node.target).split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "aten" else ""


def _first(exc: BaseException) -> str:
    """``Type: first line`` of an exception, cut short (tracers' messages span pages)."""
    line = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _tie(groups: list[ChannelGroup], skipped: dict[str, str]) -> list[ChannelGroup]:
    """Merge groups that meet in an add; drop (into ``skipped``) clusters that cannot be cut."""
    untied = [g for g in groups if not g.adds]
    clusters: list[list[ChannelGroup]] = []
    for group in (g for g in groups if g.adds):
        joined = [c for c in clusters if any(set(g.adds) & set(group.adds) for g in c)]
        merged = [group, *(g for c in joined for g in c)]
        clusters = [c for c in clusters if c not in joined] + [merged]
    for cluster in clusters:
        visited = set().union(*(g.visited for g in cluster))
        adds = {a for g in cluster for a in g.adds}
        loose = [a for a in adds for x in a.args if hasattr(x, "op") and x not in visited]
        names = [g.producer for g in cluster]
        sizes = {g.channels for g in cluster}
        if loose or len(sizes) > 1:
            why = (
                "an add also reads a tensor no prunable layer produces"
                if loose
                else ("the tied layers have different widths")
            )
            for name in names:
                skipped[name] = f"its output feeds an add (tied with {names}); {why}"
            continue
        head = cluster[0]
        head.tied = names[1:]
        head.norms = list(dict.fromkeys(n for g in cluster for n in g.norms))
        head.consumers = list(dict.fromkeys(c for g in cluster for c in g.consumers))
        untied.append(head)
    return untied


def _is_producer(module: nn.Module) -> bool:
    from torch import nn

    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    return isinstance(module, nn.Linear)


def _follow(
    start: fx.Node, modules: dict[str, nn.Module], tie: bool = False
) -> tuple[ChannelGroup | None, str]:
    """Walk from a producer to every layer that reads its channels."""
    producer: Any = modules[str(start.target)]
    group = ChannelGroup(str(start.target), channels=int(producer.weight.shape[0]))
    channel_axis = 1 if type(producer).__name__ == "Conv2d" else -1
    pending: list[tuple[fx.Node, int, int]] = [(start, channel_axis, 1)]
    while pending:
        node, axis, factor = pending.pop()
        if node in group.visited:
            continue
        group.visited.add(node)
        for user in node.users:
            step = _step(user, node, axis, factor, modules, group, tie)
            if isinstance(step, str):
                return None, step
            if step is not None:
                pending.append((user, *step))
    if not group.consumers:
        return None, "no layer consumes its channels"
    return group, ""


def _step(
    user: fx.Node,
    source: fx.Node,
    axis: int,
    factor: int,
    modules: dict[str, nn.Module],
    group: ChannelGroup,
    tie: bool = False,
) -> tuple[int, int] | str | None:
    """Record what ``user`` does with the channels: continue (axis, factor), stop, or why not."""
    from torch import nn

    ndim = len(source.meta["tensor_meta"].shape)
    axis = axis % ndim
    if user.op == "call_module":
        sub = modules[str(user.target)]
        kind = type(sub).__name__
        if kind in _PASS_MODULES:
            return axis, factor
        if isinstance(sub, nn.BatchNorm2d | nn.BatchNorm1d) and axis == 1 and factor == 1:
            group.norms.append(str(user.target))
            return axis, factor
        if isinstance(sub, nn.Flatten):
            return _flattened(source, axis, factor, sub.start_dim, sub.end_dim)
        if isinstance(sub, nn.Linear) and axis == ndim - 1:
            group.consumers.append((str(user.target), factor))
            return None
        if isinstance(sub, nn.Conv2d) and sub.groups == 1 and axis == 1 and factor == 1:
            group.consumers.append((str(user.target), 1))
            return None
        return f"its output feeds {user.target} ({kind})"
    if user.op == "call_function" and _passes(user.target) and user.args[0] is source:
        return axis, factor
    if _is_flatten(user) and user.args[0] is source:
        start: Any = user.kwargs.get("start_dim", user.args[1] if len(user.args) > 1 else 0)
        end: Any = user.kwargs.get("end_dim", user.args[2] if len(user.args) > 2 else -1)
        return _flattened(source, axis, factor, int(start), int(end))
    if user.op == "call_function" and user.target in (operator.add, operator.iadd):
        if tie and factor == 1 and all(not isinstance(a, int | float) for a in user.args):
            group.adds.append(user)
            return axis, factor
        return "its output feeds an add (a residual connection ties its channels)"
    if user.op == "output":
        return "its output is a model output"
    return f"its output feeds {user.op} {getattr(user.target, '__name__', user.target)}"


def _flattened(
    source: fx.Node, axis: int, factor: int, start: int, end: int
) -> tuple[int, int] | str:
    shape = list(source.meta["tensor_meta"].shape)
    start, end = start % len(shape), end % len(shape)
    if not start <= axis <= end:
        return axis, factor
    if axis != start:
        return "a flatten mixes its channels into a non-leading position"
    inner = int(np.prod(shape[axis + 1 : end + 1], dtype=np.int64))
    return start, factor * inner


def _is_flatten(user: fx.Node) -> bool:
    import torch

    if user.op == "call_method":
        return user.target == "flatten"
    return user.op == "call_function" and user.target is torch.flatten


def _passes(target: Any) -> bool:
    import torch
    import torch.nn.functional as F

    return target in (
        F.relu,
        torch.relu,
        F.gelu,
        F.silu,
        torch.sigmoid,
        torch.tanh,
        F.interpolate,
        F.max_pool2d,
        F.avg_pool2d,
        F.adaptive_avg_pool2d,
        F.dropout,
    )


# ---- applying a plan ------------------------------------------------------------------
def channel_scores(weight: torch.Tensor, norm: str) -> torch.Tensor:
    """Importance of each output channel: the L1 or L2 norm of its weights."""
    flat = weight.detach().flatten(1)
    return flat.abs().sum(1) if norm == "l1" else flat.pow(2).sum(1).sqrt()


def prune_group(
    root: nn.Module, group: ChannelGroup, sparsity: float, norm: str
) -> tuple[int, int]:
    """Shrink one group in place on ``root`` (a private copy); returns (before, after) channels."""
    import torch

    producers: list[Any] = [root.get_submodule(n) for n in [group.producer, *group.tied]]
    channels = int(producers[0].weight.shape[0])
    keep_count = max(1, round(channels * (1.0 - sparsity)))
    # tied producers share one ranking: the sum of their channel norms
    scores = sum(channel_scores(p.weight, norm) for p in producers)
    order = torch.argsort(scores, descending=True)  # type: ignore[arg-type]
    keep = torch.sort(order[:keep_count]).values
    for name, producer in zip([group.producer, *group.tied], producers, strict=True):
        root.set_submodule(name, _slice_out(producer, keep))
    for name in group.norms:
        root.set_submodule(name, _slice_norm(root.get_submodule(name), keep))
    for name, factor in group.consumers:
        index = (keep[:, None] * factor + torch.arange(factor)[None, :]).flatten()
        root.set_submodule(name, _slice_in(root.get_submodule(name), index))
    return channels, keep_count


def _slice_out(layer: Any, keep: torch.Tensor) -> nn.Module:
    return _rebuild(layer, out_index=keep)


def _slice_in(layer: Any, index: torch.Tensor) -> nn.Module:
    return _rebuild(layer, in_index=index)


def _rebuild(
    layer: Any, out_index: torch.Tensor | None = None, in_index: torch.Tensor | None = None
) -> nn.Module:
    import torch
    from torch import nn

    weight = layer.weight.detach()
    if out_index is not None:
        weight = weight[out_index]
    if in_index is not None:
        weight = weight[:, in_index]
    bias = layer.bias
    if bias is not None and out_index is not None:
        bias = bias.detach()[out_index]
    if isinstance(layer, nn.Linear):
        new: Any = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        new = nn.Conv2d(
            weight.shape[1],
            weight.shape[0],
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            1,
            bias is not None,
            layer.padding_mode,
        )
    new = new.to(weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias.detach())
    return new


def _slice_norm(norm: Any, keep: torch.Tensor) -> nn.Module:
    import torch

    new: Any = type(norm)(
        len(keep),
        eps=norm.eps,
        momentum=norm.momentum,
        affine=norm.affine,
        track_running_stats=norm.track_running_stats,
    )
    with torch.no_grad():
        if norm.affine:
            new.weight.copy_(norm.weight.detach()[keep])
            new.bias.copy_(norm.bias.detach()[keep])
        if norm.track_running_stats:
            new.running_mean.copy_(norm.running_mean[keep])
            new.running_var.copy_(norm.running_var[keep])
            new.num_batches_tracked.copy_(norm.num_batches_tracked)
    return new
