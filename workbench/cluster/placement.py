"""Where a sweep point may run, so that timings stay honest.

Two rules, from the workers' declared Dask resources (``dask worker --resources
"GPU=1,timing=1"``):

- A point on an accelerator (``cuda:0``) goes only to workers that declare it
  (``GPU``; another device kind ``xpu:0`` needs ``XPU``). With no such worker the point
  fails at once, saying how to start one, instead of waiting forever.
- No two points are measured on one machine at the same time, because a neighbour's
  work disturbs a measurement (cores, caches, memory bandwidth, turbo). When every worker
  declares ``timing`` and no host has more than one ``timing`` slot in all, Dask's
  resources already guarantee it and each point asks for ``timing=1``. Otherwise each
  point holds its host's semaphore while it runs (one Dask semaphore per host name), so
  several workers on one machine take turns; `Placement.note` says which rule applies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: the resource one timed point holds; give each machine one slot in all
TIMING = "timing"
#: resource names of accelerator device kinds that differ from the kind in upper case
_RESOURCE_OF_KIND = {"cuda": "GPU"}


def device_resource(device: str) -> str | None:
    """The worker resource a device needs (``cuda:0`` -> ``GPU``); None for the CPU."""
    kind = device.split(":")[0].lower()
    if kind == "cpu":
        return None
    return _RESOURCE_OF_KIND.get(kind, kind.upper())


@dataclass(frozen=True)
class Placement:
    """How a sweep's points are placed on the workers present when it starts.

    Attributes:
        resources: the resources some worker declares.
        timing_by_resource: every point asks for ``timing=1`` (each host has one slot).
        host_slot: each point holds its host's semaphore while it runs.
        note: the rule in one sentence, for the user.
    """

    resources: frozenset[str]
    timing_by_resource: bool
    host_slot: bool
    note: str

    def requirements(self, device: str) -> dict[str, float] | None:
        """The resources a point on ``device`` asks for; None if no worker has them."""
        needed: dict[str, float] = {}
        accelerator = device_resource(device)
        if accelerator is not None:
            if accelerator not in self.resources:
                return None
            needed[accelerator] = 1
        if self.timing_by_resource:
            needed[TIMING] = 1
        return needed

    def missing(self, device: str) -> str:
        """Why a point on ``device`` has nowhere to run, and what to do."""
        resource = device_resource(device)
        return (
            f"no Dask worker declares the {resource} resource needed for {device}; start "
            f'workers on such machines with dask worker ADDRESS --resources "{resource}=1,'
            f'{TIMING}=1"'
        )


def plan(workers: Mapping[str, Mapping[str, Any]], exclusive: bool = True) -> Placement:
    """The `Placement` for the workers in ``Client.scheduler_info()["workers"]``.

    Args:
        workers: worker address -> its info (``host`` and ``resources``).
        exclusive: keep measurements on one machine one at a time (False lets workers
            on one machine measure at once: faster, but their timings disturb each other).
    """
    declared = {name for info in workers.values() for name in (info.get("resources") or {})}
    slots: dict[str, float] = defaultdict(float)
    for address, info in workers.items():
        slots[_host(address, info)] += float((info.get("resources") or {}).get(TIMING, 0))
    everyone_timed = bool(workers) and all(
        (info.get("resources") or {}).get(TIMING, 0) > 0 for info in workers.values()
    )
    one_slot_per_host = everyone_timed and all(n <= 1 for n in slots.values())
    if one_slot_per_host:
        note = "each point holds the 'timing' resource: one measurement per machine at a time"
        return Placement(frozenset(declared), True, False, note)
    if not exclusive:
        note = "exclusive=False: points on one machine may run at once and disturb each other"
        return Placement(frozenset(declared), everyone_timed, False, note)
    note = (
        "workers do not give each machine exactly one 'timing' resource slot, so each "
        "point holds a per-host lock instead: one measurement per machine at a time "
        '(start one worker per machine with --resources "timing=1" to place by resources)'
    )
    return Placement(frozenset(declared), False, True, note)


def _host(address: str, info: Mapping[str, Any]) -> str:
    host = info.get("host")
    if host:
        return str(host)
    # tcp://10.0.0.5:40123 -> 10.0.0.5
    return address.split("://")[-1].rsplit(":", 1)[0]
