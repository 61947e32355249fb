"""Pruning transforms: unstructured magnitude pruning and structured channel pruning.

`MagnitudePrune` zeroes the smallest weights (globally or per layer) and writes the
zeros into the weights themselves: no masks or reparametrisation are left behind. It
works on torch models and on ONNX models (their weight initializers). Zeros alone make
a model no faster on dense kernels; `ChannelPrune` removes whole output channels /
neurons and the inputs that read them, so the layers are really smaller (see
`workbench.optimize.channels`), optionally followed by a short fine-tune.

Example:
    >>> small = wb.prune(m, sparsity=0.5, structured=True, finetune_epochs=3)
    >>> sparse = wb.prune(m, sparsity=0.8)
"""

from __future__ import annotations

import copy
import dataclasses
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from workbench.argtypes import MAX_EPOCHS, number, whole
from workbench.errors import InvalidArgumentError, TransformError
from workbench.model import Model, named_outputs
from workbench.optimize.base import (
    Migration,
    Transform,
    config_to_dict,
    field_added,
    make_config,
    register,
    transform,
)
from workbench.optimize.data_source import resolve_data, to_numpy
from workbench.optimize.onnx_graph import node_layers, onnx_variant, parent_proto
from workbench.optimize.quantize import torch_variant

if TYPE_CHECKING:
    import onnx
    import torch

_WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


#: per-layer prune ratios as a config field: ``(("fc1", 0.3), ...)`` (hashable, JSON-ready)
LayerRatios = tuple[tuple[str, float], ...]


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise InvalidArgumentError(f"sparsity must be in [0, 1), got {sparsity}")


def _check_layer_sparsity(layer_sparsity: LayerRatios) -> None:
    names = [name for name, _ in layer_sparsity]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"layer_sparsity names a layer twice: {names}; give each once")
    for name, ratio in layer_sparsity:
        if not 0.0 <= ratio < 1.0:
            raise InvalidArgumentError(f"layer_sparsity of {name!r} must be in [0, 1), got {ratio}")


def _check_known(layer_sparsity: LayerRatios, known: set[str]) -> None:
    """A per-layer ratio for a layer the transform cannot prune is a mistake, not a no-op."""
    unknown = sorted({name for name, _ in layer_sparsity} - known)
    if unknown:
        raise TransformError(
            f"layer_sparsity names layers that cannot be pruned: {unknown}; "
            f"prunable layers are {sorted(known)}"
        )


def _ratios_label(layer_sparsity: LayerRatios) -> str:
    """``", fc1 30%, fc2 0%"``; past three layers a count and a digest (labels are cache keys)."""
    if not layer_sparsity:
        return ""
    pairs = sorted(layer_sparsity)
    if len(pairs) <= 3:
        return "".join(f", {name} {ratio:.0%}" for name, ratio in pairs)
    digest = zlib.crc32(repr(pairs).encode())
    return f", {len(pairs)} layers own ratio #{digest:08x}"


