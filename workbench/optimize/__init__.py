"""Transforms that trade accuracy for speed: quantization, pruning, sensitivity.

Each transform is a config dataclass registered under a short name (see `base`); the
public entry points are `quantize`, `prune`, `sensitivity` and `suggest`.
"""
