"""Quantization: every INT8/FP16/BF16 variant runs, is accurate, records its recipe and
leaves its input untouched."""

from __future__ import annotations

import numpy as np
import pytest
from int8_cpu import saturates_without_int8_dot
from optimize_helpers import model_state, run

import workbench as wb
from workbench.errors import TransformError
from workbench.optimize.quantize import Bf16, Fp16, Int8Dynamic, Int8Static
from workbench.optimize.sensitivity import sqnr_db
from workbench.testing import toy_mlp

INT8 = [
    Int8Dynamic(),
    Int8Dynamic(per_channel=True),
    Int8Static(method="minmax"),
    Int8Static(method="entropy", per_channel=False),
    Int8Static(method="percentile"),
    Int8Static(method="minmax", quant_format="qoperator", activations="int8"),
]


def _ops(model: wb.Model) -> set[str]:
    return {n.op_type for n in model.proto.graph.node}


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.argmax(1) == labels).mean())


@pytest.mark.parametrize("config", INT8, ids=lambda c: f"{c.label()}-{c}"[:60])
def test_int8_runs_on_ort_and_keeps_accuracy(config, digits_mlp, digits_train, digits_test) -> None:
    before = model_state(digits_mlp)
    q = wb.quantize(digits_mlp, config, data=digits_train.take(128))
    assert model_state(digits_mlp) == before  # the input model is untouched
    assert q.framework == "onnx" and q.parent is digits_mlp
    assert q.recipe["label"] == config.label() and q.recipe["config"]["exclude"] == []
    assert _ops(q) & {"MatMulInteger", "QuantizeLinear", "QLinearMatMul", "QGemm"}
    assert q.size_bytes < 0.4 * digits_mlp.to_onnx().size_bytes  # int8 weights
    x = digits_test.inputs
    ref, out = run(digits_mlp, x), run(q, x)
    assert sqnr_db(ref, out) > 20.0
    assert _accuracy(out, digits_test.labels) >= _accuracy(ref, digits_test.labels) - 0.01


def test_static_layer_and_op_choice(digits_mlp, digits_train) -> None:
    q = wb.quantize(digits_mlp, "int8-static", data=digits_train.take(64), exclude=["head"])
    floats = {i.name for i in q.proto.graph.initializer if i.data_type == 1}
    (gemm,) = [n for n in q.proto.graph.node if n.op_type == "Gemm" and n.input[1] in floats]
    assert gemm.name in q.layer("head").nodes  # the excluded layer keeps float weights
    fc1_ops = {n.op_type for n in q.proto.graph.node if n.name in q.layer("fc1").nodes}
    assert "DequantizeLinear" in fc1_ops
    only_gemm = wb.quantize(
        digits_mlp, Int8Static(op_types=("Gemm",), method="minmax"), digits_train.take(64)
    )
    relus = [n for n in only_gemm.proto.graph.node if n.op_type == "Relu"]
    assert len(relus) == 2  # activations stay float ops when only Gemm is quantized


def test_dynamic_exclude_keeps_layer_float(digits_mlp) -> None:
    q = wb.quantize(digits_mlp, Int8Dynamic(exclude=("fc1",)))
    # ORT's dynamic quantizer splits every Gemm into MatMul + Add; the excluded one stays float
    assert {n.op_type for n in q.proto.graph.node if n.name in q.layer("fc1").nodes} <= {
        "Gemm", "MatMul", "Add"
    }  # fmt: skip
    assert "MatMulInteger" in {
        n.op_type for n in q.proto.graph.node if n.name in q.layer("fc2").nodes
    }


def test_static_needs_data_for_a_non_sample_model() -> None:
    with pytest.raises(TransformError, match="needs data"):
        wb.quantize(toy_mlp(), "int8-static")


@saturates_without_int8_dot
def test_static_works_on_a_plain_torch_model_with_torch_batches() -> None:
    import torch

    model = toy_mlp()
    batches = [(torch.rand(16, 8), torch.zeros(16)) for _ in range(4)]
    q = wb.quantize(model, "int8-static", data=batches)
    x = np.random.default_rng(0).random((32, 8), dtype=np.float32)
    assert sqnr_db(run(model, x), run(q, x)) > 20.0


