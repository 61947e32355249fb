"""Loading tree ensembles: objects, files that run no code, pickles under trust, bad input."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.errors import ModelLoadError, UnsafeModelError
from workbench.loaders.trees import check_against_native, native_of, probe_rows, run_onnx


def test_forest_loads_as_onnx_and_matches_predict_proba(cancer, forest) -> None:
    x, _ = cancer
    m = wb.load(forest, example_inputs=x[:100])
    assert m.framework == "onnx"
    assert [s.name for s in m.inputs] == ["input"] and m.inputs[0].shape[1] == 30
    assert [layer.name for layer in m.layers] == ["ensemble"]
    facts = m.metadata["trees"]
    assert facts["library"] == "sklearn" and facts["task"] == "classifier"
    assert set(facts["converter"]) == {"skl2onnx", "onnx"}
    assert facts["check"]["rows"] == 100
    label, proba = run_onnx(m, x)
    np.testing.assert_allclose(proba, forest.predict_proba(x), atol=1e-6)
    np.testing.assert_array_equal(label, forest.predict(x))


def test_xgboost_files_load_without_trust(tmp_path: Path, cancer, xgb_classifier) -> None:
    x, _ = cancer
    want = xgb_classifier.predict_proba(x)
    for suffix in (".json", ".ubj"):
        path = tmp_path / f"model{suffix}"
        xgb_classifier.get_booster().save_model(str(path))
        m = wb.load(path)
        assert m.source == str(path) and m.metadata["trees"]["estimator"] == "Booster"
        np.testing.assert_allclose(run_onnx(m, x)[1], want, atol=1e-5)


def test_lightgbm_text_file_loads(tmp_path: Path, cancer, lgb_regressor) -> None:
    x, _ = cancer
    path = tmp_path / "model.txt"
    lgb_regressor.booster_.save_model(str(path))
    m = wb.load(path, example_inputs=x)
    assert m.metadata["trees"]["task"] == "regressor"
    got = run_onnx(m, x)[0].ravel()
    np.testing.assert_allclose(got, lgb_regressor.predict(x), rtol=1e-5, atol=1e-5)


def test_a_text_file_that_is_no_lightgbm_model_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a LightGBM text model"):
        wb.load(path)


def test_pickles_need_trust(tmp_path: Path, forest) -> None:
    path = tmp_path / "forest.pkl"
    path.write_bytes(pickle.dumps(forest))
    with pytest.raises(UnsafeModelError, match="trust=True"):
        wb.load(path)
    assert wb.load(path, trust=True).metadata["trees"]["estimator"] == "RandomForestClassifier"


def test_unfitted_and_unsupported_estimators_get_one_line() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.semi_supervised import LabelSpreading

    with pytest.raises(ModelLoadError, match="not fitted"):
        wb.load(RandomForestClassifier())
    x = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ModelLoadError, match=r"cannot convert LabelSpreading.*shape calculator"):
        wb.load(LabelSpreading().fit(x, np.arange(20) % 2))


def test_check_data_of_the_wrong_width_is_refused(cancer, forest) -> None:
    x, _ = cancer
    with pytest.raises(ModelLoadError, match=r"should be \(rows, 30\)"):
        wb.load(forest, example_inputs=x[:, :5])


def test_a_disagreeing_conversion_names_the_largest_difference(cancer, forest) -> None:
    x, _ = cancer
    m = wb.load(forest)
    native = native_of(forest)

    def shifted(rows: np.ndarray) -> list[Any]:
        label, proba = native.predict(rows)
        return [label, proba + np.where(np.arange(len(rows)) == 7, 0.25, 0.0)[:, None]]

    wrong = dataclasses.replace(native, predict=shifted)
    with pytest.raises(ModelLoadError, match=r"largest difference 0\.25 at row 7 of 50"):
        check_against_native(m, wrong, x[:50])


def test_probe_rows_reach_both_sides_of_the_splits(forest) -> None:
    m = wb.load(forest)
    rows = probe_rows(m, rows=256)
    assert rows.shape == (256, 30) and rows.dtype == np.float32
    leaves = forest.apply(rows)  # (rows, trees): the leaf each row reaches
    assert all(len(np.unique(leaves[:, t])) > 2 for t in range(leaves.shape[1]))


def test_pipelines_label_the_scaler_as_preprocess(cancer) -> None:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = cancer
    pipe = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=10)).fit(x, y)
    m = wb.load(pipe, example_inputs=x)
    assert [layer.name for layer in m.layers][:2] == ["preprocess", "ensemble"]


def test_converted_boosters_have_the_same_fingerprint_each_load(
    xgb_classifier, lgb_regressor
) -> None:
    # treelite's compiled libraries are cached by fingerprint, across processes
    for estimator in (xgb_classifier, lgb_regressor):
        assert wb.load(estimator).fingerprint() == wb.load(estimator).fingerprint()
