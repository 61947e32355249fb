"""Foreign models on every runtime, each checked against ONNX Runtime (issue 24).

A slice of the coverage table in docs/backends.md (scripts/model_coverage.py makes the
whole table): light models of the ONNX zoo shipped in the ``onnx`` wheel, and torchvision's
mobilenet_v3_small (HardSwish, HardSigmoid) where torchvision is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.errors import ModelLoadError
from workbench.testing.foreign import (
    RUNTIMES,
    light_model,
    light_model_path,
    runtime_coverage,
    torchvision_classifier,
)
from workbench.testing.tolerances import assert_close


def _ops(model: wb.Model) -> set[str]:
    graph = model.to_onnx().proto
    assert graph is not None
    return {node.op_type for node in graph.graph.node}


# SqueezeNet: small and quick; Inception v1: LRN and an average pool with asymmetric pads
@pytest.mark.parametrize("name", ["squeezenet", "inception_v1"])
def test_light_zoo_model_matches_onnxruntime_on_every_runtime(name: str, tmp_path) -> None:
    model = wb.load(light_model(name, tmp_path / f"{name}.onnx", biases_as_shipped=True))
    assert "ConstantOfShape" in _ops(model)
    coverage = runtime_coverage(model)
    assert [c.backend for c in coverage] == list(RUNTIMES)
    assert all(c.ok for c in coverage), coverage


def test_the_shipped_light_resnet50_runs_on_torch_with_its_constants_folded() -> None:
    """The file as the onnx wheel ships it: every weight is a ConstantOfShape of 0.02."""
    model = wb.load(light_model_path("resnet50"))
    assert "ConstantOfShape" in _ops(model)
    session = wb.backend("torch").compile(model, "cpu")
    assert all(node.op_type != "ConstantOfShape" for node in session.module.nodes.values())
    x = model.example_inputs(1)
    (ours,) = session.run(x)
    (reference,) = wb.backend("onnxruntime").compile(model, "cpu").run(x)
    assert_close(ours, reference, scope="model")


def test_a_runtime_that_lacks_an_op_says_which() -> None:
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Einsum", ["x", "w"], ["y"], name="einsum", equation="ij,jk->ik")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])],
        [weight],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    coverage = {c.backend: c for c in runtime_coverage(wb.load(proto.SerializeToString()))}
    assert coverage["torch"].ok
    assert not coverage["numba"].ok and "Einsum" in coverage["numba"].detail


@pytest.mark.torchvision
@pytest.mark.slow  # the ONNX export takes 10-50 s on 2 busy cores
def test_torchvision_mobilenet_v3_small_matches_onnxruntime_on_every_runtime() -> None:
    try:
        model = torchvision_classifier("mobilenet_v3_small")
    except ModelLoadError as exc:
        pytest.skip(str(exc))
    assert {"HardSwish", "HardSigmoid"} <= _ops(model)
    coverage = runtime_coverage(model)
    assert all(c.ok for c in coverage), coverage
