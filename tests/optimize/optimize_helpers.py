"""Helpers for the optimize tests (a uniquely named module: every test folder has a
conftest, so ``from conftest import ...`` would pick whichever was imported last)."""

from __future__ import annotations

import hashlib

import numpy as np

import workbench as wb
from workbench.model import Model


def model_state(model: Model) -> str:
    """A hash of everything a transform must not touch: weights, buffers and ONNX graph."""
    digest = hashlib.sha256()
    if model.module is not None:
        for key, value in model.module.state_dict().items():
            digest.update(key.encode() + value.detach().numpy().tobytes())
        digest.update(repr(model.module).encode())
        digest.update(str(len(model.module._forward_hooks)).encode())
    if model.proto is not None:
        digest.update(model.proto.SerializeToString())
    return digest.hexdigest()


def run(model: Model, x: np.ndarray, backend: str = "onnxruntime") -> np.ndarray:
    return wb.backend(backend).compile(model, "cpu").run({model.inputs[0].name: x})[0]
