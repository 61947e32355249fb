"""The SQLite results store: profiles and sweep points round trip, runs are listed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import workbench as wb
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.store import STORE_ENV, Store, default_path, runs


def _profile(model: str = "m", median: float = 2.0) -> Profile:
    return Profile(model, "onnxruntime", "cpu", 8, Measurement((median - 1, median, median + 1)))


def test_profile_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "deep" / "runs.sqlite")  # folders are created
    profile = _profile()
    run_id = store.save_profile(profile)
    loaded = store.load_profile(run_id)
    assert loaded.run_id == run_id and loaded.latency.samples_ms == (1.0, 2.0, 3.0)
    assert loaded.to_dict() == profile.to_dict()
    try:
        store.load_profile("nope")
    except KeyError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("missing run should raise KeyError")


def test_points_are_saved_one_by_one_and_replace_by_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    store.start_sweep("s1", "m", {"backends": ["onnxruntime"]})
    store.start_sweep("s1", "m", {"backends": ["ignored: the first start wins"]})
    assert store.sweep_meta("s1") == {"backends": ["onnxruntime"]}
    row = {"variant": "baseline", "backend": "onnxruntime", "device": "cpu", "batch_size": 8}
    store.save_point("s1", {**row, "latency_ms": np.float64(1.5), "metric_value": math.nan})
    assert store.done_keys("s1") == {"baseline|onnxruntime|cpu|8"}
    store.save_point("s1", {**row, "latency_ms": 1.25})  # same key: replaced
    store.save_point("s1", {**row, "variant": "fp16", "latency_ms": 1.0})
    points = store.points("s1")
    assert list(points["variant"]) == ["baseline", "fp16"]
    assert list(points["latency_ms"]) == [1.25, 1.0]
    assert store.points("other").empty
    # a second Store on the same file sees everything (what a resumed sweep relies on)
    assert Store(tmp_path / "runs.sqlite").done_keys("s1") == {
        "baseline|onnxruntime|cpu|8",
        "fp16|onnxruntime|cpu|8",
    }


def test_runs_lists_profiles_and_sweeps(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "env.sqlite"
    monkeypatch.setenv(STORE_ENV, str(path))
    assert default_path() == path
    store = Store()
    store.save_profile(_profile("a", 3.0), sweep_id="s1")
    store.save_profile(_profile("b", 4.0))
    store.start_sweep("s1", "a")
    store.save_point("s1", {"variant": "baseline", "backend": "torch", "device": "cpu"})
    table = runs()
    assert set(table["kind"]) == {"profile", "sweep"} and len(table) == 3
    sweep_row = table[table["kind"] == "sweep"].iloc[0]
    assert sweep_row["points"] == 1 and sweep_row["model"] == "a"
    assert sorted(table[table["kind"] == "profile"]["latency_ms"]) == [3.0, 4.0]
    assert wb.runs(path).shape == table.shape
