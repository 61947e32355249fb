"""The CPUs this process really has, and how much of them other work takes.

A runtime that sizes its thread pool from ``os.cpu_count()`` oversubscribes a container
whose cgroup quota is 2 CPUs on a 64-CPU host (Binder, JupyterHub), and one whose threads
wait for each other at every barrier collapses when a neighbour holds one of the cores:
a thread descheduled for a time slice stalls the whole operator (torch's default run of
the sample CNN went from 2.3 ms to 277 ms at load 4-5 on 2 cores). So every backend sizes
its threads from `default_threads`: the CPUs the process may use (affinity and cgroup
quota), less those other processes are busy on right now.

`read_sample` snapshots ``/proc`` and the cgroup's counters; `contention_between` turns two
snapshots around a measurement into a `Contention` record whose `Contention.reasons` say
in words why its numbers cannot be trusted. Every reader takes the file-system root, so
tests run on fake ``/proc`` and ``/sys`` trees.

Lives beside ``base.py`` because backends (below `workbench.machine`) size their threads
from it; `workbench.machine` records it in each result's environment.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Contention",
    "CpuBudget",
    "CpuSample",
    "contention_between",
    "cpu_budget",
    "cpu_model",
    "default_threads",
    "free_cpus",
    "read_sample",
]

#: other processes' work on our CPUs (in CPUs) from which a run is called contended
BUSY_CPUS = 0.5
#: a 1-minute load average above this many times the CPUs is called contended: the run's
#: own threads count in it (2 on 2 CPUs is a quiet machine at work), and it lags by about
#: a minute, so it is the coarse signal; `BUSY_CPUS` is the sharp one
LOAD_FACTOR = 1.5
#: share of CPU time the hypervisor stole from which a run is called contended
STEAL_SHARE = 0.05
#: share of a run's wall time the cgroup quota throttled from which it is called contended
THROTTLED_SHARE = 0.05
#: fewer clock ticks per CPU than this (100 a second) are too few to tell who was busy
MIN_TICKS = 5
#: how long `default_threads` watches the CPUs, and how long its answer is reused (s)
WINDOW_S = 0.1
REUSE_S = 5.0


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs this process may use.

    Attributes:
        affinity: CPUs in the process's affinity mask (``os.sched_getaffinity``).
        quota_cpus: the cgroup's CPU quota in CPUs (``cpu.max`` or ``cfs_quota_us /
            cfs_period_us``, the tightest of the cgroup and its parents); None: no quota.
        logical: CPUs the kernel shows (``/proc/stat``): what the load average is out of.
    """

    affinity: int
    quota_cpus: float | None
    logical: int

    @property
    def available(self) -> int:
        """Whole CPUs the process can keep busy: the affinity capped by the quota."""
        quota = math.inf if self.quota_cpus is None else math.ceil(self.quota_cpus - 1e-9)
        return max(1, int(min(self.affinity, quota)))

    def text(self) -> str:
        """``2 CPUs (cgroup quota 1.5 of 64)``, or ``2 CPUs`` with nothing to add."""
        limits = []
        if self.quota_cpus is not None:
            limits.append(f"cgroup quota {self.quota_cpus:g}")
        if self.affinity < self.logical:
            limits.append(f"affinity {self.affinity}")
        extra = f" ({', '.join(limits)} of {self.logical})" if limits else ""
        return f"{self.available} CPUs{extra}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "available": self.available}


@dataclass(frozen=True)
class CpuSample:
    """One reading of the CPU counters (clock ticks, 100 per second on Linux).

    Attributes:
        cpus: per CPU of the affinity mask, (busy, total, steal) ticks since boot.
        own_ticks: this process's user + system ticks, all its threads.
        load: the 1, 5 and 15 minute load averages.
        throttled_us: microseconds the cgroup quota has held the process back (None:
            no quota accounting).
    """

    cpus: Mapping[int, tuple[int, int, int]]
    own_ticks: int
    load: tuple[float, ...]
    throttled_us: int | None = None