def test_fp16_torch_route(digits_mlp, digits_test) -> None:
    before = model_state(digits_mlp)
    h = wb.quantize(digits_mlp, "fp16")
    assert model_state(digits_mlp) == before
    assert h.framework == "torch" and h.recipe["name"] == "fp16"
    assert {p.dtype for p in h.module.parameters()} == {__import__("torch").float16}
    assert h.params_bytes * 2 == digits_mlp.params_bytes
    x = digits_test.inputs[:64]
    out = run(h, x, "torch")  # float32 inputs go in, float32 logits come out
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, run(digits_mlp, x, "torch"), rtol=2e-2, atol=2e-2)


def test_fp16_onnx_route(digits_mlp, digits_test) -> None:
    h = wb.quantize(digits_mlp, Fp16(route="onnx"))
    assert h.framework == "onnx" and h.inputs[0].dtype == "float32"
    assert {i.data_type for i in h.proto.graph.initializer if len(i.dims) == 2} == {10}  # fp16
    x = digits_test.inputs[:64]
    np.testing.assert_allclose(run(h, x), run(digits_mlp, x), rtol=2e-2, atol=2e-2)
    onnx_in = digits_mlp.to_onnx()
    before = model_state(onnx_in)
    wb.quantize(onnx_in, "fp16")  # an ONNX model takes the ONNX route by default
    assert model_state(onnx_in) == before


def test_bf16_torch_only(digits_mlp, digits_test) -> None:
    import torch

    before = model_state(digits_mlp)
    b = wb.quantize(digits_mlp, Bf16())
    assert model_state(digits_mlp) == before
    assert {p.dtype for p in b.module.parameters()} == {torch.bfloat16}
    x = digits_test.inputs[:64]
    ref = run(digits_mlp, x, "torch")
    assert sqnr_db(ref, run(b, x, "torch")) > 25.0
    with pytest.raises(TransformError, match="torch route only"):
        wb.quantize(digits_mlp.to_onnx(), "bf16")


@saturates_without_int8_dot
def test_int8_static_conv_net_from_an_onnx_model(digits_train, digits_test) -> None:
    cnn = wb.samples.load("digits-cnn").to_onnx()  # an ONNX input takes the same route
    before = model_state(cnn)
    q = wb.quantize(cnn, Int8Static(method="minmax"), digits_train.take(128))
    assert model_state(cnn) == before
    assert "BatchNormalization" not in _ops(q)  # folded into the convs before quantizing
    conv_layers = {x.name for x in q.layers} & {"features.0", "features.3", "features.7"}
    assert conv_layers == {"features.0", "features.3", "features.7"}  # names survive folding
    x = digits_test.inputs
    ref, out = run(cnn, x), run(q, x)
    assert sqnr_db(ref, out) > 20.0
    assert _accuracy(out, digits_test.labels) >= _accuracy(ref, digits_test.labels) - 0.01


def test_fp16_exclude_keeps_a_layer_in_float32(digits_mlp) -> None:
    h = wb.quantize(digits_mlp, "fp16", exclude=["head"])
    assert h.framework == "onnx"  # per-layer control takes the ONNX route
    dtypes = {i.name: i.data_type for i in h.proto.graph.initializer}
    assert dtypes["head.weight"] == 1 and dtypes["fc1.weight"] == 10
    with pytest.raises(TransformError, match="route='onnx'"):
        wb.quantize(digits_mlp, Fp16(route="torch", exclude=("head",)))


def test_added_quantize_nodes_belong_to_the_layer_they_feed(digits_mlp, digits_train) -> None:
    from workbench.model import LAYER_KEY

    q = wb.quantize(digits_mlp, Int8Static(method="minmax"), digits_train.take(64))
    nodes = list(q.proto.graph.node)
    label = {
        n.name: next(kv.value for kv in n.metadata_props if kv.key == LAYER_KEY) for n in nodes
    }
    consumers = {i: n for n in nodes for i in n.input}
    checked = 0
    for node in nodes:
        if node.op_type != "QuantizeLinear" or node.output[0] not in consumers:
            continue
        dq = consumers[node.output[0]]
        target = consumers.get(dq.output[0])
        if target is not None and target.op_type == "Gemm":
            assert label[node.name] == label[dq.name] == label[target.name]
            checked += 1
    assert checked == 3  # the input of each of the three Gemm layers


def test_quantizing_twice_is_refused(digits_mlp) -> None:
    q = wb.quantize(digits_mlp, "int8-dynamic")
    with pytest.raises(TransformError, match="already quantized"):
        wb.quantize(q, "int8-dynamic")
