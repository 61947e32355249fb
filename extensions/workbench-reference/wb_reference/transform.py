"""Weight fake-quantization: preview the accuracy of N-bit weights in float."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from workbench.errors import TransformError
from workbench.model import Model
from workbench.optimize.base import Transform, config_to_dict


@dataclasses.dataclass(frozen=True)
class FakeQuantWeights(Transform):
    """Round Linear/Conv weights to a symmetric per-output-channel grid of ``bits`` bits.

    Args:
        bits: bits per weight (2..8).
        exclude: canonical layer names to leave untouched.
    """

    bits: int = 4
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be in 2..8, got {self.bits}")

    def label(self) -> str:
        return f"fake-quant-weights(int{self.bits})"

    def apply(self, model: Model, data: Any = None) -> Model:
        import torch

        if model.framework != "torch" or model.module is None:
            raise TransformError("fake-quant-weights works on torch models")
        module = copy.deepcopy(model.module)  # the caller's model stays as it was
        levels = 2 ** (self.bits - 1) - 1
        touched = []
        with torch.no_grad():
            for path, sub in module.named_modules():
                weight = getattr(sub, "weight", None)
                if path in self.exclude or not isinstance(sub, torch.nn.Linear | torch.nn.Conv2d):
                    continue
                flat = weight.reshape(weight.shape[0], -1)
                scale = flat.abs().amax(dim=1).clamp(min=1e-12) / levels
                flat.copy_(
                    torch.round(flat / scale[:, None]).clamp(-levels, levels) * scale[:, None]
                )
                touched.append(path)
        return model.derive(module=module, recipe=config_to_dict(self, layers=touched))
