"""Transforms that trade accuracy for speed: quantization, pruning, trees, sensitivity.

Each transform is a config dataclass registered under a short name (see `base`); the
public entry points are ``wb.transform`` (with its aliases ``wb.quantize`` and
``wb.prune``), ``wb.sensitivity`` and ``wb.suggest``. The configs and the recipe
helpers are importable from here (functions stay in their modules):

Example:
    >>> from workbench.optimize import ChannelPrune, Int8Static, chain_from_dict
    >>> q = wb.quantize(wb.prune(m, ChannelPrune()), Int8Static(method="minmax"), train)
    >>> chain_from_dict(q.recipe)
    [ChannelPrune(sparsity=0.5, ...), Int8Static(method='minmax', ...)]
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Transform": "base",
    "config_to_dict": "base",
    "config_from_dict": "base",
    "chain_to_dict": "base",
    "chain_from_dict": "base",
    "recipe_steps": "base",
    "transform": "base",
    "register": "base",
    "transform_names": "base",
    "Int8Dynamic": "quantize",
    "Int8Static": "quantize",
    "Fp16": "quantize",
    "Bf16": "quantize",
    "MagnitudePrune": "prune",
    "ChannelPrune": "prune",
    "sqnr_db": "sensitivity",
    "TreeThresholds": "trees",
    "TreePrune": "trees",
    "TreeDepth": "trees",
    "TableInt8": "embeddings",
    "TableInt4": "embeddings",
    "TableFp16": "embeddings",
    "TablePrune": "embeddings",
    "table_bytes": "embeddings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # not a user error: a module's __getattr__ answers a missing name with an
        # AttributeError (hasattr, getattr with a default and star imports rely on it)
        raise AttributeError(f"module 'workbench.optimize' has no attribute {name!r}")
    return getattr(importlib.import_module(f"workbench.optimize.{module}"), name)
