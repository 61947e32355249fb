"""The treelite backend: trees compiled to a native library, checked against the library."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.errors import DeviceUnavailableError, UnsupportedModelError

tl2cgen = pytest.importorskip("tl2cgen")
pytest.importorskip("treelite")
compiles = pytest.mark.skipif(
    not (shutil.which("gcc") or shutil.which("clang")), reason="no C compiler for tl2cgen"
)


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One cache for the module's tests (so a model compiles once), never the user's."""
    root = tmp_path_factory.getbasetemp() / "treelite-cache"
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(root))
    return root / "treelite"


@pytest.fixture(scope="module")
def lgb_multiclass(cancer: tuple[np.ndarray, np.ndarray]) -> Any:
    lgb = pytest.importorskip("lightgbm")
    x = cancer[0]
    classes = np.digitize(x[:, 0], np.quantile(x[:, 0], [1 / 3, 2 / 3]))  # 3 classes
    return lgb.LGBMClassifier(n_estimators=5, max_depth=3, verbose=-1).fit(x, classes)


@compiles
@pytest.mark.parametrize("fixture", ["forest", "xgb_classifier", "lgb_regressor", "lgb_multiclass"])
def test_compiled_trees_predict_as_the_library_does(request, cancer, fixture) -> None:
    x, _ = cancer
    m = wb.load(request.getfixturevalue(fixture), example_inputs=x[:64])
    got = wb.backend("treelite").compile(m, threads=1).run({"input": x})
    want = wb.backend("native").compile(m).run({"input": x})
    assert [(g.shape, g.dtype) for g in got] == [(w.shape, w.dtype) for w in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@compiles
def test_the_compiled_library_is_cached_per_model(
    cancer, forest, xgb_classifier, tmp_path, monkeypatch
) -> None:
    x, _ = cancer
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))  # empty: nothing compiled yet
    cache = tmp_path / "treelite"
    backend = wb.backend("treelite")
    first = backend.compile(wb.load(forest))
    assert first.library.parent == cache and first.library.is_file()

    def no_compiling(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached model was compiled again")

    monkeypatch.setattr(tl2cgen, "export_lib", no_compiling)
    again = backend.compile(wb.load(forest))
    assert again.library == first.library
    np.testing.assert_array_equal(again.run({"input": x})[1], first.run({"input": x})[1])
    with pytest.raises(AssertionError, match="compiled again"):  # another model: compiled
        backend.compile(wb.load(xgb_classifier))
    timings = first.run_layers({"input": x[:8]}, repeats=3)
    assert len(timings) == 1 and len(timings[0].samples_ms) == 3  # one row: the whole call


@compiles  # compile() checks the device (a compiler) before the model
def test_models_without_a_library_object_are_unsupported_with_the_reason(cancer, forest) -> None:
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    m = wb.load(forest)
    backend = wb.backend("treelite")
    onnx_only = wb.load(m.onnx_bytes)
    assert "not ONNX" in backend.supports(onnx_only).reasons[0]
    pruned = wb.transform(m, "tree-prune", trees=2)
    assert "transformed model" in backend.supports(pruned).reasons[0]
    iso = wb.load(IsolationForest(n_estimators=3, random_state=0).fit(cancer[0]))
    assert "outlier detector" in backend.supports(iso).reasons[0]
    with pytest.raises(UnsupportedModelError, match="not ONNX"):
        backend.compile(onnx_only)
    scaled = make_pipeline(StandardScaler(), forest.__class__(3, max_depth=2, random_state=0))
    with pytest.raises(UnsupportedModelError, match="cannot read Pipeline: Not supported model"):
        backend.compile(wb.load(scaled.fit(*cancer)))


def test_unavailable_without_a_compiler_or_the_packages(forest, monkeypatch) -> None:
    import sys

    backend = wb.backend("treelite")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "no C compiler" in backend.availability().reason and backend.devices() == []
    with pytest.raises(DeviceUnavailableError):
        backend.compile(wb.load(forest))
    monkeypatch.setitem(sys.modules, "tl2cgen", None)
    assert "pip install 'inference-workbench[trees]'" in backend.availability().reason
