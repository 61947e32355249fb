"""Interrupted long calls (Ctrl+C, a notebook's kernel interrupt) keep what they measured.

The interrupt is raised from inside the work (a fake backend's per-layer pass, a sweep's
point, a sensitivity score), where a real one would land, so no signal is needed.
"""

from __future__ import annotations

from typing import Any

import pytest

import workbench as wb
from workbench.backends import base as backends_base
from workbench.evaluation import sweep as sweep_module
from workbench.optimize import sensitivity as sensitivity_module
from workbench.store import Store
from workbench.testing import FakeBackend, toy_mlp
from workbench.testing.fake_backend import FakeSession


def _interrupt_on_call(number: int, real: Any) -> tuple[Any, list[int]]:
    """``real`` wrapped to raise KeyboardInterrupt on its ``number``-th call; the calls."""
    calls: list[int] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == number:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapped, calls


def test_an_interrupted_sweep_returns_its_stored_points_and_resumes(
    tmp_path, monkeypatch, capsys
) -> None:
    model = wb.samples.load("digits-mlp")
    real = sweep_module.PointRunner.point
    point, calls = _interrupt_on_call(2, real)
    monkeypatch.setattr(sweep_module.PointRunner, "point", point)
    kwargs: dict[str, Any] = {
        "variants": ["baseline", "fp16"],
        "backends": ["onnxruntime"],
        "data": wb.samples.dataset("digits").take(64),
        "store": tmp_path / "runs.sqlite",
        "budget_s": 0.02,
        "options": {"threads": 1},
    }
    partial = wb.sweep(model, **kwargs)
    assert list(partial.df["variant"]) == ["baseline"] and len(calls) == 2
    assert len(Store(tmp_path / "runs.sqlite").points(partial.sweep_id)) == 1
    line = "workbench: sweep interrupted; 1 of 2 points stored, returned; rerun with sweep_id="
    err = capsys.readouterr().err.strip().splitlines()
    assert [e for e in err if e.startswith("workbench:")] == [partial.notes[-1]]
    assert partial.notes[-1].startswith(line)
    monkeypatch.setattr(sweep_module.PointRunner, "point", real)
    resumed = wb.sweep(model, **kwargs)
    assert sorted(resumed.df["variant"]) == ["baseline", "fp16"]
    assert not [n for n in resumed.notes if "sweep interrupted" in n]  # (the tmp path says it)
    assert any(n.startswith("resumed sweep") for n in resumed.notes)


class _InterruptedLayers(FakeSession):
    def run_layers(self, inputs: Any, repeats: int = 10) -> Any:
        raise KeyboardInterrupt


class _InterruptingBackend(FakeBackend):
    def compile(self, model: Any, device: str = "cpu", **options: Any) -> FakeSession:
        return _InterruptedLayers(model, device, self.layer_ms)


def test_a_profile_interrupted_in_its_layers_keeps_end_to_end(monkeypatch, capsys) -> None:
    monkeypatch.setitem(backends_base._FACTORIES, "interrupting", _InterruptingBackend)
    monkeypatch.delitem(backends_base._INSTANCES, "interrupting", raising=False)
    profile = wb.profile(toy_mlp(), "interrupting", batch_size=4, budget_s=0.02)
    assert profile.latency.median > 0 and profile.layers.empty
    line = (
        "workbench: per-layer profile interrupted; the end-to-end measurement is returned, "
        "without layers"
    )
    assert profile.notes[-1] == line
    assert line in capsys.readouterr().err.splitlines()


def test_an_interrupted_sensitivity_returns_the_layers_measured(monkeypatch, capsys) -> None:
    from workbench.optimize.prune import ChannelPrune

    score, calls = _interrupt_on_call(2, sensitivity_module._Bench.score)  # fc1, then fc2
    monkeypatch.setattr(sensitivity_module._Bench, "score", score)
    report = wb.sensitivity(
        wb.samples.load("digits-mlp"), wb.samples.dataset("digits").take(128),
        transform=ChannelPrune(sparsity=0.75), backend="torch", budget_s=0.02,
    )  # fmt: skip
    line = "workbench: sensitivity interrupted; 1 of 2 layers measured, returned"
    assert len(report) == 1 and report["error"].isna().all() and len(calls) == 2
    assert report.attrs["interrupted"] == line
    assert line in capsys.readouterr().err.splitlines()


def test_suggest_stops_when_its_sensitivity_pass_is_interrupted(monkeypatch) -> None:
    from workbench.optimize.prune import ChannelPrune

    score, calls = _interrupt_on_call(2, sensitivity_module._Bench.score)
    monkeypatch.setattr(sensitivity_module._Bench, "score", score)
    with pytest.raises(KeyboardInterrupt):
        wb.suggest(
            wb.samples.load("digits-mlp"), wb.samples.dataset("digits").take(128),
            transform=ChannelPrune(sparsity=0.75), backend="torch", budget_s=0.02,
        )  # fmt: skip
    assert len(calls) == 2  # no greedy search after the interrupt


def test_an_interrupted_cli_sweep_prints_what_it_stored_and_exits_130(
    tmp_path, monkeypatch, capsys
) -> None:
    from workbench.cli import main

    point, _ = _interrupt_on_call(2, sweep_module.PointRunner.point)
    monkeypatch.setattr(sweep_module.PointRunner, "point", point)
    argv = [
        "sweep", "digits-mlp", "--variants", "baseline", "fp16", "--backends", "onnxruntime",
        "--budget-s", "0.02", "--store", str(tmp_path / "s.sqlite"),
    ]  # fmt: skip
    assert main(argv) == 130
    out, err = capsys.readouterr()
    assert "baseline" in out and "fp16" not in out
    assert "workbench: sweep interrupted; 1 of 2 points stored" in err
