"""Energy is read from counters over exactly the timed run, idle apart, or reported
unavailable with the reason; cost is arithmetic.

The counters are a fake powercap tree (``tmp_path``) driven by a fake wall clock at
known wattages, so every joule is known exactly.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from workbench.backends import base
from workbench.errors import InputError
from workbench.scenarios import energy as energy_module
from workbench.scenarios import scenario
from workbench.scenarios.clock import VirtualClock
from workbench.scenarios.energy import POWERCAP, Energy, EnergyMeter, cost_per_million
from workbench.testing import toy_mlp
from workbench.testing.serving import LatencyModelBackend

#: a plain ONNX file: onnxruntime runs it without importing torch
ONNX_MLP = str(Path(__file__).parents[2] / "sample_models" / "digits-mlp" / "model.onnx")
RANGE_UJ = 100_000_000  # each fake counter wraps at 100 J


def test_cost_per_million_is_price_over_predictions_per_hour() -> None:
    assert cost_per_million(3.6, 1000.0) == pytest.approx(1.0)  # 3.6M predictions an hour
    assert cost_per_million(2.0, 100.0) == pytest.approx(2.0 / 360_000 * 1e6)
    assert math.isinf(cost_per_million(1.0, 0.0))
    with pytest.raises(InputError, match="price_per_hour must be a positive number"):
        cost_per_million(0.0, 100.0)
    with pytest.raises(InputError, match="tdp_watts must be positive"):
        EnergyMeter("cpu", tdp_watts=0.0)
    with pytest.raises(InputError, match="idle_s must be 0 or more"):
        EnergyMeter("cpu", idle_s=-1.0)


def _tree(root: Path, start_uj: dict[str, int], dram: bool = True) -> None:
    """package-0 with core (inside it) and dram sub-domains, and psys beside it."""
    domains = {"intel-rapl:0": "package-0", "intel-rapl:0:0": "core", "intel-rapl:1": "psys"}
    if dram:
        domains["intel-rapl:0:1"] = "dram"
    for folder, name in domains.items():
        path = root / folder
        path.mkdir(parents=True)
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{RANGE_UJ}\n")
        (path / "energy_uj").write_text(f"{start_uj.get(folder, 0)}\n")


class PoweredClock:
    """A wall clock that moves only when slept on; each move adds watts x seconds to the
    fake counters (wrapping at their range), as hardware would."""

    simulated = False

    def __init__(self, root: Path, watts: dict[str, float]) -> None:
        self.root, self.watts, self.t = root, watts, 100.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.advance(max(0.0, t - self.t))

    def advance(self, seconds: float) -> None:
        for folder, watts in self.watts.items():
            counter = self.root / folder / "energy_uj"
            value = int(counter.read_text()) + round(watts * seconds * 1e6)
            counter.write_text(f"{value % RANGE_UJ}\n")
        self.t += seconds


IDLE = {"intel-rapl:0": 10.0, "intel-rapl:0:1": 2.0, "intel-rapl:0:0": 6.0, "intel-rapl:1": 90.0}
LOAD = {"intel-rapl:0": 30.0, "intel-rapl:0:1": 5.0, "intel-rapl:0:0": 25.0, "intel-rapl:1": 99.0}


def _metered_run(tmp_path: Path, run_s: float, timed_s: float) -> Energy:
    # both counters start close to their top, so each wraps during the run
    _tree(tmp_path, {"intel-rapl:0": RANGE_UJ - 7_000_000, "intel-rapl:0:1": RANGE_UJ - 2_000_000})
    clock = PoweredClock(tmp_path, dict(IDLE))
    meter = EnergyMeter("cpu", tdp_watts=50.0, powercap=tmp_path, clock=clock, idle_s=0.5)
    meter.start()  # 0.5 s of idle, then the first read
    clock.watts = dict(LOAD)
    clock.advance(run_s)  # the run
    clock.watts = dict(IDLE)
    return meter.stop(seconds=timed_s)  # the last read, then 0.5 s more of idle


def test_package_and_dram_apart_over_the_run_with_idle_and_wraps(tmp_path: Path) -> None:
    energy = _metered_run(tmp_path, 2.0, 2.0)
    # package 30 W and DRAM 5 W for 2 s; core is inside the package and psys holds both
    assert energy.parts == pytest.approx({"package": 60.0, "dram": 10.0})
    assert energy.joules == pytest.approx(70.0) and energy.watts == pytest.approx(35.0)
    assert energy.interval_s == pytest.approx(2.0) and energy.timed_s == 2.0
    assert energy.idle_watts == pytest.approx(12.0) and energy.idle_s == pytest.approx(1.0)
    assert energy.above_idle_joules == pytest.approx(70.0 - 12.0 * 2.0)
    assert energy.per_inference(1000) == pytest.approx(0.07)
    assert energy.above_idle_per_inference(1000) == pytest.approx(0.046)
    text = energy.describe(1000)
    assert "70 mJ per inference (package 60 + DRAM 10), 14.3 inferences/J, 35 W over" in text
    assert "RAPL package-0+dram (whole package and DRAM, all processes)" in text
    assert "idle 12 W (measured over 1" in text and "46 mJ per inference above idle" in text
    assert "ESTIMATE, not measured: 100 mJ per inference (TDP 50 W x 2 s" in text
    assert Energy.from_dict(energy.to_dict()) == energy


def test_counters_read_over_another_interval_than_the_timed_one_are_not_reported(
    tmp_path: Path,
) -> None:
    near = _metered_run(tmp_path / "near", 2.0, 1.95)  # 2.6% apart: the run's energy
    assert near.joules == pytest.approx(70.0) and near.interval_s == pytest.approx(2.0)
    far = _metered_run(tmp_path / "far", 2.0, 1.8)  # 11% apart: not the run's energy
    assert far.joules is None and far.per_inference(10) is None and far.interval_s == 2.0
    assert "read over 2 s but the run was timed over 1.8 s, more than 5% apart" in far.reason
    assert far.describe(10).startswith("energy: unavailable (the counters were read over")


def test_a_scenario_reads_the_counters_over_its_timed_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run on the real clock: the counter ticks at 40 W of real time. The two
    reads bracket the run; its energy is reported only when their interval is the run's
    duration +-5% (a loaded machine that deschedules us around the run is refused, not
    reported), and then it is 40 W x that interval."""
    _tree(tmp_path, {}, dram=False)
    monkeypatch.setattr(energy_module, "POWERCAP", tmp_path)
    monkeypatch.setattr(energy_module, "IDLE_S", 0.02)
    monkeypatch.setattr(
        energy_module, "read_uj", lambda domain: int(time.perf_counter() * 40e6) % RANGE_UJ
    )
    result = scenario(ONNX_MLP, "single-stream", "onnxruntime", min_queries=16,
                      min_duration_s=0.5, warmup=1)  # fmt: skip
    used = result.energy
    assert used.timed_s == result.duration_s and used.interval_s is not None
    assert result.duration_s <= used.interval_s  # read before the first query, after the last
    assert used.idle_watts == pytest.approx(40.0, rel=0.05) and "no DRAM domain" in used.source
    if used.interval_s > 1.05 * result.duration_s:
        assert used.joules is None and "more than 5% apart" in used.reason
        return
    assert used.joules == pytest.approx(40.0 * used.interval_s, rel=0.01)
    assert result.metrics()["joules_per_inference"] == pytest.approx(used.joules / result.samples)


