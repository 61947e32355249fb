"""ai.onnx.ml LabelEncoder on Numba against ONNX Runtime: numeric keys and values, the
default for an absent key, NaN keys, and string maps refused in one line."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.errors import UnsupportedModelError
from workbench.loaders.onnx import model_from_proto


def _encoder(x_type: int, y_type: int, **attrs) -> wb.Model:
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph(
        [node],
        "encode",
        [helper.make_tensor_value_info("x", x_type, [None, 3])],
        [helper.make_tensor_value_info("y", y_type, [None, 3])],
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 4)]
    )
    proto.ir_version = 9
    return model_from_proto(proto, "encoder")


def _both(model: wb.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ours = wb.backend("numba").compile(model, "cpu").run({"x": x})[0]
    session = ort.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
    return ours, session.run(None, {"x": x})[0]


def test_int_keys_to_float_values_with_the_default_for_absent_keys() -> None:
    model = _encoder(
        TensorProto.INT64, TensorProto.FLOAT,
        keys_int64s=[9, 4, 15, 5], values_floats=[7.0, 5.0, 8.0, 5.5], default_float=-3.0,
    )  # fmt: skip
    x = np.array([[4, 5, 9], [15, 6, -1], [100, 4, 0]], dtype=np.int64)
    ours, reference = _both(model, x)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, reference)
    np.testing.assert_array_equal(ours[1], [8.0, -3.0, -3.0])


def test_float_keys_to_int_values_match_nan() -> None:
    model = _encoder(
        TensorProto.FLOAT, TensorProto.INT64,
        keys_floats=[0.5, float("nan"), -2.0], values_int64s=[1, 2, 3],
    )  # fmt: skip
    x = np.array([[0.5, np.nan, -2.0], [0.25, 0.5, np.inf]], dtype=np.float32)
    ours, reference = _both(model, x)
    np.testing.assert_array_equal(ours, reference)
    np.testing.assert_array_equal(ours, [[1, 2, 3], [-1, 1, -1]])  # -1: the int default


def test_string_maps_are_refused_in_one_line() -> None:
    model = _encoder(
        TensorProto.INT64, TensorProto.STRING, keys_int64s=[1, 2], values_strings=["a", "b"]
    )
    with pytest.raises(UnsupportedModelError, match="only numeric keys and values") as info:
        wb.backend("numba").compile(model, "cpu").run({"x": np.ones((1, 3), np.int64)})
    assert "\n" not in str(info.value)
