"""The example plugin in extensions/ works through the entry points, like a third party."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import workbench as wb

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("wb_reference") is None,
    reason="pip install -e extensions/workbench-reference (scripts/setup.sh does)",
)


def test_reference_backend_agrees_with_onnxruntime() -> None:
    assert "onnx-reference" in wb.backend_names()
    model = wb.samples.load("digits-mlp")
    x, _ = next(iter(wb.samples.dataset("digits", batch_size=8)))
    ours = wb.backend("onnx-reference").compile(model).run(x)[0]
    ort = wb.backend("onnxruntime").compile(model).run(x)[0]
    np.testing.assert_allclose(ours, ort, rtol=1e-5, atol=1e-5)


def test_fake_quant_transform_from_the_plugin() -> None:
    model = wb.samples.load("digits-mlp")
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    data = wb.samples.dataset("digits")
    fine = wb.transform(model, "fake-quant-weights", bits=8)
    coarse = wb.transform(model, "fake-quant-weights", bits=2)
    assert fine.recipe["label"] == "fake-quant-weights(int8)" and fine.parent is model
    acc = {
        m.recipe_name: wb.evaluate(m, data, backend="torch").value for m in (model, fine, coarse)
    }
    assert abs(acc["fake-quant-weights(int8)"] - acc["baseline"]) <= 0.01
    assert acc["fake-quant-weights(int2)"] < acc["baseline"]
    assert all((before[k] == v).all() for k, v in model.module.state_dict().items())
