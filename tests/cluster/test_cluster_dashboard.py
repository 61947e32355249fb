"""The Runs and Optimize pages show where each result was measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.store import Store

pytest.importorskip("panel")


def test_runs_page_lists_a_sweeps_points_by_worker_and_host(tmp_path: Path) -> None:
    from workbench.dashboards.pages.runs import RunsPage
    from workbench.dashboards.state import AppState

    store = Store(tmp_path / "runs.sqlite")
    store.start_sweep("s", "digits-mlp", {"metric": "accuracy"})
    for worker, host in [("tcp://10.0.0.1:4000", "gpu-box"), ("tcp://10.0.0.2:4000", "cpu-box")]:
        row = {"variant": "baseline", "backend": host, "device": "cpu", "batch_size": 8}
        store.save_point("s", {**row, "worker": worker, "host": host, "latency_ms": 1.0})
    page = RunsPage(state=AppState(store=store, start=False))
    page.table.selection = [list(page.runs["kind"]).index("sweep")]
    shown = page.points.value
    assert list(shown["host"]) == ["gpu-box", "cpu-box"]
    assert list(shown["worker"]) == ["tcp://10.0.0.1:4000", "tcp://10.0.0.2:4000"]


def test_optimize_page_rows_say_which_host_measured_them(tmp_path: Path) -> None:
    import dataclasses
    import platform

    import workbench as wb
    from workbench.dashboards.actions import VariantResult
    from workbench.dashboards.pages.optimize import OptimizePage
    from workbench.dashboards.state import AppState

    model = wb.samples.load("digits-mlp")
    here = wb.profile(model, backend="onnxruntime", batch_size=1, layers=False, budget_s=0.02)
    elsewhere = dataclasses.replace(here, environment={**here.environment, "hostname": "gpu-box"})
    page = OptimizePage(state=AppState(store=Store(tmp_path / "runs.sqlite"), start=False))
    page.results = {
        label: VariantResult(label, 1000, "accuracy", 0.9, profile)
        for label, profile in [("baseline", here), ("int8-dynamic", elsewhere)]
    }
    assert list(page.frame()["host"]) == [platform.node(), "gpu-box"]
