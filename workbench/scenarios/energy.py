"""Energy per inference from hardware counters, and cost per million predictions.

Energy is measured, never guessed: NVML's cumulative energy counter on NVIDIA GPUs and
RAPL (``/sys/class/powercap``) on CPUs. Where neither can be read the result says
"energy: unavailable (why)". An estimate from a TDP the user gives is made only on
request and always labelled as an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import InputError
from workbench.units import format_number

#: where Linux exposes RAPL energy counters
POWERCAP = Path("/sys/class/powercap")


def cost_per_million(price_per_hour: float, predictions_per_s: float) -> float:
    """What a million predictions cost on a machine rented at ``price_per_hour``.

    The machine is paid by the hour whatever it does, so the cost of a prediction is
    the hourly price divided by the predictions it completes in an hour at the measured
    (or sustained) rate.

    Args:
        price_per_hour: the machine's price per hour, in any currency (no default: take
            it from your cloud provider's price list).
        predictions_per_s: sustained predictions per second.

    Returns:
        Cost per million predictions in the price's currency (inf when the rate is 0).

    Raises:
        InputError: the price is not a positive number.

    Example:
        >>> cost_per_million(3.6, 1000.0)  # 3.6 per hour at 1000/s
        1.0
    """
    if not (price_per_hour > 0 and math.isfinite(price_per_hour)):
        raise InputError(f"price_per_hour must be a positive number, got {price_per_hour}")
    if predictions_per_s <= 0:
        return math.inf
    return price_per_hour / 3600.0 / predictions_per_s * 1e6


@dataclass(frozen=True)
class Energy:
    """Energy used during a run, or why it could not be measured.

    Attributes:
        joules: measured energy in joules; None when unavailable.
        source: the counter read (``"RAPL package-0"``, ``"NVML cuda:0"``).
        reason: why energy is unavailable (empty when measured).
        estimate_joules: a TDP-based estimate, only when the user asked for one.
        estimate_basis: how the estimate was made (``"TDP 65 W x 1.20 s"``).
    """

    joules: float | None
    source: str = ""
    reason: str = ""
    estimate_joules: float | None = None
    estimate_basis: str = ""

    def per_inference(self, inferences: int) -> float | None:
        """Measured joules per inference, or None when unavailable."""
        if self.joules is None or inferences <= 0:
            return None
        return self.joules / inferences

    def describe(self, inferences: int) -> str:
        """One line for a summary: measured, unavailable (why), and any labelled estimate."""
        per = self.per_inference(inferences)
        if per is None:
            text = f"energy: unavailable ({self.reason})"
        else:
            per_joule = inferences / self.joules if self.joules else math.inf
            text = (
                f"energy: {format_number(per * 1e3)} mJ per inference, "
                f"{format_number(per_joule)} inferences/J ({self.source})"
            )
        if self.estimate_joules is not None and inferences > 0:
            text += (
                "; ESTIMATE, not measured: "
                f"{format_number(self.estimate_joules / inferences * 1e3)} mJ "
                f"per inference ({self.estimate_basis})"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "joules": self.joules,
            "source": self.source,
            "reason": self.reason,
            "estimate_joules": self.estimate_joules,
            "estimate_basis": self.estimate_basis,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Energy:
        """Rebuild from `to_dict` output."""
        return cls(**data)


Counter = Callable[[], float]


def _rapl_counter(root: Path = POWERCAP) -> tuple[Counter | None, str, str]:
    """Cumulative joules over every CPU package domain, with wrap-around handled."""
    if not root.is_dir():
        return None, "", f"no RAPL counters: {root} is absent (a VM or an unsupported CPU)"
    # top-level package domains only: sub-domains (intel-rapl:0:0, cores) are inside them,
    # and psys or the intel-rapl-mmio copy would count the same energy twice
    try:
        domains = sorted(
            d
            for d in root.glob("intel-rapl:*")
            if d.name.count(":") == 1 and (d / "name").read_text().startswith("package")
        )
    except OSError as exc:
        return None, "", f"RAPL domains under {root} could not be read ({exc})"
    if not domains:
        return None, "", f"no RAPL package domains under {root}"
    try:
        names = [(d / "name").read_text().strip() for d in domains]
        ranges = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        [int((d / "energy_uj").read_text()) for d in domains]
    except PermissionError:
        return None, "", f"RAPL counters under {root} are readable by root only here"
    except (OSError, ValueError) as exc:
        return None, "", f"RAPL counters under {root} could not be read ({exc})"
    last = [0] * len(domains)
    total = [0.0]

    def read() -> float:
        for i, domain in enumerate(domains):
            value = int((domain / "energy_uj").read_text())
            if last[i]:
                delta = value - last[i]
                total[0] += (delta if delta >= 0 else delta + ranges[i]) / 1e6
            last[i] = value
        return total[0]

    read()
    return read, "RAPL " + "+".join(names) + " (whole package, all processes)", ""


def _nvml_counter(device: str) -> tuple[Counter | None, str, str]:
    try:
        import pynvml
    except ImportError:
        return None, "", "NVML is not installed (pip install nvidia-ml-py)"
    index = int(device.partition(":")[2] or 0)
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError as exc:
        return None, "", f"NVML cannot read the energy counter of {device} ({exc})"

    def read() -> float:
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1e3  # mJ -> J

    return read, f"NVML {device} (whole GPU)", ""


class EnergyMeter:
    """Reads the energy counter of a device around a run.

    Example:
        >>> meter = EnergyMeter("cpu", tdp_watts=None)  # a TDP asks for a labelled estimate
        >>> meter.start(); run(); energy = meter.stop(seconds=1.2)
        >>> energy.describe(inferences=1000)
    """

    def __init__(
        self, device: str, *, tdp_watts: float | None = None, powercap: Path = POWERCAP
    ) -> None:
        if tdp_watts is not None and not tdp_watts > 0:
            raise InputError(f"tdp_watts must be positive, got {tdp_watts}")
        self.tdp_watts = tdp_watts
        if device.startswith("cuda"):
            self._read, self.source, self.reason = _nvml_counter(device)
        else:
            self._read, self.source, self.reason = _rapl_counter(powercap)
        self._start: float | None = None

    @property
    def available(self) -> bool:
        """True when the device's energy counter can be read here."""
        return self._read is not None

    def start(self) -> None:
        """Read the counter at the start of the timed part."""
        self._start = self._read() if self._read is not None else None

    def stop(self, seconds: float) -> Energy:
        """Energy since `start`; with a ``tdp_watts``, also a labelled TDP x time estimate.

        Args:
            seconds: length of the timed part (for the estimate).
        """
        estimate, basis = None, ""
        if self.tdp_watts is not None:
            estimate = self.tdp_watts * seconds
            basis = f"TDP {self.tdp_watts:g} W x {seconds:.3g} s, an upper bound"
        if self._read is None or self._start is None:
            return Energy(None, reason=self.reason, estimate_joules=estimate, estimate_basis=basis)
        return Energy(self._read() - self._start, self.source, "", estimate, basis)
