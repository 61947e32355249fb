"""`compare`: layers lined up across backends and across variants of one model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.profiling.compare import op_family, register_reason
from workbench.profiling.profile import UNATTRIBUTED, Profile
from workbench.profiling.timer import Measurement


def _fake(backend: str, rows: list[tuple], recipe=None) -> Profile:
    layers = pd.DataFrame(
        [{"layer": r[0], "op_type": r[1], "latency_ms": r[2], "fused_into": r[3] if len(r) > 3
          else None} for r in rows]
        + [{"layer": UNATTRIBUTED, "op_type": "", "latency_ms": 0.1}]
    )  # fmt: skip
    return Profile("m", backend, "cpu", 8, Measurement((1.0,)), layers=layers, recipe=recipe)


def test_aligned_table_ratios_deltas_and_reasons() -> None:
    a = _fake("torch", [("conv", "Conv2d", 1.0), ("bn", "BatchNorm2d", 0.5), ("fc", "Linear", 0.2)])
    b = _fake(
        "onnxruntime",
        [("conv", "Conv", 3.0), ("bn", "BatchNormalization", 0.0, "conv"), ("fc", "MatMul", 0.1),
         ("(layout)", "R", 0.4)],
    )  # fmt: skip
    result = wb.compare([a, b])
    table = result.table.set_index("layer")
    assert result.labels == ["torch", "onnxruntime"]
    assert table.loc["conv", "onnxruntime ratio"] == pytest.approx(3.0)
    assert table.loc["conv", "onnxruntime delta_ms"] == pytest.approx(2.0)
    assert table.loc["fc", "onnxruntime ratio"] == pytest.approx(0.5)
    # only in one profile: visible, with its full time as the delta
    assert "only in onnxruntime" in table.loc["(layout)", "reasons"]
    assert np.isnan(table.loc["(layout)", "torch latency_ms"])
    assert "fused into conv in onnxruntime" in table.loc["bn", "reasons"]
    # Conv2d vs Conv and Linear vs MatMul are the same family: no op-change reason
    assert "op type" not in table.loc["conv", "reasons"] + table.loc["fc", "reasons"]
    # sorted by |delta|, the unattributed row last
    assert list(result.table["layer"])[:2] == ["conv", "bn"]
    assert result.table["layer"].iloc[-1] == UNATTRIBUTED
    assert "Per-layer comparison" in result._repr_html_()


def test_variants_get_recipe_labels_and_custom_reasons() -> None:
    base = _fake("onnxruntime", [("fc1", "Gemm", 1.0), ("fc2", "Gemm", 1.0)])
    q = _fake("onnxruntime", [("fc1", "MatMulInteger", 1.5), ("fc2", "Gemm", 1.0),
                              ("fc1_quant", "DynamicQuantizeLinear", 0.3)],
              recipe={"name": "int8-dynamic"})  # fmt: skip

    @register_reason
    def quantize_nodes(layer, rows, labels):
        return (
            ["adds a quantize step"]
            if any(r and "Quantize" in str(r.get("op_type")) for r in rows)
            else []
        )

    try:
        result = wb.compare([base, q])
    finally:
        from workbench.profiling import compare as module

        module._REASONS.remove(quantize_nodes)
    table = result.table.set_index("layer")
    assert result.labels == ["m[baseline]", "m[int8-dynamic]"]
    assert "op type differs" in table.loc["fc1", "reasons"]
    assert "adds a quantize step" in table.loc["fc1_quant", "reasons"]
    # extra layers sit next to the layer they follow, not at the end
    assert list(table.index).index("fc1_quant") > 0


def test_a_slower_integer_kernel_is_explained_in_the_reasons_column() -> None:
    base = _fake("onnxruntime", [("fc", "Gemm", 0.010), ("head", "Gemm", 0.010)])
    int8 = _fake(
        "onnxruntime",
        [("fc", "QGemm", 0.020), ("head", "QGemm", 0.005)],
        recipe={"name": "int8-dynamic"},
    )
    table = wb.compare([base, int8], labels=["fp32", "int8"]).table.set_index("layer")
    assert "integer kernel QGemm in int8 is slower" in table.loc["fc", "reasons"]
    assert "integer kernel" not in table.loc["head", "reasons"]  # it got faster


def test_errors() -> None:
    one = _fake("torch", [("a", "Linear", 1.0)])
    with pytest.raises(ValueError, match="at least two"):
        wb.compare([one])
    empty = Profile("m", "torch", "cpu", 1, Measurement((1.0,)))
    with pytest.raises(ValueError, match="no per-layer"):
        wb.compare([one, empty])
    with pytest.raises(ValueError, match="unique"):
        wb.compare([one, one], labels=["x", "x"])


def test_op_families() -> None:
    assert op_family("Conv2d") == op_family("Conv") == "conv"
    assert op_family("Linear") == op_family("Gemm") == op_family("MatMul")
    assert op_family("BatchNorm2d") == op_family("BatchNormalization")


def test_a_torch_model_on_torch_and_on_onnxruntime_lines_up() -> None:
    model = wb.samples.load("digits-cnn")
    profiles = [
        wb.profile(model, backend, batch_size=4, budget_s=0.05, layer_repeats=3)
        for backend in ("torch", "onnxruntime")
    ]
    table = wb.compare(profiles).table.set_index("layer")
    for layer in ("features.0", "features.3", "features.6", "features.7", "classifier.1"):
        assert table.loc[layer, "present_in"] == "torch, onnxruntime", layer
        assert table.loc[layer, "onnxruntime ratio"] > 0
    assert "only in onnxruntime" in table.loc["(shape)", "reasons"]
    assert "fused into features.0" in table.loc["features.1", "reasons"]


def test_two_variants_of_one_model_line_up() -> None:
    from workbench.testing import toy_mlp

    small, wide = toy_mlp(hidden=16), toy_mlp(hidden=512)
    wide.recipe = {"name": "wider", "hidden": 512}
    profiles = [
        wb.profile(m, "onnxruntime", batch_size=16, budget_s=0.05, layer_repeats=3)
        for m in (small, wide)
    ]
    result = wb.compare(profiles)
    table = result.table.set_index("layer")
    assert result.labels == ["toy-mlp[baseline]", "toy-mlp[wider]"]
    assert table.loc["0", "present_in"] == "toy-mlp[baseline], toy-mlp[wider]"
    # FLOPs are not compared here, but the rows carry each variant's latency
    assert table.loc["0", "toy-mlp[wider] latency_ms"] > 0
    assert not table.loc["0", "reasons"]


def test_profiles_and_comparisons_compare_by_identity_without_raising() -> None:
    a = _fake("torch", [("fc", "Linear", 0.2)])
    twin = _fake("torch", [("fc", "Linear", 0.2)])
    assert a == a
    assert a != twin
    assert a in [twin, a]
    result = wb.compare([a, twin])
    assert result == result
    assert result != wb.compare([a, twin])
