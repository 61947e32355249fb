"""Shared helpers of the Numba backend tests: tiny ONNX models and their references."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workbench.model import Model

OPSET = 20


def single_node_model(
    op_type: str,
    inputs: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    constants: Mapping[str, np.ndarray] | None = None,
    outputs: Sequence[str] = ("y",),
) -> Model:
    """A one-node ONNX `Model`: ``inputs`` become graph inputs, ``constants`` initializers."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    constants = dict(constants or {})
    node = helper.make_node(
        op_type, [*inputs, *constants], list(outputs), name=f"{op_type.lower()}0", **(attrs or {})
    )
    graph = helper.make_graph(
        [node],
        f"{op_type.lower()}_test",
        [_value_info(name, value) for name, value in inputs.items()],
        [helper.make_tensor_value_info(name, 0, None) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name=f"{op_type}-test")


def _value_info(name: str, value: np.ndarray) -> Any:
    from onnx import helper

    elem = helper.np_dtype_to_tensor_dtype(value.dtype)
    return helper.make_tensor_value_info(name, elem, list(value.shape))


def ort_outputs(model: Model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime's outputs for ``model`` on ``feeds`` (CPU, default graph optimisations)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
    return [np.asarray(v) for v in session.run(None, dict(feeds))]
