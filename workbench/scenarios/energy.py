"""Energy per inference from hardware counters, and cost per million predictions.

Energy is measured, never guessed: NVML's cumulative energy counter on NVIDIA GPUs and
RAPL (``/sys/class/powercap``) on CPUs, where the package domains and their DRAM
sub-domains are read and reported apart (DRAM is not inside the package, so their sum
is the total; core/uncore sub-domains are inside the package and psys covers both, so
neither is counted). The counters are read at the start and end of the timed run, on
the run's own clock; the idle draw is measured in short windows before and after it and
reported apart, with the run's energy above idle. Where no counter can be read the
result says "energy: unavailable (why)". An estimate from a TDP the user gives is made
only on request and always labelled as an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.errors import InputError
from workbench.scenarios.clock import Clock, RealClock
from workbench.units import format_number, format_seconds

#: where Linux exposes RAPL energy counters
POWERCAP = Path("/sys/class/powercap")
#: seconds of idle draw measured before and again after a run (only where counters exist)
IDLE_S = 0.5
#: counters read over an interval further than this (relative) from the timed one are
#: not reported: the energy would not be the run's
MAX_INTERVAL_GAP = 0.05
#: how to let a user read RAPL (root-only since Linux 5.10, against the PLATYPUS attack)
RAPL_ACCESS = (
    "run as root, or grant read access: sudo chmod o+r {root}/intel-rapl:*/energy_uj "
    "{root}/intel-rapl:*:*/energy_uj (until reboot), or for good a udev rule "
    '(SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r /sys%p/energy_uj")'
)

#: cumulative joules per part of a device (``package``, ``dram``, ``gpu``)
Reading = dict[str, float]
Counter = Callable[[], Reading]

_PART_NAMES = {"package": "package", "dram": "DRAM", "gpu": "GPU"}


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
        joules: measured energy over the run in joules (the sum of ``parts``); None when
            unavailable.
        source: the counters read (``"RAPL package-0+dram"``, ``"NVML cuda:0"``).
        reason: why energy is unavailable (empty when measured).
        estimate_joules: a TDP-based estimate, only when the user asked for one.
        estimate_basis: how the estimate was made (``"TDP 65 W x 1.20 s"``).
        parts: measured joules per part (``package``, ``dram`` or ``gpu``), apart.
        interval_s: seconds between the two counter reads (on the run's clock).
        timed_s: seconds the run itself was timed over; within 5% of ``interval_s``
            whenever ``joules`` is given.
        idle_watts: the draw measured with nothing of ours running (windows before and
            after the run, other processes included); None when not measured.
        idle_s: seconds of idle the draw was measured over.
        idle_reason: why the idle draw is not given (empty when measured).
    """

    joules: float | None
    source: str = ""
    reason: str = ""
    estimate_joules: float | None = None
    estimate_basis: str = ""
    parts: dict[str, float] = field(default_factory=dict)
    interval_s: float | None = None
    timed_s: float | None = None
    idle_watts: float | None = None
    idle_s: float = 0.0
    idle_reason: str = ""

    @property
    def watts(self) -> float | None:
        """Average measured power over the run, in watts (None when unavailable)."""
        if self.joules is None or not self.interval_s:
            return None
        return self.joules / self.interval_s

    @property
    def above_idle_joules(self) -> float | None:
        """The run's energy less the idle draw over the same interval (None without both)."""
        if self.joules is None or self.idle_watts is None or self.interval_s is None:
            return None
        return self.joules - self.idle_watts * self.interval_s

    def per_inference(self, inferences: int) -> float | None:
        """Measured joules per inference, or None when unavailable."""
        if self.joules is None or inferences <= 0:
            return None
        return self.joules / inferences

    def above_idle_per_inference(self, inferences: int) -> float | None:
        """Measured joules per inference above the idle draw, or None when unavailable."""
        above = self.above_idle_joules
        return None if above is None or inferences <= 0 else above / inferences

    def describe(self, inferences: int) -> str:
        """One line for a summary: measured (per part, idle apart), or unavailable (why),
        and any labelled estimate."""
        per = self.per_inference(inferences)
        if per is None or self.joules is None:
            text = f"energy: unavailable ({self.reason or 'nothing ran'})"
        else:
            per_joule = inferences / self.joules if self.joules else math.inf
            split = ""
            if len(self.parts) > 1:
                shares = (
                    f"{_PART_NAMES.get(k, k)} {format_number(v / inferences * 1e3)}"
                    for k, v in self.parts.items()
                )
                split = f" ({' + '.join(shares)})"
            text = (
                f"energy: {format_number(per * 1e3)} mJ per inference{split}, "
                f"{format_number(per_joule)} inferences/J, {format_number(self.watts)} W over "
                f"{format_seconds(self.interval_s or 0.0)} ({self.source}); "
                + self._idle_text(inferences)
            )
        if self.estimate_joules is not None and inferences > 0:
            text += (
                "; ESTIMATE, not measured: "
                f"{format_number(self.estimate_joules / inferences * 1e3)} mJ "
                f"per inference ({self.estimate_basis})"
            )
        return text

    def _idle_text(self, inferences: int) -> str:
        above = self.above_idle_per_inference(inferences)
        if self.idle_watts is None or above is None:
            return f"idle not measured ({self.idle_reason or 'no idle window'})"
        return (
            f"idle {format_number(self.idle_watts)} W (measured over "
            f"{format_seconds(self.idle_s)} around the run), "
            f"{format_number(above * 1e3)} mJ per inference above idle"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "joules": self.joules,
            "source": self.source,
            "reason": self.reason,
            "estimate_joules": self.estimate_joules,
            "estimate_basis": self.estimate_basis,
            "parts": dict(self.parts),
            "interval_s": self.interval_s,
            "timed_s": self.timed_s,
            "idle_watts": self.idle_watts,
            "idle_s": self.idle_s,
            "idle_reason": self.idle_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Energy:
        """Rebuild from `to_dict` output (also one written before parts and idle)."""
        return cls(**{**data, "parts": dict(data.get("parts") or {})})


def read_uj(domain: Path) -> int:
    """A RAPL domain's cumulative energy counter, in microjoules."""
    return int((domain / "energy_uj").read_text())


def _rapl_domains(root: Path) -> list[tuple[str, Path]]:
    """(part, folder) of every package domain and every DRAM domain, never psys/core."""
    found: list[tuple[str, Path]] = []
    for top in sorted(root.glob("intel-rapl:*")):
        if top.name.count(":") != 1:
            continue  # a sub-domain: reached through its package below
        name = (top / "name").read_text().strip()
        if name == "dram":  # some servers list DRAM beside the packages
            found.append(("dram", top))
        if not name.startswith("package"):
            continue  # psys (the platform) covers package and DRAM: counting it doubles
        found.append(("package", top))
        for sub in sorted(root.glob(f"{top.name}:*")):
            if (sub / "name").read_text().strip() == "dram":
                found.append(("dram", sub))  # core/uncore are inside the package: skipped
    return found


def _rapl_counter(root: Path) -> tuple[Counter | None, str, str]:
    """Cumulative joules per part (package, DRAM) over every domain, with wrap-around."""
    if not root.is_dir():
        return None, "", f"no RAPL counters: {root} is absent (a VM or an unsupported CPU)"
    try:
        domains = _rapl_domains(root)
        if not domains:
            return None, "", f"no RAPL package domains under {root}"
        names = [(d / "name").read_text().strip() for _, d in domains]
        ranges = [int((d / "max_energy_range_uj").read_text()) for _, d in domains]
        last = [read_uj(d) for _, d in domains]
    except PermissionError:
        why = f"RAPL counters under {root} are readable by root only; "
        return None, "", why + RAPL_ACCESS.format(root=root)
    except (OSError, ValueError) as exc:
        return None, "", f"RAPL counters under {root} could not be read ({exc})"
    total = dict.fromkeys((part for part, _ in domains), 0.0)

    def read() -> Reading:
        for i, (part, domain) in enumerate(domains):
            value = read_uj(domain)
            delta = value - last[i]
            # a counter wraps to 0 after max_energy_range_uj; one wrap per read is seen
            total[part] += (delta if delta >= 0 else delta + ranges[i]) / 1e6
            last[i] = value
        return dict(total)

    kinds = {part for part, _ in domains}
    scope = "whole package" + (" and DRAM" if "dram" in kinds else ", no DRAM domain here")
    return read, f"RAPL {'+'.join(names)} ({scope}, all processes)", ""


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

    def read() -> Reading:  # a 64-bit count of mJ since the driver loaded: no wrap
        return {"gpu": float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1e3}

    return read, f"NVML {device} (whole GPU)", ""


class EnergyMeter:
    """Reads the energy counters of a device over exactly a timed run, idle apart.

    `start` measures the idle draw for ``idle_s`` and then reads the counters; `stop`
    reads them again, then measures ``idle_s`` more of idle. Both reads are stamped on
    the run's clock, so the energy covers the interval the run was timed over (checked
    within 5%).

    Args:
        device: ``"cpu"`` (RAPL) or ``"cuda:N"`` (NVML).
        tdp_watts: ask for a labelled TDP x time estimate beside (never instead of) a
            measurement.
        powercap: the powercap folder (default `POWERCAP`; a fake tree in tests).
        clock: the run's clock; a simulated one (`VirtualClock`) measures no energy.
        idle_s: seconds of idle before and after the run (default `IDLE_S`; 0: none).

    Raises:
        InputError: a TDP or idle window that is not a positive number.

    Example:
        >>> meter = EnergyMeter("cpu")
        >>> meter.start(); run(); energy = meter.stop(seconds=1.2)
        >>> energy.describe(inferences=1000)
    """

    def __init__(
        self,
        device: str,
        *,
        tdp_watts: float | None = None,
        powercap: Path | None = None,
        clock: Clock | None = None,
        idle_s: float | None = None,
    ) -> None:
        if tdp_watts is not None and not tdp_watts > 0:
            raise InputError(f"tdp_watts must be positive, got {tdp_watts}")
        self.idle_s = IDLE_S if idle_s is None else idle_s
        if not (self.idle_s >= 0 and math.isfinite(self.idle_s)):
            raise InputError(f"idle_s must be 0 or more seconds, got {idle_s}")
        self.tdp_watts = tdp_watts
        self.clock: Clock = clock or RealClock()
        self._read: Counter | None
        if self.clock.simulated:
            self._read, self.source = None, ""
            self.reason = "a simulated run takes no real time: no counter can measure it"
        elif device.startswith("cuda"):
            self._read, self.source, self.reason = _nvml_counter(device)
        else:
            self._read, self.source, self.reason = _rapl_counter(powercap or POWERCAP)
        self._start: tuple[float, Reading] | None = None
        self._idle: tuple[float, float] = (0.0, 0.0)  # (joules, seconds) of idle so far

    @property
    def available(self) -> bool:
        """True when the device's energy counter can be read here."""
        return self._read is not None

    def _stamp(self) -> tuple[float, Reading]:
        assert self._read is not None
        reading = self._read()
        return self.clock.now(), reading

    def _measure_idle(self) -> None:
        if self.idle_s <= 0:
            return
        t0, r0 = self._stamp()
        self.clock.sleep_until(t0 + self.idle_s)
        t1, r1 = self._stamp()
        joules, seconds = self._idle
        self._idle = (joules + _sum(r1) - _sum(r0), seconds + t1 - t0)

    def start(self) -> None:
        """Measure the idle draw, then read the counters: call just before the timed part."""
        self._idle = (0.0, 0.0)
        if self._read is None:
            self._start = None
            return
        self._measure_idle()
        self._start = self._stamp()

    def stop(self, seconds: float) -> Energy:
        """Energy since `start` (read now), then the idle draw after it.

        Args:
            seconds: length of the timed part: the counters' interval must match it
                within 5%, or the energy is reported unavailable; also the basis of a
                TDP estimate.
        """
        estimate, basis = None, ""
        if self.tdp_watts is not None:
            estimate = self.tdp_watts * seconds
            basis = f"TDP {self.tdp_watts:g} W x {seconds:.3g} s, an upper bound"
        if self._read is None or self._start is None:
            reason = self.reason or "the meter was not started"
            return Energy(None, reason=reason, estimate_joules=estimate, estimate_basis=basis)
        (t0, r0), (t1, r1) = self._start, self._stamp()
        self._measure_idle()
        interval = t1 - t0
        parts = {part: r1[part] - r0[part] for part in r1}
        idle_j, idle_s = self._idle
        measured = Energy(
            _sum(parts), self.source, "", estimate, basis, parts, interval, seconds,
            idle_watts=idle_j / idle_s if idle_s > 0 else None,
            idle_s=idle_s,
            idle_reason="" if idle_s > 0 else "no idle window (idle_s=0)",
        )  # fmt: skip
        if not seconds > 0 or abs(interval - seconds) > MAX_INTERVAL_GAP * seconds:
            reason = (
                f"the counters were read over {interval:.3g} s but the run was timed over "
                f"{seconds:.3g} s, more than {MAX_INTERVAL_GAP:.0%} apart"
            )
            return replace(measured, joules=None, reason=reason, parts={})
        return measured


def _sum(reading: Reading) -> float:
    return float(sum(reading.values()))
