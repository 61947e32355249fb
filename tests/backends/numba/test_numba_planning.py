"""The executor's planning run: a node whose kernel can give its outputs without
computing them runs only where a later node of the planning run reads its values."""

from __future__ import annotations

from typing import Any

import numpy as np

import workbench as wb
from workbench.backends.numba.executor import CpuDevice, Executor, values_planning_reads
from workbench.backends.numba.graph import Graph, Node


def _kernels(runs: list[str]) -> dict[str, Any]:
    """A plannable negation, and a non-plannable op whose output's length is its input's
    count of positive values (NonZero's kind): both record each run."""

    def negate(node: Node, ins: list[Any], outs: list[Any] | None) -> list[Any]:
        runs.append(node.name)
        out = outs[0] if outs is not None else np.empty_like(ins[0])
        np.negative(ins[0], out=out)
        return [out]

    def bind(node: Node, ins: list[Any], outs: list[Any]) -> Any:
        return lambda: negate(node, ins, outs)

    negate.bind = bind  # type: ignore[attr-defined]
    negate.plan = lambda node, ins: [np.empty_like(ins[0])]  # type: ignore[attr-defined]

    def positives(node: Node, ins: list[Any], outs: list[Any] | None) -> list[Any]:
        runs.append(node.name)
        found = np.flatnonzero(ins[0] > 0).astype(np.float32)
        if outs is None:
            return [found]
        outs[0][...] = found  # a replayed run writes into the plan's buffer
        return outs

    return {"Neg": negate, "Positives": positives}


def _graph() -> Graph:
    def node(name: str, op: str, x: str, y: str) -> Node:
        return Node(name, op, [x], [y], {}, name)

    nodes = [
        node("neg_a", "Neg", "x", "a"),  # read by a node that must run: computed
        node("count", "Positives", "a", "b"),
        node("neg_c", "Neg", "x", "c"),  # only shapes wanted: not computed
        node("neg_y", "Neg", "c", "y"),
    ]
    return Graph(nodes, {}, ["x"], ["b", "y"], {n.name: [n.name] for n in nodes})


def test_planning_computes_only_what_later_planning_reads() -> None:
    runs: list[str] = []
    kernels = _kernels(runs)
    graph = _graph()
    assert values_planning_reads(graph, lambda n: kernels[n.op_type]) == {"x", "a"}
    executor = Executor(graph, kernels, lambda node, ins: [], CpuDevice())
    x = np.array([-1.0, 2.0, -3.0], np.float32)
    plan = executor.stage({"x": x})
    assert runs == ["neg_a", "count"]  # the planning run
    b, y = (np.asarray(v) for v in executor.execute(plan))
    np.testing.assert_array_equal(b, [0.0, 2.0])  # -x is positive at 0 and 2
    np.testing.assert_array_equal(y, x)
    assert runs[2:] == ["neg_a", "count", "neg_c", "neg_y"]  # every run computes all


def test_a_network_s_first_run_equals_onnxruntime_with_nothing_computed_to_plan() -> None:
    model = wb.samples.load("digits-resnet")
    x = model.example_inputs(4)
    session = wb.backend("numba").compile(model, "cpu")
    executor = session._executor
    got = session.run(x)
    (plan,) = executor.plans
    # every step of the network can be planned from shapes alone
    assert executor._read_in_planning.isdisjoint(
        name for step in plan.steps for name in step.node.outputs
    )
    expected = wb.backend("onnxruntime").compile(model, "cpu").run(x)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_a_shape_and_a_gather_do_not_make_planning_compute_their_data() -> None:
    """Shape is folded from a shape, Gather reads only its indices' values: a ViT's
    token Gather at the end once made the planning run compute the whole encoder."""
    import onnx
    from numba_helpers import ort_outputs
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Reshape", ["r", "s"], ["t"]),
        helper.make_node("Gather", ["t", "first"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "token",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor("first", TensorProto.INT64, [], [0])],
    )
    model = wb.load(onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = np.random.default_rng(1).standard_normal((3, 5, 8)).astype(np.float32)
    session = wb.backend("numba").compile(model, "cpu")
    (got,) = session.run({"x": x})
    assert session._executor._read_in_planning.isdisjoint({"x", "r", "t"})
    np.testing.assert_array_equal(got, ort_outputs(model, {"x": x})[0])
