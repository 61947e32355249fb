"""Mobile networks on the CPU: depthwise/grouped NHWC convolutions, activations fused into
convolutions, squeeze-and-excitation blocks without layout conversions; against ORT
within the ``op`` tolerances (float32: `workbench/tolerances.py`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET, ort_outputs

import workbench as wb
from workbench.model import Model
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(11)
C = 8
SHAPE = (2, C, 9, 7)


def _model(nodes: list[tuple[str, list[str], dict[str, Any]]], consts: dict[str, Any]) -> Model:
    """x [2, 8, 9, 7] through ``nodes`` (op, inputs, attrs), each writing ``t<i>``; the
    last one is the output. ``consts`` are initializers."""
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    made = [
        helper.make_node(op, inputs, [f"t{i}"], name=f"{op}{i}", **attrs)
        for i, (op, inputs, attrs) in enumerate(nodes)
    ]
    graph = helper.make_graph(
        made,
        "mobile",
        [helper.make_tensor_value_info("x", 1, list(SHAPE))],
        [helper.make_tensor_value_info(f"t{len(nodes) - 1}", 1, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="mobile")


def _weights(name: str, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {
        name: RNG.standard_normal(shape).astype(np.float32),
        f"{name}_b": RNG.standard_normal(shape[0]).astype(np.float32),
    }


def _check(model: Model) -> Any:
    inputs = {"x": RNG.standard_normal(SHAPE).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu")
    (got,) = session.run(inputs)
    assert got.shape == expected.shape
    assert_close(got, expected, scope="op")
    return session


def _ops(session: Any) -> list[tuple[str, bool, str]]:
    return [(n.op_type, n.channels_last, n.activation) for n in session.graph.nodes]


GROUPED = {
    "depthwise 3x3": (C, C, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "depthwise 5x5 stride 2": (C, C, {"kernel_shape": [5, 5], "strides": [2, 2], "pads": [2] * 4}),
    "depthwise dilated, uneven pads": (
        C,
        C,
        {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [0, 2, 1, 0]},
    ),
    "channel multiplier 2": (C, 2 * C, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "two groups of four": (2, 4, {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}),
    # ShuffleNet's pointwise group convolutions: one GEMM per group
    "pointwise, four groups": (4, 8, {"kernel_shape": [1, 1]}),
    "pointwise, two groups widening": (2, 12, {"kernel_shape": [1, 1]}),
}


@pytest.mark.parametrize("case", GROUPED)
def test_grouped_and_depthwise_convolutions_run_nhwc(case: str) -> None:
    group, out_channels, attrs = GROUPED[case]
    kh, kw = attrs["kernel_shape"]
    consts = _weights("w", (out_channels, C // group, kh, kw))
    model = _model([("Conv", ["x", "w", "w_b"], {"group": group, **attrs})], consts)
    # one conversion in and one out: the convolution itself runs channels-last
    session = _check(model)
    assert _ops(session) == [
        ("Transpose", False, ""),
        ("Conv", True, ""),
        ("Transpose", False, ""),
    ]
    conv = session.graph.nodes[1]
    per_group = any(key[0] == "group_in" for key in conv.cache if isinstance(key, tuple))
    gemm = per_group or "block_diagonal_w" in conv.cache  # narrow groups: one dense GEMM
    assert gemm == (kh == kw == 1)  # pointwise: GEMMs, not the direct loop


#: (tail nodes after Conv t0, the activation fused into it)
ACTIVATIONS = {
    "HardSwish": ([("HardSwish", ["t0"], {})], "HardSwish"),
    "HardSigmoid (torch's)": (
        [("HardSigmoid", ["t0"], {"alpha": 1 / 6, "beta": 0.5})],
        "HardSigmoid",
    ),
    "Sigmoid": ([("Sigmoid", ["t0"], {})], "Sigmoid"),
    "SiLU": ([("Sigmoid", ["t0"], {}), ("Mul", ["t1", "t0"], {})], "Silu"),
}


@pytest.mark.parametrize("case", ACTIVATIONS)
@pytest.mark.parametrize("group", [1, C], ids=["dense", "depthwise"])
def test_mobile_activations_run_in_the_convolution(case: str, group: int) -> None:
    tail, fused = ACTIVATIONS[case]
    consts = _weights("w", (C, C // group, 3, 3))
    conv = ("Conv", ["x", "w", "w_b"], {"group": group, "pads": [1, 1, 1, 1]})
    session = _check(_model([conv, *tail], consts))
    assert [op for op in _ops(session) if op[0] != "Transpose"] == [("Conv", True, fused)]


def test_a_hard_sigmoid_with_other_parameters_stays_a_node() -> None:
    consts = _weights("w", (C, C, 1, 1))
    conv = ("Conv", ["x", "w", "w_b"], {})
    session = _check(_model([conv, ("HardSigmoid", ["t0"], {"alpha": 0.2, "beta": 0.4})], consts))
    assert [op[0] for op in _ops(session) if op[0] != "Transpose"] == ["Conv", "HardSigmoid"]


def test_squeeze_and_excitation_runs_channels_last_without_copies() -> None:
    """depthwise -> ReduceMean(H, W) -> 1x1 Relu -> 1x1 HardSigmoid -> Mul -> 1x1, as
    mobilenet_v3 exports it: only the graph's own input and output are converted."""
    consts = {
        **_weights("dw", (C, 1, 3, 3)),
        **_weights("squeeze", (4, C, 1, 1)),
        **_weights("excite", (C, 4, 1, 1)),
        **_weights("project", (6, C, 1, 1)),
        "axes": np.array([2, 3], np.int64),
    }
    nodes = [
        ("Conv", ["x", "dw", "dw_b"], {"group": C, "pads": [1, 1, 1, 1]}),
        ("HardSwish", ["t0"], {}),
        ("ReduceMean", ["t1", "axes"], {"keepdims": 1}),
        ("Conv", ["t2", "squeeze", "squeeze_b"], {}),
        ("Relu", ["t3"], {}),
        ("Conv", ["t4", "excite", "excite_b"], {}),
        ("HardSigmoid", ["t5"], {"alpha": 1 / 6, "beta": 0.5}),
        ("Mul", ["t6", "t1"], {}),
        ("Conv", ["t7", "project", "project_b"], {}),
    ]
    ops = _ops(_check(_model(nodes, consts)))
    assert [op[0] for op in ops].count("Transpose") == 2  # the graph's input and output
    # the spatial mean's [N, C, 1, 1] is the 1x1 convolution's NHWC input as it is
    assert ("Reshape", False, "") in ops
    assert all(channels_last for op, channels_last, _ in ops if op not in ("Transpose", "Reshape"))


