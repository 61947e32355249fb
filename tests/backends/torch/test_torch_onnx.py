"""ONNX models on the torch backends: the converter's ops against ONNX Runtime, layer names.

Each op is checked on a one-node graph whose attributes take the paths a plain torch
call would get wrong (asymmetric pads, opset-11 Softmax, shape arithmetic kept in
Python); whole models are the samples' ONNX exports (eager) and, on torch-compile,
digits-cnn and the foreign ResNet-50 (compiled once per module).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.errors import UnsupportedModelError
from workbench.testing.tolerances import assert_close
from workbench.tolerances import tolerance

F32 = 1  # onnx.TensorProto.FLOAT
I64 = 7  # onnx.TensorProto.INT64

needs_torch_compile = pytest.mark.skipif(
    "cpu" not in wb.backend("torch-compile").devices(),
    reason="torch-compile has no CPU device here (no C++ compiler)",
)


def _graph(
    nodes: list[Any],
    inputs: dict[str, tuple[int | str, ...]],
    rank: int,
    weights: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> wb.Model:
    """A small ONNX model: float inputs, one float output ``y`` of ``rank`` (dims unnamed)."""
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, F32, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", F32, [f"d{i}" for i in range(rank)])],
        [numpy_helper.from_array(v, k) for k, v in (weights or {}).items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return wb.load(proto.SerializeToString(), name="g")


def _both(model: wb.Model, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = {s.name: rng.standard_normal(s.concrete_shape(2)).astype(np.float32) for s in model.inputs}
    (ours,) = wb.backend("torch").compile(model, "cpu").run(x)
    (reference,) = wb.backend("onnxruntime").compile(model, "cpu").run(x)
    return ours, reference


def _node(op: str, inputs: list[str], out: str = "y", **attrs: Any) -> Any:
    return helper_node(op, inputs, [out], **attrs)


def helper_node(op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> Any:
    """A node named after its op and first output (several outputs: ``Split``)."""
    from onnx import helper

    return helper.make_node(op, inputs, outputs, name=f"the_{op.lower()}_{outputs[0]}", **attrs)


def _tensor(value: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(value)


_W = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
_B = np.random.default_rng(2).standard_normal(4).astype(np.float32)
OPS = {
    "conv-asymmetric-pads-stride-group": (
        [_node("Conv", ["x", "w", "b"], pads=[0, 1, 2, 1], strides=[2, 1], group=1)],
        {"x": (2, 3, 9, 8)},
        4,
        {"w": _W, "b": _B},
        17,
    ),
    "maxpool-asymmetric-ceil": (
        [
            _node(
                "MaxPool",
                ["x"],
                kernel_shape=[3, 3],
                strides=[2, 2],
                pads=[0, 0, 1, 1],
                ceil_mode=1,
            )
        ],
        {"x": (2, 3, 8, 7)},
        4,
        None,
        17,
    ),
    "averagepool-excluding-pads": (
        [_node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        {"x": (2, 3, 6, 6)},
        4,
        None,
        17,
    ),
    "softmax-opset11-flattens-at-axis": (
        [_node("Softmax", ["x"], axis=1)],
        {"x": (2, 3, 4)},
        3,
        None,
        11,
    ),
    "gemm-transposed-scaled": (
        [_node("Gemm", ["x", "w", "b"], transA=1, alpha=0.5, beta=2.0)],
        {"x": (5, 2)},
        2,
        {"w": _W.reshape(-1)[:20].reshape(5, 4).copy(), "b": _B},
        17,
    ),
    "clip-opset6-attributes": (
        [_node("Clip", ["x"], min=-0.5, max=0.25)],
        {"x": (2, 7)},
        2,
        None,
        6,
    ),
    "flatten-axis2-then-transpose": (
        [
            _node("Flatten", ["x"], "f", axis=2),
            _node("Transpose", ["f"], perm=[1, 0]),
        ],
        {"x": (2, 3, 4, 5)},
        2,
        None,
        17,
    ),
    "global-pool-sum-mul": (
        [
            _node("GlobalAveragePool", ["x"], "g"),
            _node("Sum", ["g", "g", "x"], "s"),
            _node("Mul", ["s", "b4"]),
        ],
        {"x": (2, 4, 3, 3)},
        4,
        {"b4": _B.reshape(1, 4, 1, 1)},
        17,
    ),
    # the ops below came with issue 24: the onnx zoo's light models and torchvision's
    "hardswish-hardsigmoid": (
        [
            _node("HardSwish", ["x"], "h"),
            _node("HardSigmoid", ["h"], alpha=0.3, beta=0.4),
        ],
        {"x": (2, 3, 5)},
        3,
        None,
        17,
    ),
    "constant-of-shape-of-a-dynamic-shape": (
        [
            _node("Shape", ["x"], "s"),
            _node("ConstantOfShape", ["s"], "c", value=_tensor(np.array([1.5], np.float32))),
            _node("Mul", ["x", "c"]),
        ],
        {"x": ("N", 3, 4)},
        3,
        None,
        17,
    ),
    "lrn": (
        [_node("LRN", ["x"], size=3, alpha=0.5, beta=0.75, bias=2.0)],
        {"x": (2, 6, 3, 3)},
        4,
        None,
        17,
    ),
    "averagepool-asymmetric-pads-excluded-ceil": (
        [
            _node(
                "AveragePool",
                ["x"],
                kernel_shape=[3, 3],
                strides=[2, 2],
                pads=[0, 0, 1, 2],
                ceil_mode=1,
            )
        ],
        {"x": (2, 3, 7, 6)},
        4,
        None,
        17,
    ),
    "range-of-a-shape-expand-both-ways": (
        [
            _node("Shape", ["x"], "s"),
            _node("Gather", ["s", "two"], "n", axis=0),
            _node("Range", ["zero", "n", "one"], "r"),
            _node("Cast", ["r"], "rf", to=F32),
            _node("Expand", ["col", "shape"], "e"),
            _node("Add", ["rf", "e"], "re"),
            _node("Add", ["x", "re"]),
        ],
        {"x": (2, 3, 4)},
        3,
        {
            "two": np.array(2, np.int64),
            "zero": np.array(0, np.int64),
            "one": np.array(1, np.int64),
            "col": _B[:3].reshape(3, 1).copy(),
            "shape": np.array([2, 1, 4], np.int64),
        },
        17,
    ),
    "split-sizes-input-opset13": (
        [
            helper_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
            _node("Concat", ["b", "a"], axis=1),
        ],
        {"x": (2, 3, 4)},
        3,
        {"sizes": np.array([1, 2], np.int64)},
        13,
    ),
    "split-uneven-num-outputs-opset18": (
        [
            helper_node("Split", ["x"], ["a", "b"], axis=2, num_outputs=2),
            _node("Concat", ["b", "a"], axis=2),
        ],
        {"x": (2, 3, 5)},
        3,
        None,
        18,
    ),
    "pad-constant-value-then-reflect": (
        [
            _node("Pad", ["x", "pads", "value"], "p"),
            _node("Pad", ["p", "pads2"], mode="reflect"),
        ],
        {"x": (2, 3, 4, 5)},
        4,
        {
            "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
            "value": np.array(0.5, np.float32),
            "pads2": np.array([0, 0, 0, 1, 0, 0, 0, 2], np.int64),
        },
        17,
    ),
    "where-of-comparisons": (
        [
            _node("Greater", ["x", "zero_f"], "g"),
            _node("Not", ["g"], "ng"),
            _node("Equal", ["x", "x"], "e"),
            _node("And", ["e", "ng"], "c"),
            _node("Where", ["c", "x", "b3"]),
        ],
        {"x": (2, 3)},
        2,
        {"zero_f": np.array(0.0, np.float32), "b3": _B[:3].copy()},
        17,
    ),
    "mod-fmod-and-integer-mod-castlike": (
        [
            _node("Mod", ["x", "b3"], "f", fmod=1),
            _node("Mul", ["x", "ten"], "x10"),
            _node("Cast", ["x10"], "xi", to=I64),
            _node("Mod", ["xi", "three"], "m"),
            _node("CastLike", ["m", "x"], "mf"),
            _node("Add", ["f", "mf"]),
        ],
        {"x": (2, 3)},
        2,
        {
            "b3": _B[:3].copy(),
            "ten": np.array(10.0, np.float32),
            "three": np.array(3, np.int64),
        },
        17,
    ),
    "scatter-nd": (
        [_node("ScatterND", ["x", "index", "updates"])],
        {"x": (2, 3, 4)},
        3,
        {
            "index": np.array([[0, 1], [1, 2]], np.int64),
            "updates": _W.reshape(-1)[:8].reshape(2, 4).copy(),
        },
        17,
    ),
    "gather-nd-reduce-l2-einsum": (
        [
            _node("GatherND", ["x", "index"], "g"),
            _node("ReduceL2", ["x", "axis1"], "n", keepdims=0),
            _node("Einsum", ["g", "n"], equation="ij,kj->ik"),
        ],
        {"x": (2, 3, 4)},
        2,
        {"index": np.array([[0, 1], [1, 2]], np.int64), "axis1": np.array([1], np.int64)},
        18,
    ),
}


@pytest.mark.parametrize("case", list(OPS), ids=list(OPS))
def test_op_matches_onnxruntime(case: str) -> None:
    nodes, inputs, rank, weights, opset = OPS[case]
    ours, reference = _both(_graph(nodes, inputs, rank, weights, opset))
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    assert_close(ours, reference, scope="op", what=case)


def test_lrn_with_an_even_window_sums_the_channels_the_onnx_spec_names() -> None:
    """ONNX Runtime runs only odd windows (and onnx's reference LRN mixes up its loop): an
    even one spans floor((size-1)/2) channels before and the rest after, where torch's
    ``local_response_norm`` puts the extra channel before."""
    size, alpha, beta, bias = 4, 0.5, 0.75, 2.0
    node = _node("LRN", ["x"], size=size, alpha=alpha, beta=beta, bias=bias)
    model = _graph([node], {"x": (2, 6, 3, 3)}, 4)
    x = np.random.default_rng(0).standard_normal((2, 6, 3, 3)).astype(np.float32)
    (ours,) = wb.backend("torch").compile(model, "cpu").run({"x": x})
    squares = np.zeros_like(x)
    for c in range(x.shape[1]):
        window = x[:, max(0, c - 1) : c + 3]  # 1 channel before c, 2 after
        squares[:, c] = (window**2).sum(axis=1)
    assert_close(ours, x / (bias + alpha / size * squares) ** beta, scope="op")


def test_shape_arithmetic_stays_python_and_reshapes_a_dynamic_batch() -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, the pattern of a dynamic batch."""
    from onnx import helper

    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"], name="unsqueeze"),
        helper.make_node("Constant", [], ["rest"], name="rest", value_ints=[-1]),
        helper.make_node("Concat", ["n1", "rest"], ["shape"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten"),
    ]
    weights = {"zero": np.array(0, np.int64), "zero1": np.array([0], np.int64)}
    model = _graph(nodes, {"x": ("N", 3, 4)}, 2, weights)
    ours, reference = _both(model)
    assert ours.shape == (2, 12)
    np.testing.assert_array_equal(ours, reference)


def test_ops_outside_the_set_are_refused_naming_each_op_type() -> None:
    from onnx import helper

    nodes = [
        helper.make_node("Celu", ["x"], ["e"], name="e"),
        helper.make_node("Resize", ["e", "", "scales"], ["r"], name="r", mode="cubic"),
        helper.make_node("Relu", ["r"], ["y"], name="relu"),
    ]
    weights = {"scales": np.array([1.0, 2.0], np.float32)}
    model = _graph(nodes, {"x": (2, 3)}, 2, weights)
    for name in ("torch", "torch-compile"):
        support = wb.backend(name).supports(model)
        assert not support.ok
        assert "Celu" in support.reasons[0] and "Resize(mode=cubic" in support.reasons[0]
        assert "Relu" not in support.reasons[0]
        with pytest.raises(UnsupportedModelError, match=r"ONNX model with op.*Celu"):
            wb.backend(name).compile(model, "cpu")


@pytest.mark.parametrize("name", wb.samples.names("digits"))
def test_sample_exports_run_eagerly_with_their_canonical_layers(name: str) -> None:
    model = wb.samples.load(name).to_onnx()
    before = model.fingerprint()
    x = model.example_inputs(4)
    session = wb.backend("torch").compile(model, "cpu")
    (ours,) = session.run(x)
    (reference,) = wb.backend("onnxruntime").compile(model, "cpu").run(x)
    assert_close(ours, reference, scope="model", what=name)
    timings = session.run_layers(x, repeats=2)
    layers = {layer.name: layer.op_type for layer in model.layers}
    assert {t.layer: t.op_type for t in timings}.items() <= layers.items()
    # every layer with work in it is timed (a layer of folded Constants has none)
    computing = {
        layer.name
        for layer in model.layers
        if any(n.op_type != "Constant" for n in model.proto.graph.node if n.name in layer.nodes)
    }
    assert {t.layer for t in timings} == computing
    assert all(len(t.samples_ms) == 2 for t in timings)
    assert model.fingerprint() == before  # the user's graph is untouched
    # weights in torch's own 64-byte aligned memory: oneDNN ran convolutions on numpy's
    # 16-byte aligned copies ten times slower
    assert all(b.data_ptr() % 64 == 0 for b in session.module.buffers())


def test_memory_per_layer_is_keyed_by_canonical_layer() -> None:
    model = wb.samples.load("digits-cnn").to_onnx()
    report = wb.backend("torch").compile(model, "cpu").memory(model.example_inputs(4))
    assert set(report.by_layer_bytes) <= {layer.name for layer in model.layers}
    assert report.by_layer_bytes["features.0"] > 0  # the first conv's output


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory: pytest.TempPathFactory) -> wb.Model:
    from workbench.testing.foreign import foreign_resnet50

    return wb.load(foreign_resnet50(tmp_path_factory.mktemp("r50") / "resnet50.onnx"))


@pytest.mark.slow  # Inductor compiles ResNet-50 once here: about 40 s on 2 cores, cache cold
@needs_torch_compile
def test_foreign_resnet50_on_torch_compile_matches_onnxruntime_per_layer(
    resnet50: wb.Model,
) -> None:
    from workbench.profiling.table import UNATTRIBUTED, layer_table

    x = resnet50.example_inputs(batch_size=1)
    session = wb.backend("torch-compile").compile(resnet50, "cpu", dynamic=False)
    (ours,) = session.run(x)
    ort = wb.backend("onnxruntime").compile(resnet50, "cpu")
    (reference,) = ort.run(x)
    assert ours.shape == reference.shape == (1, 1000)
    assert_close(ours, reference, scope="model", what="foreign resnet50 on torch-compile")
    # softmax probabilities near 1e-3 sit inside the model atol (1e-4): hold them to rtol alone
    np.testing.assert_allclose(ours, reference, rtol=tolerance(np.float32, "model").rtol, atol=0)
    assert session.recompiles == [] and session.compile_s > 0
    timings = session.run_layers(x, repeats=1)
    table = layer_table(timings, end_to_end_ms=1.0, view="leaves")
    names = [name for name in table["layer"] if name != UNATTRIBUTED]
    # the graph's own node names, in graph order, as ONNX Runtime's table names them
    assert names == [layer.name for layer in resnet50.layers]
    assert set(names) <= {t.layer for t in ort.run_layers(x, repeats=1)}
    ops = dict(zip(table["layer"], table["op_type"], strict=True))
    assert ops["n0"] == "Conv" and ops["n1"] == "BatchNormalization" and ops["n175"] == "Softmax"
    assert (table.loc[table["layer"] != UNATTRIBUTED, "samples"] == 1).all()


def _upsample_pool(keepdims: int) -> wb.Model:
    """Resize by constant scales, flatten through shape arithmetic, then ReduceMean."""
    from onnx import helper

    nodes = [
        helper.make_node(
            "Resize",
            ["x", "", "scales"],
            ["r"],
            name="up",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        helper.make_node("Shape", ["r"], ["s"], name="shape", end=1),
        helper.make_node("Concat", ["s", "rest"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"], name="flatten"),
        helper.make_node("ReduceMean", ["flat"], ["y"], name="mean", axes=[1], keepdims=keepdims),
    ]
    weights = {
        "scales": np.array([1.0, 1.0, 2.0, 2.0], np.float32),
        "rest": np.array([-1], np.int64),
    }
    return _graph(nodes, {"x": ("N", 2, 3, 3)}, 2 - (1 - keepdims), weights, opset=17)


@needs_torch_compile
def test_torch_compile_traces_an_onnx_graph_whole_and_each_graph_compiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No graph break (constant scales, shapes in Python); a second graph still compiles.

    Dynamo caches graphs per code object and stops compiling one after
    ``recompile_limit`` graphs; with the limit at 1, the second graph here would run
    eagerly if the converted modules shared one ``forward``.
    """
    import torch
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    for keepdims in (1, 0):
        model = _upsample_pool(keepdims)
        breaks, graphs = sum(counters["graph_break"].values()), _graphs()
        session = wb.backend("torch-compile").compile(model, "cpu", batch_size=2)
        assert sum(counters["graph_break"].values()) == breaks
        assert _graphs() == graphs + 1  # compiled, not fallen back to eager
        x = model.example_inputs(2)
        (ours,) = session.run(x)
        (reference,) = wb.backend("onnxruntime").compile(model, "cpu").run(x)
        assert_close(ours, reference, scope="op", what=f"keepdims={keepdims}")


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