class WallClock(VirtualClock):
    """Exact time that the meter takes for a wall clock: it moves only when the fake
    session runs or someone sleeps, so every interval is known exactly."""

    simulated = False


def test_the_counters_cover_exactly_the_timed_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm-up and idle windows move this clock too: a read taken anywhere but at the
    run's edges would give an interval other than the run's duration."""
    clock = WallClock(50.0)
    base.register("wall-model")(lambda: LatencyModelBackend(clock, 1.0, 0.25))  # type: ignore[arg-type]
    try:
        _tree(tmp_path, {}, dram=False)
        monkeypatch.setattr(energy_module, "POWERCAP", tmp_path)
        monkeypatch.setattr(energy_module, "read_uj", lambda domain: round(clock.now() * 40e6))
        result = scenario(toy_mlp(), "single-stream", "wall-model", clock=clock, warmup=5)
    finally:
        base._FACTORIES.pop("wall-model", None)
        base._INSTANCES.pop("wall-model", None)
    used = result.energy
    assert used.interval_s == pytest.approx(result.duration_s, abs=1e-9)
    assert used.joules == pytest.approx(40.0 * result.duration_s, abs=1e-5)
    assert used.idle_s == pytest.approx(2 * energy_module.IDLE_S) and used.idle_watts == 40.0


def test_a_simulated_run_measures_no_energy(clock: VirtualClock, tmp_path: Path) -> None:
    _tree(tmp_path, {})
    assert not EnergyMeter("cpu", powercap=tmp_path, clock=clock).available
    result = scenario(toy_mlp(), "single-stream", "latency-model", clock=clock, warmup=1)
    assert result.energy.joules is None and result.joules_per_inference is None
    assert "simulated run takes no real time" in result.energy.describe(1)


@pytest.mark.skipif(POWERCAP.is_dir(), reason="this machine exposes RAPL")
def test_energy_is_unavailable_here_and_says_why() -> None:
    meter = EnergyMeter("cpu")
    meter.start()
    energy = meter.stop(seconds=1.0)
    assert not meter.available and energy.joules is None and energy.idle_watts is None
    assert energy.describe(100).startswith("energy: unavailable (no RAPL counters")
    assert energy.per_inference(100) is None and energy.estimate_joules is None
    assert energy.above_idle_per_inference(100) is None and energy.watts is None


def test_a_gpu_without_nvml_is_unavailable_with_the_fix() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        energy = EnergyMeter("cuda:0").stop(seconds=1.0)
        assert "pip install nvidia-ml-py" in energy.describe(10)
    else:
        pytest.skip("NVML is installed here")


def test_nvml_reads_the_gpu_over_the_run_with_idle_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    class GpuClock:  # a wall clock moved by sleeps; the GPU draws `watts` meanwhile
        simulated = False
        t, joules, watts = 0.0, 1000.0, 60.0

        def now(self) -> float:
            return self.t

        def sleep_until(self, t: float) -> None:
            self.joules += self.watts * max(0.0, t - self.t)
            self.t = max(self.t, t)

    clock = GpuClock()
    nvml = SimpleNamespace(
        NVMLError=RuntimeError,
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetTotalEnergyConsumption=lambda handle: round(clock.joules * 1e3),  # mJ
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    meter = EnergyMeter("cuda:1", clock=clock, idle_s=0.25)
    meter.start()
    clock.watts = 300.0
    clock.sleep_until(clock.t + 4.0)  # the run
    clock.watts = 60.0
    energy = meter.stop(seconds=4.0)
    assert energy.parts == {"gpu": pytest.approx(1200.0)} and energy.source.startswith(
        "NVML cuda:1"
    )
    assert energy.idle_watts == pytest.approx(60.0) and energy.idle_s == pytest.approx(0.5)
    assert energy.above_idle_joules == pytest.approx(1200.0 - 240.0)


def test_unreadable_rapl_says_how_to_grant_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, {})

    def refused(domain: Path) -> int:  # what a non-root user gets since Linux 5.10
        raise PermissionError(13, "Permission denied", str(domain / "energy_uj"))

    monkeypatch.setattr(energy_module, "read_uj", refused)
    meter = EnergyMeter("cpu", powercap=tmp_path)
    assert not meter.available and "\n" not in meter.reason
    assert meter.reason.startswith(f"RAPL counters under {tmp_path} are readable by root only")
    assert f"sudo chmod o+r {tmp_path}/intel-rapl:*/energy_uj" in meter.reason
    assert 'RUN+="/bin/chmod o+r /sys%p/energy_uj"' in meter.reason


def test_an_energy_written_before_parts_and_idle_still_reads() -> None:
    old = {"joules": 0.5, "source": "RAPL package-0", "reason": "", "estimate_joules": None,
           "estimate_basis": ""}  # fmt: skip
    energy = Energy.from_dict(old)
    assert energy.joules == 0.5 and energy.parts == {} and energy.idle_watts is None
    assert "idle not measured" in energy.describe(10)
