"""Cold start as a first-class number: load, compile and first inference in every profile."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import workbench as wb
from workbench.testing import toy_cnn

BACKENDS = ["torch", "onnxruntime", "numba"] + (
    ["openvino"] if importlib.util.find_spec("wb_openvino") else []
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_reports_cold_start_next_to_steady_state(backend: str) -> None:
    p = wb.profile(toy_cnn(), backend=backend, batch_size=2, layers=False, budget_s=0.05)
    assert p.load_s is None  # a Model given already loaded: nothing was loaded here
    assert p.compile_s is not None and p.compile_s > 0
    assert p.first_inference_ms is not None and p.first_inference_ms > 0
    data = json.loads(p.to_json())
    assert data["compile_s"] == p.compile_s
    assert data["first_inference_ms"] == p.first_inference_ms
    assert "load_s" in data and data["load_s"] is None
    assert "cold start" in p.summary() and "compile" in p._repr_html_()


def test_loading_a_file_is_timed(tmp_path: Path) -> None:
    toy_cnn().to_onnx(tmp_path / "toy.onnx")
    p = wb.profile(str(tmp_path / "toy.onnx"), backend="onnxruntime", layers=False, budget_s=0.05)
    assert p.load_s is not None and p.load_s > 0
    assert wb.Profile.from_json(p.to_json()).load_s == p.load_s


def test_old_json_without_cold_start_still_loads() -> None:
    p = wb.profile(toy_cnn(), backend="onnxruntime", layers=False, budget_s=0.05)
    data = json.loads(p.to_json())
    for key in ("load_s", "compile_s", "first_inference_ms"):
        del data[key]
    old = wb.Profile.from_dict(data)
    assert (old.load_s, old.compile_s, old.first_inference_ms) == (None, None, None)
    assert "cold start" not in old.summary()