def test_a_spatial_mean_feeding_an_nchw_head_is_not_copied() -> None:
    consts = {**_weights("w", (C, C, 3, 3)), "axes": np.array([-1, -2], np.int64)}
    nodes = [
        ("Conv", ["x", "w", "w_b"], {}),
        ("ReduceMean", ["t0", "axes"], {"keepdims": 1}),
        ("Flatten", ["t1"], {}),
    ]
    ops = _ops(_check(_model(nodes, consts)))
    assert [op[0] for op in ops] == ["Transpose", "Conv", "ReduceMean", "Flatten"]


@pytest.mark.parametrize("strides", [[1, 1], [2, 2]], ids=["stride 1", "stride 2"])
def test_an_image_convolution_reads_its_few_channels_without_a_transpose(
    strides: list[int],
) -> None:
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    weight = RNG.standard_normal((16, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], strides=strides, pads=[1, 0, 1, 1]),
        helper.make_node("HardSwish", ["y"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "stem",
        [helper.make_tensor_value_info("x", 1, [2, 3, 11, 10])],
        [helper.make_tensor_value_info("z", 1, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    model = model_from_proto(proto, name="stem")
    inputs = {"x": RNG.standard_normal((2, 3, 11, 10)).astype(np.float32)}
    (expected,) = ort_outputs(model, inputs)
    session = wb.backend("numba").compile(model, "cpu")
    (got,) = session.run(inputs)
    assert_close(got, expected, scope="op")
    # the image is read as it is; only the output goes back to NCHW
    assert _ops(session) == [("Conv", True, "HardSwish"), ("Transpose", False, "")]
