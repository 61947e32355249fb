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
    # the front, found by comparing every pair of measured points here
    points = list(ok[["latency_ms", "metric_value"]].itertuples(index=False))
    front = {
        (r.variant, r.backend)
        for r in ok.itertuples()
        if not any(
            t <= r.latency_ms and m >= r.metric_value and (t, m) != (r.latency_ms, r.metric_value)
            for t, m in points
        )
    }
    assert set(zip(table.pareto()["variant"], table.pareto()["backend"], strict=True)) == front
    assert list(table.pareto()["latency_ms"]) == sorted(table.pareto()["latency_ms"])
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
    real = sweep_module.PointRunner._measure

    def counting(self, variant, backend, device):  # type: ignore[no-untyped-def]
        measured.append((variant.recipe_name, backend))
        return real(self, variant, backend, device)

    monkeypatch.setattr(sweep_module.PointRunner, "_measure", counting)
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


def _one_point(data: wb.Dataset, store: Path, **kwargs) -> sweep_module.TradeoffTable:  # type: ignore[no-untyped-def]
    settings = {"variants": ["baseline"], "backends": ["onnxruntime"], **FAST, **kwargs}
    return sweep("digits-mlp", data=data, store=store, **settings)


def test_same_inputs_with_wrong_labels_do_not_resume(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    data = wb.samples.dataset("digits").take(128)
    wrong = wb.Dataset.from_arrays(data.inputs, (data.labels + 1) % 10)  # unnamed, like data
    right = _one_point(data, store)
    assert right.df["metric_value"].iloc[0] > 0.8
    table = _one_point(wrong, store)
    assert table.sweep_id != right.sweep_id
    assert table.df["metric_value"].iloc[0] < 0.2  # measured on the wrong labels
    assert "data_fingerprint" in table.notes[0] and right.sweep_id in table.notes[0]
    # with one explicit id for both, the stored point is discarded, not returned
    _one_point(data, store, sweep_id="mine")
    again = _one_point(wrong, store, sweep_id="mine")
    assert len(again) == 1 and again.df["metric_value"].iloc[0] < 0.2
    assert "started fresh" in again.notes[0] and "data_fingerprint" in again.notes[0]
    assert load_sweep("mine", store).meta["data_fingerprint"] == again.meta["data_fingerprint"]


def test_changed_settings_restart_a_named_sweep_and_say_which(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    data = wb.samples.dataset("digits").take(64)
    first = _one_point(data, store, sweep_id="s")
    assert first.notes == []
    resumed = _one_point(data, store, sweep_id="s")
    assert [n.split(" measured")[0] for n in resumed.notes] == ["resumed sweep s: 1 of 1 points"]
    assert list(resumed.df["run_id"]) == list(first.df["run_id"])
    fresh = _one_point(data, store, sweep_id="s", options={"threads": 2})
    assert "options" in fresh.notes[0] and list(fresh.df["run_id"]) != list(first.df["run_id"])
    metric = _one_point(data, store, sweep_id="s", options={"threads": 2}, metric="top5")
    assert "metric" in metric.notes[0] and metric.df["metric"].iloc[0] == "top5"


def test_no_resume_discards_the_stored_points(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    data = wb.samples.dataset("digits").take(64)
    first = _one_point(data, store)
    again = _one_point(data, store, resume=False)
    assert again.sweep_id == first.sweep_id and "resume=False" in again.notes[0]
    assert list(again.df["run_id"]) != list(first.df["run_id"])
    assert len(Store(store).points(first.sweep_id)) == 1


def test_a_sweep_stored_without_an_identity_is_not_resumed(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    store.start_sweep("old", "digits-mlp", {"model": "digits-mlp", "data": ""})
    store.save_point("old", {"variant": "baseline", "backend": "onnxruntime", "device": "cpu",
                             "batch_size": 32, "metric_value": 0.99})  # fmt: skip
    table = _one_point(wb.samples.dataset("digits").take(64), store.path, sweep_id="old")
    assert "data_fingerprint" in table.notes[0] and "versions" in table.notes[0]
    assert table.df["metric_value"].iloc[0] != 0.99


def test_identity_covers_everything_that_changes_results(monkeypatch) -> None:
    model = wb.samples.load("digits-mlp")
    data = wb.samples.dataset("digits").take(32)
    base = {"data": data, "metric": "accuracy", "options": {"threads": 1}}

    def identity(**changes: object) -> dict:
        settings = {**base, **changes}
        variants = settings.pop("variants", [Int8Dynamic()])
        return sweep_module.sweep_identity(model, variants, ["onnxruntime"], **settings)  # type: ignore[arg-type]

    def changed(**changes: object) -> list[str]:
        return sweep_module.identity_changes(identity(), identity(**changes))

    assert changed() == []
    assert changed(data=data.with_batch_size(5)) == []  # batching is not content
    assert changed(data=data.take(31)) == ["data_fingerprint"]
    assert changed(metric="top5") == ["metric"]
    assert changed(options={"threads": 2}) == ["options"]
    assert changed(variants=[Int8Dynamic(per_channel=True)]) == ["variants"]
    assert changed(calibration=data) == ["calibration_fingerprint"]
    assert changed(budget_s=1.0) == ["budget_s"]
    before = identity()
    monkeypatch.setattr(sweep_module.platform, "python_version", lambda: "3.99.0")
    assert sweep_module.identity_changes(before, identity()) == ["versions"]
    assert set(identity()["versions"]) >= {"workbench", "numpy", "onnx", "backend:onnxruntime"}


def test_data_fingerprint_reads_content_not_batching() -> None:
    torch = pytest.importorskip("torch")
    data = wb.samples.dataset("digits").take(100)
    fingerprint = sweep_module.data_fingerprint
    same = [
        fingerprint(data.with_batch_size(7)),
        fingerprint(list(data.with_batch_size(33))),
        fingerprint([(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]),
        fingerprint(wb.Dataset.from_arrays(data.inputs[:, :, ::-1, :][:, :, ::-1, :], data.labels)),
    ]
    assert set(same) == {fingerprint(data)}
    inputs = data.inputs.copy()
    inputs[99, 0, 7, 7] += 1e-3  # one value of the last sample
    labels = data.labels.copy()
    labels[[0, 1]] = labels[[1, 0]]  # two labels swapped
    different = {
        fingerprint(wb.Dataset.from_arrays(inputs, data.labels)),
        fingerprint(wb.Dataset.from_arrays(data.inputs, labels)),
        fingerprint(wb.Dataset.from_arrays(data.inputs.astype(np.float64), data.labels)),
        fingerprint(wb.Dataset.from_arrays({"x": data.inputs}, data.labels)),
        fingerprint(wb.Dataset.from_arrays(data.inputs.reshape(100, 64), data.labels)),
    }
    assert len(different) == 5 and fingerprint(data) not in different


def test_data_fingerprint_hashes_large_arrays_in_chunks(monkeypatch) -> None:
    updates: list[int] = []
    real = sweep_module._hash_array

    def spy(digest, array):  # type: ignore[no-untyped-def]
        class Counting:
            def update(self, chunk):  # type: ignore[no-untyped-def]
                updates.append(len(chunk))
                digest.update(chunk)

        real(Counting(), array)

    x = np.arange(4096 * 64, dtype=np.float32).reshape(4096, 64)[:, ::2]  # not contiguous
    whole = sweep_module.data_fingerprint([(x, np.zeros(4096))])
    monkeypatch.setattr(sweep_module, "_CHUNK_BYTES", 32 * 4 * 100)  # 100 rows a chunk
    monkeypatch.setattr(sweep_module, "_hash_array", spy)
    assert sweep_module.data_fingerprint([(x, np.zeros(4096))]) == whole
    assert max(updates) == 32 * 4 * 100 and sum(updates) == x.nbytes + 4096 * 8
    updates.clear()
    monkeypatch.setattr(sweep_module, "_CHUNK_BYTES", 64)  # smaller than one row: row by row
    assert sweep_module.data_fingerprint([(x, np.zeros(4096))]) == whole
    assert set(updates) == {32 * 4, 64}  # each 128-byte row of x alone; labels 8 per chunk


def test_default_variants_are_the_documented_set() -> None:
    model = wb.samples.load("digits-mlp")

    def labels(variants: list) -> list[str]:
        return [v if isinstance(v, str) else v.label() for v in variants]

    head = ["baseline", "int8-dynamic", "int8-static(entropy)", "fp16"]
    levels = ["25%", "50%", "75%"]
    assert labels(sweep_module.default_variants(model)) == head + [
        f"prune-channels({p}, ft3)" for p in levels
    ]
    assert labels(sweep_module.default_variants(model.to_onnx())) == head + [
        f"prune-magnitude({p})" for p in levels
    ]


def test_variant_labels_are_unique_and_none_is_the_baseline() -> None:
    labelled = sweep_module._labelled([None, "baseline", Int8Dynamic(), "int8-dynamic"])
    assert [label for label, _ in labelled] == [
        "baseline", "baseline#2", "int8-dynamic", "int8-dynamic#2",
    ]  # fmt: skip
    assert [spec for _, spec in labelled][:2] == ["baseline", "baseline"]


def test_a_sweep_takes_its_budget_from_the_shared_timing_options(tmp_path) -> None:
    from workbench.errors import ParameterError

    quick = wb.TimingOptions(budget_s=0.2, warmup=1)
    with pytest.raises(ParameterError, match="budget_s is given twice"):
        wb.sweep("digits-mlp", budget_s=1.0, timing=quick, store=tmp_path / "s.db")
    with pytest.raises(ParameterError, match="budget_s"):
        wb.sweep("digits-mlp", timing=wb.TimingOptions(budget_s=-1.0), store=tmp_path / "s.db")
