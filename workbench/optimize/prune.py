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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from workbench.errors import TransformError
from workbench.model import Model
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


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


@register("prune-magnitude")
@dataclasses.dataclass(frozen=True)
class MagnitudePrune(Transform):
    """Zero the smallest-magnitude weights of Linear / Conv layers, permanently.

    Args:
        sparsity: fraction of weights set to zero, in [0, 1).
        scope: ``"global"`` (one threshold over all layers) or ``"layer"`` (each layer
            pruned to ``sparsity``).
        exclude: canonical layer names left untouched.

    Example:
        >>> sparse = wb.prune(m, MagnitudePrune(sparsity=0.7, scope="layer"))
    """

    sparsity: float = 0.5
    scope: Literal["global", "layer"] = "global"
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be global or layer, got {self.scope!r}")

    def label(self) -> str:
        return f"prune-magnitude({self.sparsity:.0%})"

    def apply(self, model: Model, data: Any = None) -> Model:
        if model.framework == "torch":
            return self._torch(model)
        return self._onnx(model)

    def _torch(self, model: Model) -> Model:
        import torch

        assert model.module is not None
        module = copy.deepcopy(model.module)
        weights = {
            name: sub.weight
            for name, sub in module.named_modules()
            if _is_weighted(sub) and name not in self.exclude
        }
        arrays = {k: w.detach().cpu().numpy() for k, w in weights.items()}
        masks = self._masks(arrays)
        with torch.no_grad():
            for name, weight in weights.items():
                weight.mul_(torch.from_numpy(masks[name]).to(weight.dtype))
        return torch_variant(model, module, self._recipe(masks))

    def _onnx(self, model: Model) -> Model:
        from onnx import numpy_helper

        proto = parent_proto(model)
        targets = _onnx_weights(proto, set(self.exclude))
        inits = {i.name: i for i in proto.graph.initializer if i.name in targets}
        arrays = {k: numpy_helper.to_array(v) for k, v in inits.items()}
        masks = self._masks(arrays)
        for name, init in inits.items():
            pruned = (arrays[name] * masks[name]).astype(arrays[name].dtype)
            init.CopyFrom(numpy_helper.from_array(pruned, name))
        return onnx_variant(model, proto, self._recipe(masks))

    def _masks(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not arrays:
            raise TransformError("the model has no Linear/Conv weights to prune")
        if self.scope == "layer":
            return {k: _keep_mask(np.abs(a), self.sparsity) for k, a in arrays.items()}
        flat = np.concatenate([np.abs(a).ravel() for a in arrays.values()])
        mask = _keep_mask(flat, self.sparsity)
        out, start = {}, 0
        for key, array in arrays.items():
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


def _onnx_weights(proto: onnx.ModelProto, exclude: set[str]) -> set[str]:
    """Initializers used as the weight (second input) of Conv / Gemm / MatMul nodes."""
    layers = node_layers(proto)
    floats = {
        i.name for i in proto.graph.initializer if i.data_type in (1, 10, 11) and len(i.dims) >= 2
    }
    names = set()
    for node in proto.graph.node:
        weight = node.input[1] if len(node.input) > 1 else ""
        if (
            node.op_type in _WEIGHT_OPS
            and weight in floats
            and layers.get(node.name) not in exclude
        ):
            names.add(weight)
    return names


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

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        if self.norm not in ("l1", "l2"):
            raise ValueError(f"norm must be l1 or l2, got {self.norm!r}")

    def label(self) -> str:
        tuned = f", ft{self.finetune_epochs}" if self.finetune_epochs else ""
        return f"prune-channels({self.sparsity:.0%}{tuned})"

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
        shapes = {}
        for group in plan.groups:
            members = [group.producer, *group.tied]
            if set(members) & set(self.exclude):
                continue
            before_after = prune_group(module, group, self.sparsity, self.norm)
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
            output = module(*tensors)
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
            ``finetune_epochs``, ``exclude``.

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
