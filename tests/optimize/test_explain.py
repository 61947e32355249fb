"""'Why is my INT8 model slower?': per-layer reasons from the graphs and the kernels."""

from __future__ import annotations

import pandas as pd
import pytest

import workbench as wb
from workbench.optimize.explain import explain, graph_reasons, kernel_reasons, reasons
from workbench.optimize.quantize import Int8Static
from workbench.profiling.profile import Profile
from workbench.profiling.reasons import quantization_reasons
from workbench.profiling.timer import Measurement


def _profile(layers: dict[str, float], **columns: list) -> Profile:
    frame = pd.DataFrame({"layer": list(layers), "latency_ms": list(layers.values()), **columns})
    return Profile("m", "onnxruntime", "cpu", 32, Measurement((1.0,)), layers=frame)


def test_unfolded_batchnorm_is_named_as_a_float_fallback(digits_train) -> None:
    cnn = wb.samples.load("digits-cnn")
    q = wb.quantize(
        cnn, Int8Static(calibration="minmax", fold_batchnorm=False), digits_train.take(64)
    )
    found = graph_reasons(cnn.to_onnx().proto, q.proto)
    assert any("Quantize/Dequantize" in r for r in found["features.3"])
    assert any("BatchNormalization has no INT8 kernel" in r for r in found["features.4"])
    folded = wb.quantize(cnn, Int8Static(calibration="minmax"), digits_train.take(64))
    assert not any(
        "no INT8 kernel" in r for items in graph_reasons(None, folded.proto).values() for r in items
    )


def test_explain_lines_up_layers_and_flags_slower_ones(digits_mlp) -> None:
    q = wb.quantize(digits_mlp, "int8-dynamic")
    base = _profile({"fc1": 0.010, "fc2": 0.100, "head": 0.005})
    slow = _profile({"fc1": 0.030, "fc2": 0.040, "head": 0.0051, "(layout)": 0.01})
    table = explain(base, slow, digits_mlp, q)
    rows = table.set_index("layer")
    assert rows.loc["fc1", "slower"] and not rows.loc["fc2", "slower"]
    assert not rows.loc["head", "slower"]  # +2%: below the 5% threshold
    assert rows.loc["fc1", "delta_ms"] == pytest.approx(0.020)
    assert "Quantize/Dequantize" in rows.loc["fc1", "reasons"]
    assert rows.loc["fc2", "reasons"] == ""  # faster layers get no excuse
    assert "layout" in rows.loc["(layout)", "reasons"]
    assert table["layer"].iloc[0] == "fc1"  # largest slowdown first


def test_kernel_reasons_spot_float_kernels_between_qdq() -> None:
    profile = _profile(
        {"conv": 1.0, "fc": 1.0},
        kernels=[
            ["q:QuantizeLinear", "conv:Conv", "dq:DequantizeLinear"],
            ["fc_quant:QGemm", "q2:QuantizeLinear"],
        ],
    )
    found = kernel_reasons(profile)
    assert "fell back to a float kernel (Conv)" in found["conv"][0] and "fc" not in found
    assert "conv" in reasons(None, profile)


def test_compare_detector_explains_slower_rows() -> None:
    base = {"latency_ms": 0.010, "op_type": "Gemm"}
    labels = ["fp32", "int8"]
    assert (
        "integer kernel QGemm"
        in quantization_reasons("fc", [base, {"latency_ms": 0.02, "op_type": "QGemm"}], labels)[0]
    )
    assert (
        "Quantize/Dequantize"
        in quantization_reasons(
            "x", [None, {"latency_ms": 0.02, "op_type": "DynamicQuantizeLinear"}], labels
        )[0]
    )
    assert (
        quantization_reasons("fc", [base, {"latency_ms": 0.005, "op_type": "QGemm"}], labels) == []
    )
    assert "layout" in quantization_reasons("(layout)", [None, {"latency_ms": 0.1}], labels)[0]


def test_wb_compare_fills_reasons_for_a_slower_quantized_layer() -> None:
    base = _profile({"fc": 0.010}, op_type=["Gemm"])
    slow = _profile({"fc": 0.030, "x_quant": 0.02}, op_type=["QGemm", "DynamicQuantizeLinear"])
    slow.recipe = {"name": "int8-dynamic", "label": "int8-dynamic"}
    table = wb.compare([base, slow]).table.set_index("layer")
    assert "integer kernel QGemm" in table.loc["fc", "reasons"]
    assert "Quantize/Dequantize work" in table.loc["x_quant", "reasons"]
