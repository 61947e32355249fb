"""sweep: rows per variant x backend, failed points recorded, Pareto front, resume, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.cli import main
from workbench.errors import CancelledError
from workbench.evaluation import sweep as sweep_module
from workbench.evaluation.pareto import pareto_mask
from workbench.evaluation.sweep import (
    COLUMNS,
    load_sweep,
    sweep,
    table_from_rows,
)
from workbench.optimize.prune import ChannelPrune
from workbench.optimize.quantize import Int8Dynamic
from workbench.progress import CancelToken
from workbench.store import Store

FAST = {"budget_s": 0.02, "options": {"threads": 1}}


def test_pareto_by_hand_with_ties() -> None:
    latency = pd.Series([1.0, 2.0, 2.0, 3.0, 1.0, np.nan, 0.5])
    metric = pd.Series([0.90, 0.95, 0.95, 0.94, 0.90, 0.99, 0.50])
    # 0 and 4 tie (both on the front); 1 and 2 tie; 3 is dominated by 1; NaN never is
    assert list(pareto_mask(latency, metric)) == [True, True, True, False, True, False, True]
    # lower-is-better metrics flip the direction
    assert list(pareto_mask([1.0, 2.0], [0.1, 0.05], higher_is_better=False)) == [True, True]
    assert list(pareto_mask([1.0, 2.0], [0.05, 0.1], higher_is_better=False)) == [True, False]


def test_sweep_rows_failures_and_store(tmp_path: Path) -> None:
    model = wb.samples.load("digits-mlp")
    data = wb.samples.dataset("digits").take(128)
    store = Store(tmp_path / "runs.sqlite")
    table = sweep(
        model,
        variants=["baseline", Int8Dynamic(), ChannelPrune(sparsity=0.5)],
        backends=["onnxruntime", "torch"],
        data=data,
        store=store,
        **FAST,
    )
    df = table.df
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS and len(df) == 6
    ok = df[df["error"].isna()]
    assert len(ok) == 5 and (ok["latency_ms"] > 0).all() and (ok["size_bytes"] > 0).all()
    failed = table.failed().iloc[0]
    assert failed["variant"] == "int8-dynamic" and failed["backend"] == "torch"
    assert "ONNX model" in failed["error"]
    base = df[(df["variant"] == "baseline")].set_index("backend")
    assert base.loc["torch", "delta"] == 0.0 and base.loc["onnxruntime", "speedup"] == 1.0
    assert (ok["latency_p90_ms"] >= ok["latency_ms"]).all()
    assert table.pareto()["pareto"].all() and len(table.pareto()) >= 1
    assert table_from_rows(store.points(table.sweep_id), "accuracy", True).df.shape == df.shape
    again = load_sweep(table.sweep_id, store)
    assert again.metric == "accuracy" and again.higher_is_better
    assert list(again.df["pareto"]) == list(df["pareto"])
    assert (store.runs()["kind"] == "profile").sum() == 5  # each measured point's profile
    data_back = json.loads(table.to_json())
    assert len(data_back["rows"]) == 6 and "pareto" in data_back["rows"][0]
    assert "<table" in table._repr_html_()


def test_interrupted_sweep_resumes_without_redoing_points(tmp_path: Path, monkeypatch) -> None:
    model = wb.samples.load("digits-mlp")
    data = wb.samples.dataset("digits").take(64)
    measured: list[tuple[str, str]] = []
    real = sweep_module._PointRunner._measure

    def counting(self, variant, backend, device, store, sweep_id):  # type: ignore[no-untyped-def]
        measured.append((variant.recipe_name, backend))
        return real(self, variant, backend, device, store, sweep_id)

    monkeypatch.setattr(sweep_module._PointRunner, "_measure", counting)
    token = CancelToken()

    def stop_after_two(fraction: float, message: str) -> None:
        if len(measured) == 2:
            token.cancel()

    kwargs = {
        "variants": ["baseline", "int8-dynamic", "fp16"],
        "backends": ["onnxruntime"],
        "data": data,
        "store": tmp_path / "runs.sqlite",
        **FAST,
    }
    with pytest.raises(CancelledError):
        sweep(model, progress=stop_after_two, cancel=token, **kwargs)
    assert measured == [("baseline", "onnxruntime"), ("int8-dynamic", "onnxruntime")]
    table = sweep(model, **kwargs)  # same settings -> same sweep id -> resumes
    assert measured[2:] == [("fp16", "onnxruntime")]
    assert sorted(table.df["variant"]) == ["baseline", "fp16", "int8-dynamic"]
    sweep(model, resume=False, **kwargs)
    assert len(measured) == 6


def test_cli_sweep_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.json"
    data = wb.samples.dataset("digits").take(100)
    np.savez(tmp_path / "d.npz", x=data.inputs, y=data.labels)
    code = main(
        [
            "sweep", "digits-mlp", "--data", str(tmp_path / "d.npz"), "--variants", "baseline",
            "prune-magnitude:sparsity=0.5,scope=layer", "--backends", "onnxruntime",
            "--budget-s", "0.02", "--threads", "1", "--store", str(tmp_path / "s.sqlite"),
            "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["baseline", "prune-magnitude(50%)"]
    assert rows[1]["recipe"]["config"]["scope"] == "layer"
    assert {"latency_ms", "latency_p90_ms", "throughput_per_s", "size_bytes", "metric_value",
            "delta", "pareto", "error"} <= set(rows[0])  # fmt: skip
    assert "baseline" in capsys.readouterr().out
    assert json.loads(out.read_text())["meta"]["data"] == str(tmp_path / "d.npz")
    assert main(["sweep", "digits-mlp", "--variants", "int4-magic"]) == 2


def test_a_generator_of_batches_serves_every_point(tmp_path: Path) -> None:
    data = wb.samples.dataset("digits").take(64)
    batches = ((x, y) for x, y in data)  # one-shot: the sweep must keep it
    table = sweep(
        "digits-mlp", variants=["baseline", "int8-dynamic"], backends=["onnxruntime"],
        data=batches, store=tmp_path / "s.sqlite", **FAST,
    )  # fmt: skip
    assert table.df["error"].isna().all() and table.df["metric_value"].notna().all()


def test_tradeoff_tables_compare_by_identity_without_raising() -> None:
    rows = pd.DataFrame({"variant": ["baseline"], "latency_ms": [1.0]})
    table = sweep_module.TradeoffTable(rows)
    twin = sweep_module.TradeoffTable(rows.copy())
    assert table == table
    assert table != twin
    assert table in [twin, table]
