"""The notebook views' figures come from viz, registered from the top: the result classes
import no drawing code, plotly is never needed, and a class without a figure shows its
summary and table."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pandas as pd
import pytest

import workbench
from workbench.profiling import results
from workbench.profiling.timer import Measurement


@pytest.mark.parametrize(("result_class", "function"), sorted(workbench._REPR_FIGURES.items()))
def test_every_registered_figure_names_a_class_and_a_drawing_function(
    result_class: str, function: str
) -> None:
    from workbench.viz import reprs

    module, _, name = result_class.partition(":")
    assert isinstance(getattr(importlib.import_module(module), name), type)
    assert callable(getattr(reprs, function)) and function in reprs.__all__


def test_the_views_draw_without_plotly_and_import_workbench_loads_no_figures() -> None:
    code = """
import sys
sys.modules["plotly"] = None  # as in an install without the dashboard extra
import workbench
assert not any(m.startswith("workbench.viz") for m in sys.modules), "viz at import"
import pandas as pd
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
layers = pd.DataFrame({"layer": ["fc1", "fc2"], "op_type": ["Gemm", "Relu"],
                       "latency_ms": [0.3, 0.1], "share": [0.75, 0.25]})
p = Profile("m", "onnxruntime", "cpu", 1, Measurement((0.4, 0.5, 0.45)), layers=layers)
page = p._repr_html_()
print(page.count("class='bar'"), "workbench.viz.reprs" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "True"]


def test_without_a_registered_figure_a_view_is_its_summary_and_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    m = Measurement((0.40, 0.41, 0.45, 0.52, 0.9))
    assert m._repr_html_().count("<svg") == 1
    monkeypatch.setattr(results, "_figures", {})
    page = m._repr_html_()
    assert "<svg" not in page and "median" in page and "samples" in page


def test_a_subclass_shows_its_base_class_figure() -> None:
    from workbench.evaluation.sweep import TradeoffTable

    class Mine(TradeoffTable):
        pass

    rows = [{"variant": "a", "backend": "b", "device": "cpu", "latency_ms": 1.0,
             "metric": "accuracy", "metric_value": 0.9, "pareto": True, "error": None}]  # fmt: skip
    assert results.figure_html(Mine(pd.DataFrame(rows))).count("class='pt front'") == 1
