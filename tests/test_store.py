"""The SQLite results store: profiles and sweep points round trip, runs are listed, and
no other application's database is ever written to."""

from __future__ import annotations

import contextlib
import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.errors import StoreError
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.store import _TABLES, APPLICATION_ID, STORE_ENV, Store, default_path, runs


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


# ---- the store writes only to its own files ----------------------------------------------


def _tables(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'"))


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"app.sqlite is not a workbench results store.*users"):
        Store(path)
    assert _tables(path) == ["users"] and path.read_bytes() == before


def test_a_database_marked_by_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "marked.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA application_id = 1234")
    with pytest.raises(StoreError, match="application id 1234"):
        Store(path)


def test_a_new_or_empty_file_becomes_a_marked_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for path in (empty, tmp_path / "new.sqlite"):
        Store(path).save_profile(_profile())
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert len(Store(path).runs()) == 1  # reopening our own store is fine


def test_a_store_from_before_the_mark_opens_and_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:  # the schema the store always wrote
        for name in ("profiles", "points", "sweeps"):
            db.execute(f"CREATE TABLE {name} ({_TABLES[name]})")
        db.execute("INSERT INTO sweeps VALUES ('s1', '2026-01-01', 'm', '{}')")
        db.commit()
    assert Store(path).sweep_meta("s1") == {}
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_a_corrupt_file_or_a_damaged_run_is_one_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(StoreError, match="file is not a database"):
        Store(corrupt)
    store = Store(tmp_path / "runs.sqlite")
    run_id = store.save_profile(_profile())
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        # a payload that is a path must never be read as one
        db.execute("UPDATE profiles SET payload='/etc/hostname' WHERE run_id=?", (run_id,))
        db.commit()
    with pytest.raises(StoreError, match=f"run '{run_id}' in .* is damaged"):
        store.load_profile(run_id)


def test_stores_opened_at_once_on_a_new_file_agree(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    with ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(lambda _: Store(path), range(8)))
    for i, store in enumerate(stores):
        store.save_profile(_profile(f"m{i}"))
    assert len(runs(path)) == 8 and _tables(path) == ["points", "profiles", "sweeps"]


_WRITER = """
import sys
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.store import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.save_profile(Profile(f"{sys.argv[2]}-{i}", "onnxruntime", "cpu", 1, Measurement((1.0,))))
    print(i, flush=True)
"""


def test_processes_writing_at_once_and_one_killed_leave_a_readable_store(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    path = tmp_path / "shared.sqlite"  # new: the writers race to create and mark it

    def writer(name: str, count: int, out: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", _WRITER, str(path), name, str(count)]
        return subprocess.Popen(argv, stdout=out, text=True)

    writers = [writer(f"w{n}", 20) for n in range(3)]
    with writer("killed", 10_000, subprocess.PIPE) as victim:
        assert victim.stdout is not None and victim.stdout.readline()  # it is writing
        victim.send_signal(signal.SIGKILL)
    assert all(w.wait(timeout=120) == 0 for w in writers)
    table = runs(path)
    assert sum(table["model"].str.startswith("w")) == 60
    assert table["model"].str.startswith("killed").sum() >= 1
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def _generation(e2e: float = 9.0):
    from workbench.profiling.generate import GenerationProfile

    def ms(*samples: float) -> Measurement:
        return Measurement(samples, (), "toy")

    return GenerationProfile(
        model="LlamaForCausalLM", backend="onnxruntime", device="cpu", batch_size=2,
        prompt_length=4, output_length=3, depth=0, tokens=((1, 2, 3), (4, 5, 6)),
        ttft=ms(3.0), inter_token=ms(2.0, 2.5), tpot=ms(2.25), e2e=ms(e2e),
        kv_bytes_per_token=64, kv_cache_bytes=64 * 2 * 6, kv_cache_bytes_measured=768,
        weights_bytes=1000, step_weights_bytes=900,
    )  # fmt: skip


def test_generation_profiles_are_saved_listed_and_deleted(tmp_path: Path) -> None:
    from workbench.errors import NotFoundError

    store = Store(tmp_path / "runs.sqlite")
    assert store.runs().empty  # no generations table yet: nothing breaks
    g = _generation()
    run_id = store.save_generation(g)
    assert store.save_generation(g) == run_id  # the same content: one copy
    other = store.save_generation(_generation(e2e=11.0))
    back = store.load_generation(run_id)
    assert back == g and back.tokens == g.tokens
    listed = store.runs().set_index("run_id")
    assert list(listed["kind"]) == ["generation", "generation"]
    assert listed.loc[run_id, "latency_ms"] == 9.0 and listed.loc[other, "batch_size"] == 2
    assert store.delete_runs([run_id]) == 1
    with pytest.raises(NotFoundError, match="no saved generation with run id"):
        store.load_generation(run_id)
    assert list(store.runs()["run_id"]) == [other]
