"""Models no one here wrote: a hand-built old-opset ONNX graph and torch's own transformer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.profiling.layers import UNATTRIBUTED


def _old_opset_graph(blocks: int = 40) -> bytes:
    """Opset 11, ~10 nodes per block, no node names at all, TopK and CumSum at the end."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "input"
    for b in range(blocks):
        w, bias = f"w{b}", f"b{b}"
        inits += [
            numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32) * 0.2, w),
            numpy_helper.from_array(np.zeros(16, np.float32), bias),
        ]
        t = [f"t{b}_{i}" for i in range(9)]
        nodes += [
            helper.make_node("MatMul", [x, w], [t[0]]),
            helper.make_node("Add", [t[0], bias], [t[1]]),
            helper.make_node("Relu", [t[1]], [t[2]]),
            helper.make_node("Transpose", [t[2]], [t[3]], perm=[1, 0]),
            helper.make_node("Transpose", [t[3]], [t[4]], perm=[1, 0]),
            helper.make_node("Sigmoid", [t[4]], [t[5]]),
            helper.make_node("Mul", [t[4], t[5]], [t[6]]),
            helper.make_node("Softmax", [t[6]], [t[7]], axis=1),
            helper.make_node("Add", [t[7], x], [t[8]]),
            helper.make_node("Identity", [t[8]], [f"x{b}"]),
        ]
        x = f"x{b}"
    inits += [numpy_helper.from_array(np.array(1, np.int64), "axis"),
              numpy_helper.from_array(np.array([3], np.int64), "k")]  # fmt: skip
    nodes += [
        helper.make_node("CumSum", [x, "axis"], ["cum"]),
        helper.make_node("TopK", ["cum", "k"], ["values", "indices"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "exported-elsewhere",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["n", 3])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_old_opset_graph_with_hundreds_of_unnamed_nodes_on_onnxruntime() -> None:
    model = wb.load(_old_opset_graph())
    assert len(model.proto.graph.node) >= 400 and not any(n.name for n in model.proto.graph.node)
    p = wb.profile(model, "onnxruntime", batch_size=8, budget_s=0.05, layer_repeats=3)
    table = p.layers.set_index("layer")
    # unnamed nodes are layers named <op>_<index>; every one has a row
    assert {layer.name for layer in model.layers} <= set(table.index)
    rows = table.drop(index=UNATTRIBUTED)
    timed = rows[rows["latency_ms"] > 0]
    assert len(timed) > 100 and (timed["samples"] == 3).all()  # one sample per traced run
    assert table.loc["MatMul_0", "flops"] == 2 * 8 * 16 * 16
    # ORT removes the Identity nodes and fuses MatMul+Add: the table says so, nothing is lost
    assert "removed" in table.loc["Identity_9", "note"]
    assert table.loc["Add_1", "fused_into"] == "MatMul_0"
    # ops the cost model does not know: NaN and a note naming them, never zero
    assert np.isnan(table.loc["TopK_401", "flops"])
    assert any("TopK" in note for note in p.notes)
    assert table.loc["TopK_401", "latency_ms"] > 0


@pytest.fixture(scope="module")
def encoder():
    import torch

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        d_model=32, nhead=4, dim_feedforward=64, batch_first=True
    )  # built from a configuration, random weights: nothing downloaded
    module = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    return wb.load(module, example_inputs=(torch.rand(2, 10, 32),), name="encoder")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_torch_transformer_encoder(encoder, backend: str) -> None:
    p = wb.profile(encoder, backend, batch_size=3, budget_s=0.05, layer_repeats=5)
    table = p.layers.set_index("layer")
    rows = table.drop(index=UNATTRIBUTED)
    timed = rows[rows["latency_ms"] > 0]
    assert (timed["samples"] == 5).all()  # one sample per instrumented run, none merged
    for name in ("layers.0.self_attn", "layers.0.linear1", "layers.1.norm2"):
        assert table.loc[name, "latency_ms"] > 0, name
    # the feed-forward matmuls: 2 * tokens * in * out FLOPs on either backend
    assert table.loc["layers.0.linear1", "flops"] == pytest.approx(2 * 3 * 10 * 32 * 64, rel=0.02)
    assert table.loc["layers.0.self_attn", "flops"] > 2 * 3 * 10 * 32 * 96  # projections
    if backend == "torch":
        # out_proj is called inside MultiheadAttention's functional code, never as a module
        assert table.loc["layers.0.self_attn.out_proj", "note"] == "never called"
        assert any("no timing" in n for n in p.notes)
