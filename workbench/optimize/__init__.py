"""Transforms that trade accuracy for speed: quantization, pruning, sensitivity.

Each transform is a config dataclass registered under a short name (see `base`); the
public entry points are ``wb.quantize``, ``wb.prune``, ``wb.sensitivity`` and
``wb.suggest``. The configs are importable from here (functions stay in their modules,
whose names they share):

Example:
    >>> from workbench.optimize import ChannelPrune, Int8Static
    >>> q = wb.quantize(m, Int8Static(calibration="minmax"), calibration=data)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Transform": "base",
    "config_to_dict": "base",
    "config_from_dict": "base",
    "register": "base",
    "transform_names": "base",
    "Int8Dynamic": "quantize",
    "Int8Static": "quantize",
    "Fp16": "quantize",
    "Bf16": "quantize",
    "MagnitudePrune": "prune",
    "ChannelPrune": "prune",
    "sqnr_db": "sensitivity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.optimize' has no attribute {name!r}")
    return getattr(importlib.import_module(f"workbench.optimize.{module}"), name)
