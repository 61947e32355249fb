"""benchmarks/gpu_check.py's runtimes section, run on the CPU devices in place of the GPU ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def gpu_check() -> Any:
    path = Path(__file__).parents[3] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runtimes_rows_compare_with_eager_and_skip_what_is_missing(
    gpu_check: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtimes = (("onnxruntime", "cpu", {"optimization": "basic"}), ("onnxruntime", "rocm:0", {}))
    monkeypatch.setattr(gpu_check, "RUNTIMES", runtimes)
    ran, missing = gpu_check.check_runtimes([2], reference="cpu")
    assert ran["match_torch"] and ran["compile_s"] > 0 and ran["latency_ms"] > 0
    assert ran["cpu_fallback_layers"] == []  # on the CPU provider nothing falls back
    assert missing["skipped"] == "rocm:0 not available for onnxruntime"
    table = gpu_check.render({"runtimes": [ran, missing]})
    assert "onnxruntime[optimization=basic] cpu" in table and "rocm:0 not available" in table
