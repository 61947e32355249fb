"""A contended machine is flagged in what the user sees: profiles, sweeps, speed-ups.

The CPU counters are fake (`Timer.probe`), so the verdicts are checked exactly whatever
the machine running the tests is doing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.backends import base as backends_base
from workbench.backends.cpus import CpuBudget, CpuSample
from workbench.evaluation.sweep import table_from_rows
from workbench.profiling.timer import Timer
from workbench.testing import FakeBackend, FakeClock, toy_mlp
from workbench.testing.fake_backend import FakeSession

QUIET = (CpuSample({0: (0, 0, 0), 1: (0, 0, 0)}, 0, (0.2,)),) * 2
BUSY = (
    CpuSample({0: (0, 0, 0), 1: (0, 0, 0)}, 0, (3.5,)),
    CpuSample({0: (100, 100, 0), 1: (100, 100, 0)}, 60, (3.8,)),
)


class _ThreadedSession(FakeSession):
    threads = 8


class _ThreadedBackend(FakeBackend):
    def compile(self, model: Any, device: str = "cpu", **options: Any) -> FakeSession:
        return _ThreadedSession(model, device, self.layer_ms)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """``machine(samples)``: every measurement sees these CPU counters; 2 CPUs; the fake
    sessions' runs take 1 ms each on a fake clock (no spread of their own)."""
    clock = FakeClock([0.001])
    monkeypatch.setattr(Timer, "clock", clock)
    monkeypatch.setattr(FakeSession, "runner", lambda self, inputs: clock.tick)

    def install(samples: tuple[CpuSample, CpuSample]) -> None:
        readings = iter(samples * 20)
        monkeypatch.setattr(Timer, "probe", staticmethod(lambda: next(readings)))
        monkeypatch.setattr(Timer, "budget", staticmethod(lambda: CpuBudget(2, None, 2)))

    for name, factory in (("fake", FakeBackend), ("threaded", _ThreadedBackend)):
        monkeypatch.setitem(backends_base._FACTORIES, name, factory)
        monkeypatch.delitem(backends_base._INSTANCES, name, raising=False)
    return install


def test_a_profile_on_a_busy_machine_is_measured_again_then_says_so(machine) -> None:
    machine(BUSY)
    p = wb.profile(toy_mlp(), "fake", batch_size=4, layers=False, budget_s=0.01, attempts=3)
    assert p.latency.attempts == 3
    verdict = p.latency.verdict
    assert verdict.startswith("noisy: other work took 1.4 of 2 CPUs; load 3.8 on 2 CPUs")
    assert verdict.endswith("(measured 3 times)")
    assert verdict in p.notes and verdict in p.summary()
    assert p.headline()["verdict"] == verdict
    assert {"cpus", "load"} <= set(p.environment)


def test_a_quiet_profile_is_measured_once(machine) -> None:
    machine(QUIET)
    p = wb.profile(toy_mlp(), "fake", batch_size=4, layers=False, budget_s=0.01, attempts=3)
    assert p.latency.attempts == 1 and p.latency.verdict == ""
    assert not [n for n in p.notes if n.startswith("noisy")]


def test_a_session_with_more_threads_than_cpus_says_so(machine) -> None:
    machine(QUIET)
    p = wb.profile(toy_mlp(), "threaded", batch_size=4, layers=False, budget_s=0.01)
    assert p.latency.verdict == "noisy: 8 threads on 2 CPUs (oversubscribed)"
    assert p.environment["threads"] == 8


def _row(variant: str, ms: float, lo: float, hi: float, noisy: bool) -> dict[str, Any]:
    return {
        "variant": variant, "backend": "torch", "device": "cpu", "batch_size": 32,
        "latency_ms": ms, "latency_ci_low_ms": lo, "latency_ci_high_ms": hi,
        "noisy": noisy, "metric_value": 0.9, "error": None,
    }  # fmt: skip


def test_a_speedup_from_a_noisy_pair_is_never_shown_bare() -> None:
    """The issue's case: a noisy baseline (277 ms, spread 3 to 400 ms) made a 98× speed-up."""
    rows = [
        _row("baseline", 277.0, 3.0, 400.0, True),
        _row("pruned", 2.83, 2.8, 2.9, False),
    ]
    table = table_from_rows(rows, "accuracy", True)
    pruned = table.df.iloc[1]
    assert pruned["speedup"] == pytest.approx(277.0 / 2.83)
    assert (pruned["speedup_low"], pruned["speedup_high"]) == pytest.approx((3 / 2.9, 400 / 2.8))
    assert table.uncertain_speedups() == [True, True]
    text = repr(table)
    assert "uncertain: 1.03×–143×" in text and "~97.9×" in text
    assert "uncertain: 1.03×–143×" in table._repr_html_()


def test_a_speedup_from_a_quiet_pair_stays_a_number() -> None:
    rows = [_row("baseline", 3.0, 2.9, 3.1, False), _row("pruned", 1.5, 1.45, 1.55, False)]
    table = table_from_rows(rows, "accuracy", True)
    assert table.uncertain_speedups() == [False, False]
    assert "uncertain" not in repr(table) and table.df["speedup"].iloc[1] == 2.0
    # points stored before the CIs were recorded: no range, and nothing made up
    old = table_from_rows([{k: v for k, v in r.items() if "ci" not in k} for r in rows], "a", True)
    assert np.isnan(old.df["speedup_low"]).all()


def test_a_per_layer_comparison_names_its_noisy_profiles() -> None:
    import pandas as pd

    from workbench.backends.cpus import Contention
    from workbench.profiling.profile import Profile
    from workbench.profiling.timer import Measurement

    layers = pd.DataFrame([{"layer": "fc", "op_type": "Linear", "latency_ms": 1.0}])
    busy = Measurement((1.0, 1.0), contention=Contention(2, 2, others_cpus=1.5))
    quiet = Profile("m", "torch", "cpu", 8, Measurement((1.0, 1.0)), layers=layers)
    noisy = Profile("m", "onnxruntime", "cpu", 8, busy, layers=layers)
    comparison = wb.compare([quiet, noisy])
    assert comparison.verdicts() == ["onnxruntime: noisy: other work took 1.5 of 2 CPUs"]
    assert "uncertain ratios, onnxruntime: noisy: other work took 1.5" in repr(comparison)
    assert "uncertain ratios" in comparison._repr_html_()
    assert wb.compare([quiet, quiet]).verdicts() == []
