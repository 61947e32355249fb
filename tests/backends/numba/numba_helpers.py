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
    opset: int = OPSET,
) -> Model:
    """A one-node ONNX `Model`: ``inputs`` become graph inputs, ``constants`` initializers."""
    from onnx import helper, numpy_helper, shape_inference

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
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    # the outputs' types, which ONNX Runtime needs declared
    proto = shape_inference.infer_shapes(proto, strict_mode=True)
    return model_from_proto(proto, name=f"{op_type}-test")


def _value_info(name: str, value: np.ndarray) -> Any:
    from onnx import helper

    elem = helper.np_dtype_to_tensor_dtype(value.dtype)
    return helper.make_tensor_value_info(name, elem, list(value.shape))


def spec_outputs(model: Model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """``model``'s outputs as the ONNX spec words each op (`onnx.reference`): the reference
    for integer kernels, since ONNX Runtime's u8s8 products on a CPU with AVX2 but no VNNI
    sum pairs of 8-bit products in saturating int16 (``vpmaddubsw``) and so depart from
    the spec by whatever saturated (MatMulInteger 15404 for 21202 on `TINY_CASES`'s)."""
    from onnx.reference import ReferenceEvaluator

    return [np.asarray(v) for v in ReferenceEvaluator(model.proto).run(None, dict(feeds))]


def ort_outputs(model: Model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime's outputs for ``model`` on ``feeds`` (CPU, default graph optimisations)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
    return [np.asarray(v) for v in session.run(None, dict(feeds))]


def _tiny(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


#: Ops whose conformance cases are too big for the CUDA simulator (Erf, Slice), or miss
#: an old opset's form or a broadcast: (op, inputs, attributes, constants, opset); see
#: `tiny_case`.
TINY_CASES = {
    "erf": ("Erf", {"x": 2 * _tiny((2, 5))}, {}, {}, 20),
    "slice-negative-step": (
        "Slice",
        {"x": _tiny((3, 5))},
        {},
        {
            "starts": np.array([2, 1], np.int64),
            "ends": np.array([-4, 5], np.int64),
            "axes": np.array([0, -1], np.int64),
            "steps": np.array([-1, 2], np.int64),
        },
        20,
    ),
    "layernorm-computed-broadcast-scale": (
        "LayerNormalization",
        {"x": _tiny((2, 3, 4)), "scale": _tiny((4,), 1), "bias": _tiny((1, 4), 2)},
        {"axis": 1},
        {},
        20,
    ),
    "lrn-size3": ("LRN", {"x": _tiny((1, 5, 2, 3))}, {"size": 3, "alpha": 0.5}, {}, 20),
    "lrn-size4": ("LRN", {"x": _tiny((2, 4, 3))}, {"size": 4, "beta": 0.5, "bias": 2.0}, {}, 20),
    "pad-reflect-3d": (
        "Pad",
        {"x": _tiny((1, 3, 4))},
        {"mode": "reflect"},
        {"pads": np.array([0, 0, 2, 0, 1, 3], np.int64)},
        20,
    ),
    "pad-opset10-attributes": (
        "Pad",
        {"x": _tiny((2, 3))},
        {"pads": [1, -1, 0, 2], "value": 1.5},
        {},
        2,
    ),
    "clip-opset10-attributes": ("Clip", {"x": _tiny((3, 4))}, {"min": -0.5, "max": 0.25}, {}, 10),
    "where-broadcast": (
        "Where",
        {"c": _tiny((3, 1)) > 0, "a": _tiny((1, 4), 1)},
        {},
        {"b": np.float32(7.0).reshape(())},
        20,
    ),
    # index arithmetic and QDQ INT8 (issue 27): the forms the model set uses, and the
    # attributes their conformance cases leave out
    "gathernd-batch-negative": (
        "GatherND",
        {"x": _tiny((2, 3, 4))},
        {"batch_dims": 1},
        {"i": np.array([[[-1], [0]], [[2], [1]]], np.int64)},
        20,
    ),
    "gather-elements-negative": (
        "GatherElements",
        {"x": _tiny((3, 4))},
        {"axis": 1},
        {"i": np.array([[0, -1], [3, 1], [-4, 2]], np.int64)},
        20,
    ),
    "scatternd-add-duplicates": (
        "ScatterND",
        {"x": _tiny((4, 3))},
        {"reduction": "add"},
        {"i": np.array([[1], [-1], [1]], np.int64), "u": _tiny((3, 3), 1)},
        18,
    ),
    "scatter-elements-max-axis1": (
        "ScatterElements",
        {"x": _tiny((2, 5))},
        {"axis": 1, "reduction": "max"},
        {"i": np.array([[4, 4], [0, -2]], np.int64), "u": _tiny((2, 2), 1)},
        18,
    ),
    "cumsum-exclusive-reverse": (
        "CumSum",
        {"x": _tiny((2, 4, 3))},
        {"exclusive": 1, "reverse": 1},
        {"axis": np.array(1, np.int64)},
        14,
    ),
    "isinf-positive-only": (
        "IsInf",
        {"x": np.array([[np.inf, -np.inf, 1.0], [np.nan, 0.0, np.inf]], np.float32)},
        {"detect_negative": 0},
        {},
        20,
    ),
    "reduce-logsumexp-large": (
        "ReduceLogSumExp",
        {"x": 80 * _tiny((2, 3, 4))},
        {"keepdims": 0},
        {"axes": np.array([0, 2], np.int64)},
        18,
    ),
    "quantize-per-channel-int8": (
        "QuantizeLinear",
        {"x": 3 * _tiny((2, 3, 4))},
        {"axis": 1},
        {"s": np.array([0.02, 0.05, 0.1], np.float32), "z": np.array([0, -3, 5], np.int8)},
        13,
    ),
    "dequantize-per-channel-uint8": (
        "DequantizeLinear",
        {"x": np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10},
        {"axis": -2},
        {"s": np.array([0.02, 0.05, 0.1], np.float32), "z": np.array([0, 128, 255], np.uint8)},
        13,
    ),
    "matmul-integer-batched": (
        "MatMulInteger",
        {"a": np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 9},
        {},
        {
            "b": (np.arange(20, dtype=np.int16).reshape(4, 5) * 13 - 120).astype(np.int8),
            "az": np.array(7, np.uint8),
            "bz": np.array([1, -2, 0, 3, 5], np.int8),
        },
        10,
    ),
}


def tiny_case(name: str) -> tuple[Model, dict[str, np.ndarray], np.ndarray]:
    """The single-node model of `TINY_CASES` ``name``, its inputs and the expected output:
    ONNX Runtime's, for LRN `lrn_reference` (ONNX Runtime rejects even sizes and
    ``onnx.reference`` normalises over the wrong axis), for MatMulInteger `spec_outputs`."""
    op, inputs, attrs, constants, opset = TINY_CASES[name]
    model = single_node_model(op, inputs, attrs, constants, opset=opset)
    if op == "LRN":
        return model, inputs, lrn_reference(inputs["x"], **attrs)
    if op == "MatMulInteger":
        return model, inputs, spec_outputs(model, inputs)[0]
    return model, inputs, ort_outputs(model, inputs)[0]


def lrn_reference(
    x: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0
) -> np.ndarray:
    """LRN as the ONNX spec words it: squares summed over channels ``c - floor((size-1)/2)``
    to ``c + ceil((size-1)/2)`` (clipped), in float64."""
    before = (size - 1) // 2
    squares = np.pad(
        x.astype(np.float64) ** 2,
        [(0, 0), (before, size - 1 - before)] + [(0, 0)] * (x.ndim - 2),
    )
    channels = x.shape[1]
    total = sum(squares[:, i : i + channels] for i in range(size))
    return (x / (bias + alpha / size * total) ** beta).astype(x.dtype)
