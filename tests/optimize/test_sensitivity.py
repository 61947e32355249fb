"""Sensitivity and suggest: one layer at a time, SQNR against the original, a greedy plan."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from int8_cpu import saturates_without_int8_dot

import workbench as wb
from workbench.errors import TransformError
from workbench.optimize import sensitivity as sensitivity_module
from workbench.optimize.prune import MagnitudePrune
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


@saturates_without_int8_dot
def test_sensitivity_one_layer_at_a_time(digits_mlp, digits_test, digits_train) -> None:
    report = wb.sensitivity(
        digits_mlp,
        digits_test.take(200),
        transform=Int8Static(method="minmax", calibration_samples=64),
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
    config = Int8Static(method="minmax", calibration_samples=64)
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
        with pytest.raises(TransformError, match=r"transform=Int8Static\(method='minmax'\)"):
            run(digits_mlp, digits_test, transform="int8-static", calibration="minmax")


def _accuracy(model: Any, data: wb.Dataset) -> float:
    """Accuracy in points, computed here from the torch module (not through suggest's code)."""
    import torch

    with torch.no_grad():
        predicted = model.module(torch.from_numpy(data.inputs)).argmax(1).numpy()
    return 100.0 * float((predicted == data.labels).mean())


def test_suggest_keeps_out_a_layer_whose_harm_breaks_the_budget(digits_mlp, digits_test) -> None:
    # 97% of the weights pruned: head alone costs ~12 points, fc2 ~24, fc1 ~60. The report
    # below claims every layer is harmless; suggest must measure each set it builds and
    # keep the one that fits the budget, whatever the report says.
    prune = MagnitudePrune(sparsity=0.97)
    lies = _report({"head": (0.0, -0.03), "fc2": (0.0, -0.02), "fc1": (0.0, -0.01)})
    lies["speedup"] = [3.0, 2.0, 1.5]  # tried in this order: head, fc2, fc1
    plan = wb.suggest(
        digits_mlp, digits_test, transform=prune, max_drop=18.0, report=lies, backend="torch"
    )
    assert sorted(plan.exclude) == ["fc1", "fc2"]
    base = _accuracy(digits_mlp, digits_test)
    assert base - _accuracy(wb.prune(digits_mlp, plan), digits_test) <= 18.0
    for harmful in ("fc1", "fc2"):  # each excluded layer would have broken the budget
        wider = plan.with_exclude(tuple(x for x in plan.exclude if x != harmful))
        assert base - _accuracy(wb.prune(digits_mlp, wider), digits_test) > 18.0


def test_suggest_measures_its_own_report_when_none_is_given(
    digits_mlp, digits_test, monkeypatch
) -> None:
    # latency from the weights left (a deterministic stand-in for timing on a busy machine)
    timed: list[int] = []

    def nonzero_weights(self, model, budget_s=None) -> float:  # type: ignore[no-untyped-def]
        timed.append(1)
        return float(sum(int((p != 0).sum()) for p in model.module.parameters()))

    monkeypatch.setattr(sensitivity_module._Bench, "latency", nonzero_weights)
    prune = MagnitudePrune(sparsity=0.97)
    plan = wb.suggest(digits_mlp, digits_test, transform=prune, max_drop=30.0, backend="torch")
    assert len(timed) >= 4  # a report was measured: the baseline and each layer alone
    # fc2 alone (24 points) would fit too, but the least harmful goes first: head (12
    # points), and then no pair fits 30 points (head + fc2 lose 41)
    assert sorted(plan.exclude) == ["fc1", "fc2"]
    assert (
        _accuracy(digits_mlp, digits_test) - _accuracy(wb.prune(digits_mlp, plan), digits_test)
        <= 30.0
    )
    with pytest.raises(TransformError, match=r"within max_drop=5\.0"):
        wb.suggest(digits_mlp, digits_test, transform=prune, max_drop=5.0, backend="torch")


def test_a_zero_budget_accepts_layers_that_lose_nothing(digits_mlp, digits_test) -> None:
    # 10% of the smallest weights: the predictions on the test split do not change
    prune = MagnitudePrune(sparsity=0.1)
    faster = _report({"head": (0.0, -0.03), "fc2": (0.0, -0.02), "fc1": (0.0, -0.01)})
    plan = wb.suggest(
        digits_mlp, digits_test, transform=prune, max_drop=0.0, report=faster, backend="torch"
    )
    assert plan.exclude == ()
    assert _accuracy(wb.prune(digits_mlp, plan), digits_test) == _accuracy(digits_mlp, digits_test)


def test_speedups_are_against_the_baseline_timed_beside_each_variant(
    digits_mlp, digits_test, monkeypatch
) -> None:
    # a shared machine that was quiet while the baseline was first timed and busy after:
    # a baseline timed once made every layer look ~26% slower alike (digits-cnn, pruned)
    timed: list[str] = []

    def latency(self, model, budget_s=None) -> float:  # type: ignore[no-untyped-def]
        timed.append("base" if model is digits_mlp else "variant")
        return 1.0 if len(timed) == 1 else 1.35

    monkeypatch.setattr(sensitivity_module._Bench, "latency", latency)
    report = wb.sensitivity(digits_mlp, digits_test.take(64), transform="prune-magnitude")
    assert report["speedup"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert report["latency_delta_ms"].tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert report.attrs["baseline_latency_ms"] == 1.0
    rounds = sensitivity_module._ROUNDS
    assert timed == ["base"] + ["base", "variant"] * rounds * 3  # alternating, per layer
