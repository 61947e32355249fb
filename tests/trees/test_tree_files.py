"""skops files: tree models load without trust when every type they need is allowed.

Models are tiny and seeded, saved to ``tmp_path``; the hostile files would write a marker
file if any of their code ran while loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.errors import ModelLoadError, UnsafeModelError
from workbench.loaders.trees import run_onnx

sio = pytest.importorskip("skops.io")

#: where a hostile object's code would leave its mark (set by the test that uses it)
MARKER: list[Path] = []


def _rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)


def _write_marker(x: Any) -> Any:
    MARKER[0].write_text("ran")
    return x


class Hostile:
    """Restoring it (skops calls ``__setstate__``) writes the marker."""

    def __init__(self) -> None:
        self.payload = "state"

    def __setstate__(self, state: dict[str, Any]) -> None:
        MARKER[0].write_text("ran")


def test_a_sklearn_forest_in_skops_loads_without_trust(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _rows()
    forest = RandomForestClassifier(5, max_depth=3, random_state=0).fit(x, y)
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)
    assert sio.get_untrusted_types(file=path)  # skops alone would ask: the Tree type
    m = wb.load(path)
    assert m.source == str(path) and m.metadata["trees"]["estimator"] == "RandomForestClassifier"
    np.testing.assert_allclose(run_onnx(m, x)[1], forest.predict_proba(x), atol=1e-6)
    assert m.onnx_bytes == wb.load(forest).onnx_bytes  # the same model as the object's


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosters_and_wrappers_in_skops_load_without_trust(tmp_path: Path, library: str) -> None:
    pytest.importorskip(library)
    pytest.importorskip("onnxmltools")
    x, y = _rows()
    if library == "xgboost":
        import xgboost as xgb

        wrapper: Any = xgb.XGBClassifier(n_estimators=4, max_depth=2, random_state=0).fit(x, y)
        booster = wrapper.get_booster()
    else:
        import lightgbm as lgb

        wrapper = lgb.LGBMClassifier(n_estimators=4, num_leaves=4, verbose=-1).fit(x, y)
        booster = wrapper.booster_
    for obj in (wrapper, booster):
        path = tmp_path / f"{type(obj).__name__}.skops"
        sio.dump(obj, path)
        m = wb.load(path, example_inputs=x)
        assert m.metadata["trees"]["library"] == library
        assert m.metadata["trees"]["estimator"] == type(obj).__name__
        np.testing.assert_allclose(run_onnx(m, x)[1], wrapper.predict_proba(x), atol=1e-5)


def test_a_skops_file_with_a_function_off_the_list_is_refused(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, y = _rows()
    MARKER[:] = [tmp_path / "marker"]
    pipe = make_pipeline(
        FunctionTransformer(_write_marker), RandomForestRegressor(3, max_depth=2, random_state=0)
    ).fit(x, y)
    MARKER[0].unlink()  # fit called the function; loading must not
    path = tmp_path / "pipe.skops"
    sio.dump(pipe, path)
    with pytest.raises(UnsafeModelError) as refusal:
        wb.load(path)
    line = str(refusal.value)
    assert "\n" not in line and "_write_marker" in line and "trust=True" in line
    assert not MARKER[0].exists()


def test_a_hostile_skops_file_is_refused_without_running_it(tmp_path: Path) -> None:
    MARKER[:] = [tmp_path / "marker"]
    path = tmp_path / "hostile.skops"
    sio.dump({"model": Hostile()}, path)
    with pytest.raises(UnsafeModelError, match=r"Hostile.*trust=True"):
        wb.load(path)
    assert not MARKER[0].exists()
    # the marker is a real witness: trusting the file restores the object, which writes it
    with pytest.raises(ModelLoadError, match="cannot load a dict"):
        wb.load(path, trust=True)
    assert MARKER[0].exists()


def test_a_damaged_skops_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.skops"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelLoadError) as refusal:
        wb.load(path)
    line = str(refusal.value)
    assert "\n" not in line and "broken.skops is not a readable" in line


def test_lightgbm_files_need_trust_where_lightgbm_can_run_code_from_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lgb_regressor: Any
) -> None:
    import lightgbm

    path = tmp_path / "model.txt"
    lgb_regressor.booster_.save_model(str(path))
    monkeypatch.setattr(lightgbm, "__version__", "4.5.0")
    with pytest.raises(UnsafeModelError) as refusal:
        wb.load(path)
    line = str(refusal.value)
    assert "\n" not in line and "CVE-2024-43598" in line and "trust=True" in line
    assert wb.load(path, trust=True).metadata["trees"]["library"] == "lightgbm"
    booster = tmp_path / "booster.skops"  # skops restores a booster with the same parser
    sio.dump(lgb_regressor.booster_, booster)
    with pytest.raises(UnsafeModelError, match="CVE-2024-43598"):
        wb.load(booster)


def test_a_skops_archive_is_bounded_before_skops_reads_it(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "bomb.skops"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b"{}" + b" " * (4 * 2**20))  # inflates ~1000 times
    with pytest.raises(UnsafeModelError, match="decompression bomb"):
        wb.load(path)
    with pytest.raises(ModelLoadError, match=r"more than the 1\.0 MiB limit when unpacked"):
        wb.load(path, trust=True, max_bytes=2**20)
