"""Interrupted sweeps: a point and its profile are saved together; failed points can be retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import workbench as wb
import workbench.store as store_module
from workbench.cli import main
from workbench.evaluation import sweep as sweep_module
from workbench.evaluation.sweep import sweep
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.store import Store

FAST = {"budget_s": 0.02, "options": {"threads": 1}}


def _profile() -> Profile:
    return Profile("m", "onnxruntime", "cpu", 8, Measurement((1.0, 2.0, 3.0)))


def test_a_point_and_its_profile_are_saved_together_or_not_at_all(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    row = {"variant": "baseline", "backend": "onnxruntime", "device": "cpu", "batch_size": 8}
    with pytest.raises(TypeError):  # the row fails after the profile was written: rolled back
        store.save_point("s", {**row, "bad": object()}, _profile())
    assert store.runs().empty and store.done_keys("s") == set()
    store.save_point("s", row, _profile())
    assert list(store.runs()["kind"]) == ["profile"] and len(store.done_keys("s")) == 1


def test_failed_points_are_done_unless_retried(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    ok = {"variant": "baseline", "backend": "onnxruntime", "device": "cpu", "batch_size": 8}
    store.save_point("s", ok)
    store.save_point("s", {**ok, "backend": "nope", "error": "UnknownBackendError: nope"})
    assert len(store.done_keys("s")) == 2
    assert store.done_keys("s", failed=False) == {"baseline|onnxruntime|cpu|8"}


def _kwargs(tmp_path: Path, backends: list[str]) -> dict[str, Any]:
    return {
        "variants": ["baseline", "fp16"],
        "backends": backends,
        "data": wb.samples.dataset("digits").take(64),
        "store": tmp_path / "runs.sqlite",
        **FAST,
    }


def test_an_interrupt_while_saving_leaves_no_duplicate_profile(tmp_path, monkeypatch) -> None:
    model = wb.samples.load("digits-mlp")
    real = store_module._jsonable
    rows_saved: list[int] = []

    def interrupt_on_second_point(value: Any) -> Any:
        if isinstance(value, dict) and "variant" in value:
            rows_saved.append(1)
            if len(rows_saved) == 2:
                raise KeyboardInterrupt  # Ctrl+C between the profile and the point
        return real(value)

    monkeypatch.setattr(store_module, "_jsonable", interrupt_on_second_point)
    partial = sweep(model, **_kwargs(tmp_path, ["onnxruntime"]))  # interrupted: what was stored
    assert len(partial.df) == 1 and "sweep interrupted" in partial.notes[-1]
    monkeypatch.setattr(store_module, "_jsonable", real)
    table = sweep(model, **_kwargs(tmp_path, ["onnxruntime"]))  # resumes
    profiles = Store(tmp_path / "runs.sqlite").runs().query("kind == 'profile'")
    assert len(table.df) == 2 and len(profiles) == 2  # one profile per point, no orphan
    assert set(profiles["run_id"]) == set(table.df["run_id"])


def test_retry_failed_measures_failed_points_again(tmp_path, monkeypatch) -> None:
    model = wb.samples.load("digits-mlp")
    attempts: list[str] = []
    real = sweep_module.PointRunner.point

    def counting(self, label, variant, backend, device):  # type: ignore[no-untyped-def]
        attempts.append(f"{label}/{backend}")
        return real(self, label, variant, backend, device)

    monkeypatch.setattr(sweep_module.PointRunner, "point", counting)
    kwargs = _kwargs(tmp_path, ["onnxruntime", "onnxruntime[no_such_option=1]"])
    first = sweep(model, **kwargs)
    assert len(first.failed()) == 2 and len(attempts) == 4
    sweep(model, **kwargs)  # resumed: nothing to do
    assert len(attempts) == 4
    sweep(model, retry_failed=True, **kwargs)
    failing = "onnxruntime[no_such_option=1]"
    assert sorted(attempts[4:]) == [f"baseline/{failing}", f"fp16/{failing}"]


def test_cli_retry_failed_flag(tmp_path: Path, capsys) -> None:
    argv = [
        "sweep", "digits-mlp", "--variants", "baseline",
        "--backends", "onnxruntime[no_such_option=1]",
        "--budget-s", "0.02", "--store", str(tmp_path / "s.sqlite"),
    ]  # fmt: skip
    assert main(argv) == 1 and main([*argv, "--retry-failed"]) == 1  # no point measured
    out = capsys.readouterr().out
    assert out.count("failed: baseline on onnxruntime[no_such_option=1]/cpu") == 2
    assert main([*argv, "--budget-s", "-1"]) == 2
