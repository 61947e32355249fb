"""Energy is read from counters or reported unavailable with the reason; cost is arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from workbench.errors import InputError
from workbench.scenarios.energy import POWERCAP, Energy, EnergyMeter, cost_per_million


def test_cost_per_million_is_price_over_predictions_per_hour() -> None:
    assert cost_per_million(3.6, 1000.0) == pytest.approx(1.0)  # 3.6M predictions an hour
    assert cost_per_million(2.0, 100.0) == pytest.approx(2.0 / 360_000 * 1e6)
    assert math.isinf(cost_per_million(1.0, 0.0))
    with pytest.raises(InputError, match="price_per_hour must be a positive number"):
        cost_per_million(0.0, 100.0)
    with pytest.raises(InputError, match="tdp_watts must be positive"):
        EnergyMeter("cpu", tdp_watts=0.0)


@pytest.mark.skipif(POWERCAP.is_dir(), reason="this machine exposes RAPL")
def test_energy_is_unavailable_here_and_says_why() -> None:
    meter = EnergyMeter("cpu")
    meter.start()
    energy = meter.stop(seconds=1.0)
    assert not meter.available and energy.joules is None
    assert energy.describe(100).startswith("energy: unavailable (no RAPL counters")
    assert energy.per_inference(100) is None and energy.estimate_joules is None


def test_a_gpu_without_nvml_is_unavailable_with_the_fix() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        energy = EnergyMeter("cuda:0").stop(seconds=1.0)
        assert "pip install nvidia-ml-py" in energy.describe(10)
    else:
        pytest.skip("NVML is installed here")


def _rapl(root: Path, values_uj: list[int], max_uj: int = 1_000_000) -> Path:
    domain = root / "intel-rapl:0"
    domain.mkdir(parents=True, exist_ok=True)
    (domain / "name").write_text("package-0\n")
    (domain / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (domain / "energy_uj").write_text(f"{values_uj[0]}\n")
    core = root / "intel-rapl:0:0"  # a sub-domain, and psys: neither counted again
    psys = root / "intel-rapl:1"
    for other, name in ((core, "core"), (psys, "psys")):
        other.mkdir(exist_ok=True)
        (other / "name").write_text(f"{name}\n")
        (other / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (other / "energy_uj").write_text("5\n")
    return domain


def test_rapl_counters_give_joules_per_inference_across_a_wrap(tmp_path: Path) -> None:
    domain = _rapl(tmp_path, [900_000])
    meter = EnergyMeter("cpu", tdp_watts=10.0, powercap=tmp_path)
    meter.start()
    (domain / "energy_uj").write_text("400000\n")  # wrapped: 100000 to the top, 400000 after
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("900000\n")  # psys: not counted
    energy = meter.stop(seconds=0.5)
    assert energy.joules == pytest.approx(0.5)
    assert energy.per_inference(1000) == pytest.approx(0.5e-3)
    text = energy.describe(1000)
    assert "0.5 mJ per inference, 2,000 inferences/J (RAPL package-0" in text
    assert "ESTIMATE, not measured: 5 mJ per inference (TDP 10 W x 0.5 s" in text
    assert Energy.from_dict(energy.to_dict()) == energy


def test_unreadable_rapl_says_so(tmp_path: Path) -> None:
    domain = _rapl(tmp_path, [1])
    (domain / "energy_uj").chmod(0)
    meter = EnergyMeter("cpu", powercap=tmp_path)
    if meter.available:  # root reads anything
        pytest.skip("running as root: the file stays readable")
    assert "readable by root only" in meter.reason
