"""The ``native`` backend and tree models through the shared profiling path."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.errors import BackendOptionError, UnsupportedModelError
from workbench.loaders.trees import run_onnx


def test_native_backend_returns_the_graphs_outputs(cancer, xgb_classifier) -> None:
    x, _ = cancer
    m = wb.load(xgb_classifier, example_inputs=x)
    got = wb.backend("native").compile(m, "cpu").run({"input": x})
    want = run_onnx(m, x)
    assert [g.shape for g in got] == [w.shape for w in want]
    assert [g.dtype for g in got] == [w.dtype for w in want]
    np.testing.assert_array_equal(got[0], xgb_classifier.predict(x))
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)


def test_native_backend_refuses_models_without_a_library_object(forest, tmp_path) -> None:
    backend = wb.backend("native")
    path = tmp_path / "forest.onnx"
    wb.load(forest).to_onnx(path)
    from_file = wb.load(path)
    assert not backend.supports(from_file).ok
    with pytest.raises(UnsupportedModelError, match="no tree-library object"):
        backend.compile(from_file)
    with pytest.raises(BackendOptionError, match="unknown native option"):
        backend.compile(wb.load(forest), threads=2)


def test_native_layer_timing_is_one_row_named_like_the_models_layer(cancer, forest) -> None:
    x, _ = cancer
    m = wb.load(forest)
    (row,) = wb.backend("native").compile(m).run_layers({"input": x[:8]}, repeats=3)
    assert row.layer == "ensemble" and len(row.samples_ms) == 3
    assert row.detail["library"] == "sklearn"


@pytest.mark.parametrize("backend", ["onnxruntime", "numba", "native"])
def test_a_tree_model_profiles_on_each_runtime(forest, backend: str) -> None:
    m = wb.load(forest)
    p = wb.profile(m, backend=backend, batch_size=4, layer_repeats=3, budget_s=0.2, warmup=1)
    assert p.latency.n >= 3
    assert "ensemble" in set(p.layers["layer"])