@register("prune-magnitude")
@dataclasses.dataclass(frozen=True)
class MagnitudePrune(Transform):
    """Zero the smallest-magnitude weights of Linear / Conv layers, permanently.

    Args:
        sparsity: fraction of weights set to zero, in [0, 1).
        scope: ``"global"`` (one threshold over all layers) or ``"layer"`` (each layer
            pruned to ``sparsity``).
        exclude: canonical layer names left untouched.
        layer_sparsity: ``(layer, ratio)`` pairs: each named layer is pruned alone to its
            own ratio (the layer's smallest-magnitude weights), whatever ``scope``; the
            other layers follow ``sparsity`` and ``scope``. ``exclude`` wins over it.

    Example:
        >>> sparse = wb.prune(m, MagnitudePrune(sparsity=0.7, scope="layer"))
        >>> gentle = wb.prune(m, sparsity=0.5, layer_sparsity=(("head", 0.1),))
    """

    sparsity: float = 0.5
    scope: Literal["global", "layer"] = "global"
    exclude: tuple[str, ...] = ()
    layer_sparsity: LayerRatios = ()

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_layer_sparsity(self.layer_sparsity)
        if self.scope not in ("global", "layer"):
            raise InvalidArgumentError(f"scope must be global or layer, got {self.scope!r}")

    def label(self) -> str:
        return f"prune-magnitude({self.sparsity:.0%}{_ratios_label(self.layer_sparsity)})"

    def apply(self, model: Model, data: Any = None) -> Model:
        if model.framework == "torch":
            return self._torch(model)
        return self._onnx(model)

    def _torch(self, model: Model) -> Model:
        import torch

        assert model.module is not None
        module = copy.deepcopy(model.module)
        weighted = {name: sub.weight for name, sub in module.named_modules() if _is_weighted(sub)}
        _check_known(self.layer_sparsity, set(weighted))
        weights = {k: w for k, w in weighted.items() if k not in self.exclude}
        arrays = {k: w.detach().cpu().numpy() for k, w in weights.items()}
        masks = self._masks(arrays)
        with torch.no_grad():
            for name, weight in weights.items():
                weight.mul_(torch.from_numpy(masks[name]).to(weight.dtype))
        return torch_variant(model, module, self._recipe(masks))

    def _onnx(self, model: Model) -> Model:
        from onnx import numpy_helper

        proto = parent_proto(model)
        targets = _onnx_weights(proto)  # layer -> its weight initializers
        _check_known(self.layer_sparsity, set(targets))
        # the masks are keyed by layer, so a layer's own ratio reaches its weights only
        kept = {layer: names for layer, names in targets.items() if layer not in self.exclude}
        inits = {i.name: i for i in proto.graph.initializer}
        arrays = {
            layer: [numpy_helper.to_array(inits[n]) for n in names] for layer, names in kept.items()
        }
        masks = self._masks({k: np.concatenate([a.ravel() for a in v]) for k, v in arrays.items()})
        for layer, names in kept.items():
            start = 0
            for name, array in zip(names, arrays[layer], strict=True):
                mask = masks[layer][start : start + array.size].reshape(array.shape)
                start += array.size
                pruned = (array * mask).astype(array.dtype)
                inits[name].CopyFrom(numpy_helper.from_array(pruned, name))
        return onnx_variant(model, proto, self._recipe(masks))

    def _masks(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Keep-masks by layer: layers with their own ratio alone, the rest by ``scope``."""
        if not arrays:
            raise TransformError("the model has no Linear/Conv weights to prune")
        own = {k: v for k, v in self.layer_sparsity if k in arrays}
        out = {k: _keep_mask(np.abs(arrays[k]), ratio) for k, ratio in own.items()}
        rest = {k: a for k, a in arrays.items() if k not in own}
        if self.scope == "layer" or not rest:
            out.update({k: _keep_mask(np.abs(a), self.sparsity) for k, a in rest.items()})
            return out
        flat = np.concatenate([np.abs(a).ravel() for a in rest.values()])
        mask = _keep_mask(flat, self.sparsity)
        start = 0
        for key, array in rest.items():
            out[key] = mask[start : start + array.size].reshape(array.shape)
            start += array.size
        return out

    def _recipe(self, masks: dict[str, np.ndarray]) -> dict[str, Any]:
        total = sum(m.size for m in masks.values())
        zeros = sum(int((m == 0).sum()) for m in masks.values())
        return config_to_dict(self, achieved_sparsity=zeros / max(total, 1))


def _keep_mask(magnitudes: np.ndarray, sparsity: float) -> np.ndarray:
    """1 for weights kept, 0 for the ``sparsity`` fraction with the smallest magnitude."""
    flat = magnitudes.ravel()
    count = int(np.floor(sparsity * flat.size))
    mask = np.ones(flat.size, dtype=np.float32)
    if count:
        # argpartition breaks ties by position, so exactly `count` weights are zeroed
        mask[np.argpartition(flat, count - 1)[:count]] = 0.0
    return mask.reshape(magnitudes.shape)


def _is_weighted(module: Any) -> bool:
    from torch import nn

    return isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)


def _onnx_weights(proto: onnx.ModelProto) -> dict[str, list[str]]:
    """Canonical layer -> the initializers its Conv / Gemm / MatMul nodes use as weights
    (second input); a weight shared by two layers goes to the first only."""
    layers = node_layers(proto)
    floats = {
        i.name for i in proto.graph.initializer if i.data_type in (1, 10, 11) and len(i.dims) >= 2
    }
    targets: dict[str, list[str]] = {}
    seen: set[str] = set()
    for node in proto.graph.node:
        weight = node.input[1] if len(node.input) > 1 else ""
        if node.op_type in _WEIGHT_OPS and weight in floats and weight not in seen:
            seen.add(weight)
            targets.setdefault(layers.get(node.name) or node.name, []).append(weight)
    return targets


@register("prune-channels")
@dataclasses.dataclass(frozen=True)
class ChannelPrune(Transform):
    """Remove whole output channels / neurons of Linear and Conv2d layers (torch models).

    Each prunable layer keeps the ``1 - sparsity`` fraction of its output channels with
    the largest weight norm; a following BatchNorm and the next layer's inputs shrink to
    match. Layers whose outputs are added together (residual connections) are pruned
    as one group with the same kept channels, when every input of those adds comes from
    such layers; layers whose outputs reach anything else (reshapes, model outputs,
    adds with other tensors) are skipped, and the recipe's ``notes`` say which and why.

    Args:
        sparsity: fraction of channels removed from each prunable layer, in [0, 1).
        norm: channel importance, ``"l1"`` or ``"l2"`` norm of its weights.
        finetune_epochs: epochs of Adam fine-tuning on the data after pruning (0: none).
        learning_rate: Adam's learning rate for the fine-tune.
        exclude: canonical layer names whose outputs are not pruned (excluding one layer
            of a tied group keeps the whole group).
        tie_residuals: prune layers whose outputs are added together (ResNet blocks) as
            one group keeping the same channels; False skips them instead.
        layer_sparsity: ``(layer, ratio)`` pairs: each named layer loses its own ratio of
            output channels instead of ``sparsity``; a tied group takes the lowest ratio
            given to any of its members (the recipe's notes say so).

    Example:
        >>> small = wb.prune(m, ChannelPrune(sparsity=0.5, finetune_epochs=3), data=train)
    """

    # version 2: residual tying (on by default) arrived after version 1 recipes were
    # written without the field, and those skipped layers whose outputs are added
    version: ClassVar[int] = 2
    migrations: ClassVar[Mapping[int, Migration]] = {1: field_added("tie_residuals", False)}

    sparsity: float = 0.5
    norm: Literal["l1", "l2"] = "l1"
    finetune_epochs: int = 0
    learning_rate: float = 1e-3
    exclude: tuple[str, ...] = ()
    tie_residuals: bool = True
    layer_sparsity: LayerRatios = ()

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_layer_sparsity(self.layer_sparsity)
        if self.norm not in ("l1", "l2"):
            raise InvalidArgumentError(f"norm must be l1 or l2, got {self.norm!r}")
        whole("finetune_epochs", self.finetune_epochs, minimum=0, maximum=MAX_EPOCHS)
        number("learning_rate", self.learning_rate, above=0.0, maximum=1.0)

    def label(self) -> str:
        tuned = f", ft{self.finetune_epochs}" if self.finetune_epochs else ""
        return f"prune-channels({self.sparsity:.0%}{_ratios_label(self.layer_sparsity)}{tuned})"

    def _group_ratio(self, members: list[str], notes: list[str]) -> float:
        """The group's ratio: its members' own (the lowest, if they differ), else ``sparsity``."""
        own = dict(self.layer_sparsity)
        ratios = sorted({own[m] for m in members if m in own})
        if len(ratios) > 1:
            notes.append(f"{', '.join(members)}: tied, pruned at the lowest ratio {ratios[0]:.0%}")
        return ratios[0] if ratios else self.sparsity

    def apply(self, model: Model, data: Any = None) -> Model:
        import torch

        from workbench.optimize.channels import plan_channels, prune_group

        if model.framework != "torch" or model.module is None:
            raise TransformError(
                "structured channel pruning needs a torch model; ONNX-only models get "
                "unstructured pruning of their weights: wb.prune(m, sparsity=..., structured=False)"
            )
        module = copy.deepcopy(model.module).eval()
        example = tuple(torch.from_numpy(a) for a in model.example_inputs(2).values())
        plan = plan_channels(module, example, tie=self.tie_residuals)
        notes = [f"{layer}: not pruned, {why}" for layer, why in plan.skipped.items()]
        _check_known(self.layer_sparsity, {m for g in plan.groups for m in [g.producer, *g.tied]})
        shapes = {}
        for group in plan.groups:
            members = [group.producer, *group.tied]
            if set(members) & set(self.exclude):
                continue
            ratio = self._group_ratio(members, notes)
            before_after = prune_group(module, group, ratio, self.norm)
            shapes.update(dict.fromkeys(members, before_after))
            if group.tied:
                notes.append(f"{', '.join(members)}: pruned together (outputs added)")
        if not shapes:
            raise TransformError(f"no layer of {model.name} can be channel-pruned: {notes}")
        if self.finetune_epochs:
            train = resolve_data(model, data, "train", "fine-tuning after pruning")
            finetune(module, model, train, self.finetune_epochs, self.learning_rate)
        recipe = config_to_dict(self, channels={k: list(v) for k, v in shapes.items()}, notes=notes)
        return torch_variant(model, module, recipe)


def finetune(module: torch.nn.Module, model: Model, data: Any, epochs: int, lr: float) -> None:
    """Train ``module`` (a private copy) in place with Adam for a few epochs, then eval mode.

    Integer labels use cross-entropy on the logits; float labels use mean squared error.
    """
    import torch

    torch.manual_seed(0)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for _ in range(epochs):
        for inputs, labels in data:
            tensors = [torch.from_numpy(a) for a in model.check_inputs(inputs).values()]
            target = torch.from_numpy(np.ascontiguousarray(to_numpy(labels)))
            # a Hugging Face ModelOutput (or a tuple): its first tensor, the logits
            output = named_outputs(module(*tensors))[0][1]
            if target.dtype.is_floating_point:
                loss = torch.nn.functional.mse_loss(output, target.to(output.dtype))
            else:
                loss = torch.nn.functional.cross_entropy(output, target.long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    module.eval()


def prune(
    model: Any,
    config: Transform | str | Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    structured: bool | None = None,
    **fields: Any,
) -> Model:
    """Prune a model; returns a new `Model`, never changes ``model`` (`transform` alias).

    Args:
        model: a `Model` or anything `workbench.load` accepts.
        config: a `MagnitudePrune` / `ChannelPrune` config, registry name or recipe
            dict; when omitted, ``structured`` picks one.
        data: fine-tuning data for ``finetune_epochs > 0`` (a sample model's training
            split is used when omitted).
        structured: remove whole channels (torch models; really smaller and faster)
            instead of zeroing single weights; only to pick a config, or to check one.
        **fields: config fields, always overriding the config's: ``sparsity`` (fraction
            of weights or channels removed; 0.5 by default), ``scope``, ``norm``,
            ``finetune_epochs``, ``exclude``, ``layer_sparsity`` (per-layer ratios).

    Returns:
        The pruned model, with ``recipe`` recording the config (and, for channel
        pruning, each layer's channels before and after and the layers skipped).

    Raises:
        TransformError: bad settings, ``structured`` contradicting ``config``, or
            structured pruning of an ONNX model.

    Example:
        >>> small = wb.prune(m, sparsity=0.5, structured=True, finetune_epochs=3)
        >>> lighter = wb.prune(m, "prune-channels", sparsity=0.3)  # 30%, not the default
    """
    kinds = {True: "prune-channels", False: "prune-magnitude"}
    if config is None:
        config = kinds[bool(structured)]
    elif structured is not None and (name := make_config(config).name) != kinds[structured]:
        raise TransformError(
            f"structured={structured} contradicts the config {name!r}; pass one of them"
        )
    return transform(model, config, data, **fields)
