"""One size per ONNX element type: the loader's parameter bytes and the cost model's
bytes moved count an element alike (`workbench.model.onnx_itemsize`)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.loaders.onnx import onnx_layers
from workbench.model import onnx_itemsize
from workbench.profiling.cost import tensor_shapes


def _cast_and_add(weights: np.ndarray) -> object:
    """``y = x + float(w)``: a weight of ``weights``' type, cast before it is used."""
    from onnx import TensorProto, helper, numpy_helper

    shape = list(weights.shape)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT, name="cast"),
            helper.make_node("Add", ["x", "wf"], ["y"], name="add"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(weights, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("dtype", [np.uint16, np.float16, np.int64, np.complex64], ids=str)
def test_loader_and_cost_model_count_an_element_alike(dtype: type) -> None:
    weights = np.ones((3, 4), dtype=dtype)
    proto = _cast_and_add(weights)
    (cast,) = [layer for layer in onnx_layers(proto) if layer.params]
    assert cast.params_bytes == weights.nbytes  # uint16 was 1 byte here, 4 in the cost model
    shapes = tensor_shapes(proto, {"x": np.zeros((3, 4), np.float32)})
    assert shapes["w"] == ((3, 4), weights.itemsize)
    assert shapes["wf"] == ((3, 4), 4)


def test_types_without_a_numpy_twin_have_their_onnx_width() -> None:
    from onnx import TensorProto

    assert onnx_itemsize(TensorProto.BFLOAT16) == 2
    assert onnx_itemsize(TensorProto.FLOAT8E4M3FN) == 1
    assert onnx_itemsize(TensorProto.STRING) == 4  # no fixed width: counted as a float32
