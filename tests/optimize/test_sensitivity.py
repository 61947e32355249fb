"""Sensitivity and suggest: one layer at a time, SQNR against the original, a greedy plan."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import TransformError
from workbench.optimize.quantize import Int8Static
from workbench.optimize.sensitivity import SENSITIVITY_COLUMNS, candidate_layers, sqnr_db


def test_sqnr_by_hand() -> None:
    reference = np.array([3.0, 4.0])  # signal power 25
    assert sqnr_db(reference, reference + np.array([0.5, 0.0])) == pytest.approx(20.0)  # noise 0.25
    assert sqnr_db(reference, reference) == math.inf


def test_candidates(digits_mlp) -> None:
    assert candidate_layers(digits_mlp, Int8Static()) == ["fc1", "fc2", "head"]
    from workbench.optimize.prune import ChannelPrune

    assert candidate_layers(digits_mlp, ChannelPrune()) == ["fc1", "fc2"]


def test_sensitivity_one_layer_at_a_time(digits_mlp, digits_test, digits_train) -> None:
    report = wb.sensitivity(
        digits_mlp,
        digits_test.take(200),
        transform=Int8Static(calibration="minmax", calibration_samples=64),
        calibration=digits_train,
        budget_s=0.02,
        options={"threads": 1},
    )
    assert list(report.columns) == SENSITIVITY_COLUMNS
    assert sorted(report["layer"]) == ["fc1", "fc2", "head"] and report["error"].isna().all()
    assert (report["sqnr_db"] > 25).all() and np.isfinite(report["sqnr_db"]).all()
    assert (report["metric_delta"].abs() <= 0.02).all()
    assert (report["latency_ms"] > 0).all()
    assert report.attrs["baseline"] == pytest.approx(
        (digits_mlp.module(__import__("torch").from_numpy(digits_test.inputs[:200])).argmax(1).numpy()
         == digits_test.labels[:200]).mean()
    )  # fmt: skip


def _report(deltas: dict[str, tuple[float, float]]) -> pd.DataFrame:
    rows = [
        {"layer": k, "metric_delta": d, "latency_delta_ms": t, "speedup": 1.0, "error": None}
        for k, (d, t) in deltas.items()
    ]
    return pd.DataFrame(rows)


def test_suggest_keeps_only_layers_that_make_it_faster(
    digits_mlp, digits_test, digits_train
) -> None:
    report = _report({"fc1": (0.0, +0.01), "fc2": (0.0, -0.05), "head": (0.0, -0.01)})
    config = Int8Static(calibration="minmax", calibration_samples=64)
    plan = wb.suggest(
        digits_mlp, digits_test, transform=config, max_drop=1.0, report=report,
        calibration=digits_train, budget_s=0.02,
    )  # fmt: skip
    assert isinstance(plan, Int8Static) and plan.exclude == ("fc1",)
    q = wb.quantize(digits_mlp, plan, data=digits_train.take(64))
    assert q.recipe["config"]["exclude"] == ["fc1"]


def test_suggest_refuses_an_impossible_budget(digits_mlp, digits_test, digits_train) -> None:
    report = _report({"fc1": (0.0, +0.01), "fc2": (0.0, +0.05)})
    with pytest.raises(TransformError, match="within max_drop"):
        wb.suggest(digits_mlp, digits_test, transform="int8-dynamic", report=report, budget_s=0.02)
    with pytest.raises(TransformError, match="exclude"):
        wb.sensitivity(digits_mlp, digits_test, transform="bf16")


def test_sensitivity_of_channel_pruning_prunes_one_layer_each(digits_mlp, digits_test) -> None:
    from workbench.optimize.prune import ChannelPrune

    report = wb.sensitivity(
        digits_mlp, digits_test.take(128), transform=ChannelPrune(sparsity=0.75),
        backend="torch", budget_s=0.02,
    )  # fmt: skip
    assert sorted(report["layer"]) == ["fc1", "fc2"] and report["error"].isna().all()
    assert (report["sqnr_db"] < 40).all()  # removing 3/4 of a layer's neurons is visible
    assert report.attrs["metric"] == "accuracy"


def test_a_method_name_as_calibration_data_is_refused(digits_mlp, digits_test) -> None:
    for run in (wb.sensitivity, wb.suggest):
        with pytest.raises(TransformError, match=r"transform=Int8Static\(calibration='minmax'\)"):
            run(digits_mlp, digits_test, transform="int8-static", calibration="minmax")
