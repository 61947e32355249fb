"""'Why is my INT8 model slower?': per-layer reasons from the graphs and the kernels.

The first tests run `wb.profile` on a real INT8 and a real FP16 digits-cnn; the rest pin
the wording on hand-made profiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pandas as pd
import pytest

import workbench as wb
from workbench import machine
from workbench.model import Model
from workbench.optimize.explain import explain, graph_reasons, kernel_reasons, reasons
from workbench.optimize.quantize import Int8Static
from workbench.profiling import cost
from workbench.profiling.profile import Profile
from workbench.profiling.reasons import NATIVE_HALF_FLAGS, quantization_reasons
from workbench.profiling.timer import Measurement

CONVS = ["features.0", "features.3", "features.7"]
FAST = {"budget_s": 0.05, "options": {"threads": 1}}


@pytest.fixture(autouse=True, scope="module")
def _no_roofline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The roofline (tens of seconds of ceiling measurements) is not what is tested here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("wb-cache")))
        patch.setattr(cost, "roofline", lambda layers, device: cost.Roofline(layers))
        yield


@pytest.fixture(scope="module")
def cnn() -> Model:
    return wb.samples.load("digits-cnn")


@pytest.fixture(scope="module")
def int8_profiles(cnn: Model, digits_train: wb.Dataset) -> tuple[Model, Profile, Profile]:
    q = wb.quantize(cnn, "int8-static", data=digits_train.take(128))
    base = wb.profile(cnn, "onnxruntime", batch_size=32, **FAST)
    return q, base, wb.profile(q, "onnxruntime", batch_size=32, **FAST)


def test_a_real_int8_profile_records_the_kernels_each_layer_ran(int8_profiles) -> None:
    _, base, variant = int8_profiles
    rows = variant.layers.set_index("layer")
    # the layer is the model's Conv, not the DequantizeLinear of its weights ...
    assert list(rows.loc[CONVS, "op_type"]) == ["Conv"] * 3
    # ... and what ONNX Runtime ran for it is the integer convolution
    assert list(rows.loc[CONVS, "kernels"]) == ["QLinearConv"] * 3
    assert rows.loc["classifier.1", "kernels"].startswith("QGemm")
    assert base.layers.set_index("layer").loc["features.0", "kernels"] == "Conv"
    back = Profile.from_json(variant.to_json()).layers.set_index("layer")
    assert list(back.loc[CONVS, "kernels"]) == ["QLinearConv"] * 3


def test_explain_names_int8_work_on_real_profiles(cnn: Model, int8_profiles) -> None:
    q, base, variant = int8_profiles
    found = kernel_reasons(variant, base)
    for layer in CONVS:
        assert "runs QLinearConv (INT8 convolution), replacing Conv" in found[layer]
    assert "runs QGemm (INT8 fully connected layer), replacing Gemm" in found["classifier.1"]
    # the input's quantization and the NHWC<->NCHW transposes ORT adds for the int8 kernels
    quantized_input = [r for r in found.values() if any("QuantizeLinear" in i for i in r)]
    assert quantized_input and any(
        "layout conversion added (Transpose)" in i for r in found.values() for i in r
    )
    table = explain(base, variant, cnn, q).set_index("layer")
    assert list(table.loc[CONVS, "variant_work"]) == ["QLinearConv"] * 3
    assert list(table.loc[CONVS, "base_work"]) == ["Conv"] * 3
    for layer in table.index[table["slower"]]:
        assert table.loc[layer, "reasons"], f"{layer} got slower with no reason given"
    compared = wb.compare([base, variant]).table.set_index("layer")
    assert not compared.loc[CONVS, "reasons"].str.contains("op type differs").any()


def test_a_qdq_wrapped_conv_that_ran_in_float_is_named_so(int8_profiles) -> None:
    q, _, _ = int8_profiles
    options = {"threads": 1, "optimization": "disable"}
    raw = wb.profile(q, "onnxruntime", batch_size=8, budget_s=0.02, options=options)
    kernels = raw.layers.set_index("layer").loc["features.0", "kernels"]
    assert kernels == "DequantizeLinear, Conv"  # unfused: float Conv on dequantized data
    found = kernel_reasons(raw)["features.0"]
    assert any("fell back to a float kernel (Conv)" in r and "QDQ-wrapped Conv" in r for r in found)


def test_fp16_on_torch_without_native_fp16_is_explained(cnn: Model, monkeypatch) -> None:
    half = wb.quantize(cnn, "fp16")
    base = wb.profile(cnn, "torch", batch_size=8, **FAST)
    variant = wb.profile(half, "torch", batch_size=8, **FAST)
    native = set(NATIVE_HALF_FLAGS["float16"]) & set(machine.cpu_info()["flags"])
    table = explain(base, variant, cnn, half).set_index("layer")
    # the layer table records what each module ran, with its precision
    assert list(table.loc[CONVS, "base_work"]) == ["Conv2d(float32)"] * 3
    assert list(table.loc[CONVS, "variant_work"]) == ["Conv2d(float16)"] * 3
    if not native:  # this CPU emulates float16: the whole model is several times slower
        assert variant.latency.median > 3 * base.latency.median
        slow_convs = [c for c in CONVS if table.loc[c, "slower"]]
        assert slow_convs
        for layer in slow_convs:
            assert (
                "computes in float16 on a CPU without native float16" in table.loc[layer, "reasons"]
            )
    flags = {**machine.cpu_info(), "flags": ["avx512f", "avx512_fp16"]}
    monkeypatch.setattr(machine, "cpu_info", lambda: flags)
    assert reasons(base, variant) == {}  # native FP16: nothing to blame on it
    monkeypatch.setattr(machine, "cpu_info", lambda: {**flags, "flags": ["avx512f"]})
    found = reasons(None, variant)  # the recipe alone says the variant is FP16
    assert all("float16" in found[layer] for layer in CONVS)
    assert reasons(None, base) == {}


def _profile(layers: dict[str, float], **columns: list) -> Profile:
    frame = pd.DataFrame({"layer": list(layers), "latency_ms": list(layers.values()), **columns})
    return Profile("m", "onnxruntime", "cpu", 32, Measurement((1.0,)), layers=frame)


def test_unfolded_batchnorm_is_named_as_a_float_fallback(digits_train) -> None:
    cnn = wb.samples.load("digits-cnn")
    q = wb.quantize(cnn, Int8Static(method="minmax", fold_batchnorm=False), digits_train.take(64))
    found = graph_reasons(cnn.to_onnx().proto, q.proto)
    assert any("Quantize/Dequantize" in r for r in found["features.3"])
    assert any("BatchNormalization has no INT8 kernel" in r for r in found["features.4"])
    folded = wb.quantize(cnn, Int8Static(method="minmax"), digits_train.take(64))
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
        {"conv": 1.0, "fc": 1.0, "bn": 1.0},
        kernels=["QuantizeLinear, Conv, DequantizeLinear", "QGemm", "QLinearConv, Sigmoid"],
    )
    found = kernel_reasons(profile)
    assert "fell back to a float kernel (Conv)" in found["conv"][0]
    assert found["fc"] == ["runs QGemm (INT8 fully connected layer)"]
    assert "float kernels remain: Sigmoid" in found["bn"]
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
    slow = dataclasses.replace(slow, recipe={"name": "int8-dynamic", "label": "int8-dynamic"})
    table = wb.compare([base, slow]).table.set_index("layer")
    assert "integer kernel QGemm" in table.loc["fc", "reasons"]
    assert "Quantize/Dequantize work" in table.loc["x_quant", "reasons"]


def test_a_grown_unattributed_row_is_explained_as_not_a_layer() -> None:
    from workbench.profiling.table import UNATTRIBUTED
    from workbench.profiling.timer import Measurement

    def profile(unattributed_ms: float) -> Profile:
        layers = pd.DataFrame(
            {"layer": ["conv", UNATTRIBUTED], "op_type": ["Conv", ""],
             "latency_ms": [1.0, unattributed_ms]}
        )  # fmt: skip
        return Profile("toy", "onnxruntime", "cpu", 1, Measurement((2.0,)), layers=layers)

    table = explain(profile(0.1), profile(0.9)).set_index("layer")
    assert table.loc[UNATTRIBUTED, "slower"]
    assert table.loc[UNATTRIBUTED, "reasons"].startswith("not a layer")
    assert table.loc["conv", "reasons"] == ""