@dataclass(frozen=True)
class Contention:
    """How busy the machine was around one measurement, and the verdict in words.

    Attributes:
        cpus: CPUs available to the process (`CpuBudget.available`).
        logical: CPUs of the machine (the load average counts runnable tasks over these).
        others_cpus: CPUs' worth of work other processes did on our CPUs during the run
            (nan: the run was too short to tell).
        steal: share of CPU time the hypervisor gave to other guests.
        load_before: the 1-minute load average when the run started.
        load: the 1-minute load average when it ended.
        throttled_share: share of the run's wall time the cgroup quota held it back.
        threads: threads the runtime ran with, when known.
        window_s: the run's wall time as the counters saw it, in seconds.
    """

    cpus: int
    logical: int
    others_cpus: float = math.nan
    steal: float = 0.0
    load_before: float = math.nan
    load: float = math.nan
    throttled_share: float = 0.0
    threads: int | None = None
    window_s: float = math.nan
    _reasons: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_reasons", self._verdict())

    def _verdict(self) -> tuple[str, ...]:
        reasons = []
        if self.others_cpus >= BUSY_CPUS:
            reasons.append(f"other work took {self.others_cpus:.1f} of {self.cpus} CPUs")
        load = max(self.load, self.load_before)
        if load > LOAD_FACTOR * self.logical:
            reasons.append(f"load {load:.1f} on {self.logical} CPUs")
        if self.steal >= STEAL_SHARE:
            reasons.append(f"CPU steal {self.steal:.0%}")
        if self.throttled_share >= THROTTLED_SHARE:
            reasons.append(f"cgroup quota throttled {self.throttled_share:.0%} of the run")
        if self.threads is not None and self.threads > self.cpus:
            reasons.append(f"{self.threads} threads on {self.cpus} CPUs (oversubscribed)")
        return tuple(reasons)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the machine made this run untrustworthy, one phrase each (empty: quiet)."""
        return self._reasons

    @property
    def contended(self) -> bool:
        """True when any reason applies."""
        return bool(self._reasons)

    def __eq__(self, other: object) -> bool:
        # by the JSON form: a field not measured (nan) equals itself after a round trip
        return isinstance(other, Contention) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "_reasons"}
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contention:
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        values: dict[str, Any] = {
            k: (math.nan if v is None and k != "threads" else v)
            for k, v in data.items()
            if k in known
        }
        return cls(**values)


# ---- readers ---------------------------------------------------------------------------
def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _affinity(affinity: Collection[int] | None) -> set[int]:
    if affinity is not None:
        return set(affinity)
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _proc_stat(root: Path) -> dict[int, tuple[int, int, int]]:
    """Per-CPU (busy, total, steal) ticks from ``/proc/stat`` (empty where unreadable)."""
    text = _text(root / "proc/stat") or ""
    cpus = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or not fields:
            continue
        ticks = [int(x) for x in fields[:8]] + [0] * (8 - min(8, len(fields)))
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        idle = ticks[3] + ticks[4]
        cpus[int(name[3:])] = (sum(ticks) - idle - ticks[7], sum(ticks), ticks[7])
    return cpus


def _cgroup_dirs(root: Path) -> list[tuple[str, Path]]:
    """(version, folder) of this process's cgroup and its parents, innermost first."""
    found = []
    for line in (_text(root / "proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",")
        if controllers == "":
            mount, version = root / "sys/fs/cgroup", "v2"
        elif "cpu" in names:
            mount, version = root / "sys/fs/cgroup" / controllers, "v1"
            if not mount.is_dir():
                mount = root / "sys/fs/cgroup/cpu"
        else:
            continue
        # inside a container the path is the host's: the container sees its own at the mount
        relative = path.strip("/")
        folder = mount / relative
        chain = [folder, *folder.parents] if folder.is_dir() else [mount]
        found += [(version, d) for d in chain if d == mount or mount in d.parents]
    return found


def cgroup_quota(root: str | Path = "/") -> float | None:
    """The tightest CPU quota (in CPUs) of this process's cgroup and its parents, or None."""
    quotas = []
    for version, folder in _cgroup_dirs(Path(root)):
        if version == "v2":
            parts = (_text(folder / "cpu.max") or "max").split()
            if parts[0] != "max" and len(parts) > 1 and int(parts[1]) > 0:
                quotas.append(int(parts[0]) / int(parts[1]))
        else:
            quota = (_text(folder / "cpu.cfs_quota_us") or "-1").strip()
            period = (_text(folder / "cpu.cfs_period_us") or "0").strip()
            if int(quota) > 0 and int(period) > 0:
                quotas.append(int(quota) / int(period))
    return min(quotas, default=None)


def _throttled_us(root: Path) -> int | None:
    for version, folder in _cgroup_dirs(root):
        for line in (_text(folder / "cpu.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if version == "v2" and key == "throttled_usec":
                return int(value)
            if version == "v1" and key == "throttled_time":  # nanoseconds
                return int(value) // 1000
    return None


def cpu_budget(root: str | Path = "/", affinity: Collection[int] | None = None) -> CpuBudget:
    """The CPUs this process may use: affinity, cgroup quota, and the machine's count.

    Args:
        root: the file-system root to read ``/proc`` and ``/sys`` under (tests: a fake tree).
        affinity: the affinity mask (default this process's).

    Example:
        >>> cpu_budget().available
        2
    """
    mask = _affinity(affinity)
    logical = len(_proc_stat(Path(root))) or os.cpu_count() or len(mask)
    return CpuBudget(len(mask), cgroup_quota(root), logical)


def read_sample(root: str | Path = "/", affinity: Collection[int] | None = None) -> CpuSample:
    """Snapshot the CPU counters of the affinity mask, this process's ticks and the load."""
    base = Path(root)
    mask = _affinity(affinity)
    cpus = {cpu: ticks for cpu, ticks in _proc_stat(base).items() if cpu in mask}
    own = (_text(base / "proc/self/stat") or "").rpartition(")")[2].split()
    # after the command's closing parenthesis: field 14 (utime) is at index 11
    own_ticks = int(own[11]) + int(own[12]) if len(own) > 12 else 0
    load = tuple(float(x) for x in (_text(base / "proc/loadavg") or "").split()[:3])
    return CpuSample(cpus, own_ticks, load, _throttled_us(base))


def contention_between(
    before: CpuSample, after: CpuSample, budget: CpuBudget, threads: int | None = None
) -> Contention:
    """What two snapshots around a run say about how contended it was.

    Args:
        before: `read_sample` taken as the run started.
        after: `read_sample` taken as it ended.
        budget: the process's `CpuBudget`.
        threads: threads the runtime used (a count above the CPUs is a reason of its own).
    """
    shared = [c for c in after.cpus if c in before.cpus]
    delta = [[a - b for a, b in zip(after.cpus[c], before.cpus[c], strict=True)] for c in shared]
    busy, total, steal = (sum(d[i] for d in delta) for i in range(3))
    per_cpu = total / len(delta) if delta else 0.0
    others = math.nan
    if per_cpu >= MIN_TICKS:
        own = max(0, after.own_ticks - before.own_ticks)
        # other processes' busy ticks over our CPUs, in CPUs' worth of the window; on a
        # host bigger than our budget only what the idle CPUs outside it cannot absorb
        slack = budget.affinity - budget.available
        others = max(0.0, (busy - own) / per_cpu - slack)
    window_s = per_cpu / _ticks_per_s()
    throttled = 0.0
    if after.throttled_us is not None and before.throttled_us is not None and window_s > 0:
        throttled = (after.throttled_us - before.throttled_us) / 1e6 / window_s
    return Contention(
        cpus=budget.available,
        logical=budget.logical,
        others_cpus=others if math.isnan(others) else min(others, float(budget.available)),
        steal=steal / total if total else 0.0,
        load_before=before.load[0] if before.load else math.nan,
        load=after.load[0] if after.load else math.nan,
        throttled_share=max(0.0, throttled),
        threads=threads,
        window_s=window_s if per_cpu else math.nan,
    )


def _ticks_per_s() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100


# ---- thread counts ---------------------------------------------------------------------
_reused: dict[str, tuple[float, int]] = {}
#: the last reading of the counters per root and mask, with when it was taken
_held: dict[tuple[str, tuple[int, ...] | None], tuple[float, CpuSample]] = {}
#: a held reading older than this says nothing about now (s)
HELD_S = 5.0


def free_cpus(
    root: str | Path = "/",
    *,
    affinity: Collection[int] | None = None,
    window_s: float = WINDOW_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Whole CPUs of this process's budget that other work is not using right now.

    Watches the CPU counters over at least ``window_s``: since the last reading when it
    is recent (`HELD_S`; one is taken when this module is imported, so a fresh process
    that loads a model before compiling it waits for nothing), else by waiting. At least
    1, at most `CpuBudget.available`; where the counters cannot be read (not Linux), the
    whole budget.
    """
    budget = cpu_budget(root, affinity)
    key = (str(root), tuple(sorted(affinity)) if affinity is not None else None)
    now = clock()
    held_at, before = _held.get(key, (-math.inf, None))
    if before is None or now - held_at > HELD_S:
        held_at, before = now, read_sample(root, affinity)
    if now - held_at < window_s:
        sleep(window_s - (now - held_at))
    after = read_sample(root, affinity)
    _held[key] = (clock(), after)
    seen = contention_between(before, after, budget)
    if math.isnan(seen.others_cpus):
        return budget.available
    return max(1, round(budget.available - seen.others_cpus))


def default_threads(runtime_default: int | None = None, root: str | Path = "/") -> int:
    """The threads a runtime should use here when the user did not say.

    The runtime's own default (``runtime_default``, e.g. torch's, which counts the
    machine's cores, not the cgroup's quota), capped by the CPUs that are free: the
    process's budget (affinity, quota) less what other processes are busy on. On a quiet
    machine that is the runtime's own default; with a busy neighbour per core it is 1,
    so no thread waits at a barrier for a core that another process holds. The answer is
    reused for `REUSE_S` seconds (a sweep compiles many sessions in a row).

    Args:
        runtime_default: the count the runtime would pick itself (None: no cap of its own).
        root: the file-system root (tests: a fake tree).

    Example:
        >>> default_threads(torch.get_num_threads())
        2
    """
    key, now = str(root), time.monotonic()
    at, count = _reused.get(key, (-math.inf, 0))
    if now - at > REUSE_S:
        count = free_cpus(root)
        _reused[key] = (now, count)
    return count if runtime_default is None else max(1, min(runtime_default, count))


# the first reading, so that the first `free_cpus` finds a window already open
_held[("/", None)] = (time.monotonic(), read_sample())


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what `platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
