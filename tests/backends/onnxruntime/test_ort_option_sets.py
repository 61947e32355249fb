"""ONNX Runtime option sets as sweep variants: ``"onnxruntime[optimization=basic]"``."""

from __future__ import annotations

from pathlib import Path

import pytest

import workbench as wb
from workbench.backends.spec import backend_spec, parse_backend
from workbench.errors import BackendOptionError


def test_specs_round_trip_with_typed_values() -> None:
    name, options = parse_backend("onnxruntime[optimization=basic, threads=2, profiling=false]")
    assert name == "onnxruntime"
    assert options == {"optimization": "basic", "threads": 2, "profiling": False}
    assert parse_backend(backend_spec(name, options)) == (name, options)
    assert parse_backend("torch-compile") == ("torch-compile", {})
    assert backend_spec("torch") == "torch"


@pytest.mark.parametrize("bad", ["onnxruntime[basic]", "onnx runtime", "ort[=1]"])
def test_malformed_specs_say_the_expected_form(bad: str) -> None:
    with pytest.raises(BackendOptionError, match=r"onnxruntime\[optimization=basic\]"):
        parse_backend(bad)


def test_a_sweep_lists_option_sets_as_rows(tmp_path: Path) -> None:
    model = wb.samples.load("digits-mlp")
    backends = ["onnxruntime", "onnxruntime[optimization=disabled]", "onnxruntime[level=9]"]
    table = wb.sweep(
        model, ["baseline"], backends, store=tmp_path / "s.db", budget_s=0.05, batch_size=4
    )
    rows = table.df.set_index("backend")
    assert list(rows.index) == backends
    ok = rows.loc[backends[:2]]
    assert ok["error"].isna().all() and (ok["latency_ms"] > 0).all()
    # the same model evaluates the same on either graph optimisation level
    assert ok["metric_value"].nunique() == 1
    assert "unknown onnxruntime option 'level'" in rows.loc[backends[2], "error"]
