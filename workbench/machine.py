"""What this machine has: CPU, GPUs, and every backend x device with its availability.

(Named `machine` rather than `devices` so that the public function `wb.devices()` is never
shadowed by a submodule of the same name.)
"""

from __future__ import annotations

import os
import platform
from functools import cache
from importlib import metadata
from typing import Any

import pandas as pd

from workbench.backends.cpus import Contention, cpu_budget

_SIMD_LEVELS = (  # best first: (cpuinfo flag, display name)
    ("amx_tile", "AMX"),
    ("avx512f", "AVX-512"),
    ("avx2", "AVX2"),
    ("avx", "AVX"),
    ("sse4_2", "SSE4.2"),
    ("asimd", "NEON"),
)


@cache
def cpu_info() -> dict[str, Any]:
    """CPU model, core counts, SIMD level (``AVX2``, ``AVX-512``, ``AMX``, ``NEON``), flags.

    ``usable_cores`` counts the CPUs this process may use: its affinity capped by its
    cgroup's CPU quota (a container's 2 CPUs on a 64-core host are 2).
    """
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    import psutil

    simd = [name for flag, name in _SIMD_LEVELS if flag in flags]
    return {
        "model": model,
        "arch": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False) or os.cpu_count(),
        "logical_cores": os.cpu_count(),
        "usable_cores": cpu_budget().available,
        "simd": simd[0] if simd else "unknown",
        "simd_all": simd,
        "flags": sorted(flags),
        "memory_bytes": psutil.virtual_memory().total,
    }


@cache
def cache_sizes() -> dict[str, int]:
    """The CPU caches one core sees, in bytes: ``{"L1d": ..., "L2": ..., "L3": ...}``.

    Read from Linux's sysfs for CPU 0 (one instance of each level: a core's own L2, the
    L3 it shares); empty where the system does not say (not Linux, a sandbox).

    Example:
        >>> wb.machine.cache_sizes()["L2"]
        1048576
    """
    sizes: dict[str, int] = {}
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return sizes
    for entry in entries:
        try:
            with open(f"{root}/{entry}/level") as f:
                level = f.read().strip()
            with open(f"{root}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{root}/{entry}/size") as f:
                size = f.read().strip().upper()
        except OSError:
            continue
        if kind == "Instruction" or not size[:-1].isdigit():
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 0)
        sizes[f"L{level}d" if kind == "Data" else f"L{level}"] = int(size[:-1]) * unit
    return sizes


def gpu_info() -> list[dict[str, Any]]:
    """Each CUDA GPU torch can see: name, memory, compute capability (empty without one)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append(
            {
                "device": f"cuda:{i}",
                "name": props.name,
                "memory_bytes": props.total_memory,
                "compute_capability": f"{props.major}.{props.minor}",
                "multiprocessors": props.multi_processor_count,
            }
        )
    return gpus


#: the distribution workbench is installed as (``pip install inference-workbench``; the import
#: name stays ``workbench``): "workbench" on PyPI is an unrelated project
DISTRIBUTION = "inference-workbench"


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a measurement (workbench's own under
    ``"workbench"``): a copy of what was read once per process (the libraries imported stay
    the ones imported; reading the metadata costs ~0.1 s a measurement otherwise)."""
    return dict(_library_versions())


@cache
def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in (
        "workbench",
        "numpy",
        "torch",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "numba",
        "numba-cuda",
    ):
        try:
            versions[package] = metadata.version(
                DISTRIBUTION if package == "workbench" else package
            )
        except metadata.PackageNotFoundError:
            continue
    return versions


def environment(
    threads: int | None = None, root: str = "/", contention: Contention | None = None
) -> dict[str, Any]:
    """Everything a result records about where it ran.

    Besides versions and the CPU: ``cpus`` (the CPUs the process may use: affinity,
    cgroup quota, the machine's count; see `workbench.backends.cpus.CpuBudget`),
    ``load`` (1, 5, 15 minute load averages now) and ``threads`` (the runtime's thread
    count, when the caller knows it). How busy the machine was *during* a measurement
    is on its `Measurement.contention`.

    Args:
        threads: the thread count the measured runtime used.
        root: the file-system root ``/proc`` and ``/sys`` are read under (tests).
        contention: how busy the machine was during a run that has no `Measurement`
            of its own (a scenario): recorded as ``contention``, with its ``reasons``.
    """
    import sys

    from workbench.backends.cpus import read_sample

    cpu = cpu_info()
    budget = cpu_budget(root)
    env: dict[str, Any] = {
        "versions": library_versions(),
        "platform": platform.platform(),
        "cpu": cpu["model"],
        "simd": cpu["simd"],
        "cores": budget.available,
        "cpus": budget.to_dict(),
        "load": list(read_sample(root).load),
        "hostname": platform.node(),
    }
    if threads is not None:
        env["threads"] = threads
    if contention is not None:
        env["contention"] = {**contention.to_dict(), "reasons": list(contention.reasons)}
    if "torch" in sys.modules:  # only describe GPUs/threads when torch is already loaded
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["gpus"] = [g["name"] for g in gpu_info()]
    return env


def devices() -> pd.DataFrame:
    """A table of every backend x device on this machine.

    Each row: ``backend``, ``device``, ``available``, ``version``, ``details``, and
    ``reason`` (why a backend is unavailable, with what to do).

    Example:
        >>> wb.devices()
    """
    from workbench.backends.base import backend_names, get_backend

    rows = []
    for name in backend_names():
        try:
            availability = get_backend(name).availability()
        except Exception as exc:  # a broken plugin must not hide the other backends
            rows.append(
                {
                    "backend": name,
                    "device": "-",
                    "available": False,
                    "version": "",
                    "details": "",
                    "reason": f"failed to load: {exc}",
                }
            )
            continue
        if not availability.ok or not availability.details:
            rows.append(
                {
                    "backend": name,
                    "device": "-",
                    "available": False,
                    "version": availability.version,
                    "details": "",
                    "reason": availability.reason or "no usable device",
                }
            )
            continue
        for device, details in availability.details.items():
            rows.append(
                {
                    "backend": name,
                    "device": device,
                    "available": True,
                    "version": availability.version,
                    "details": details,
                    "reason": "",
                }
            )
    return pd.DataFrame(
        rows, columns=["backend", "device", "available", "version", "details", "reason"]
    )


def describe_machine() -> str:
    """One paragraph: CPU, cores, SIMD, memory, GPUs."""
    cpu = cpu_info()
    text = (
        f"{cpu['model']} ({cpu['arch']}), {cpu_budget().text()} usable, "
        f"SIMD {cpu['simd']}, {cpu['memory_bytes'] / 2**30:.0f} GiB RAM"
    )
    gpus = gpu_info()
    for gpu in gpus:
        text += (
            f"; {gpu['device']}: {gpu['name']} {gpu['memory_bytes'] / 2**30:.0f} GiB, "
            f"compute capability {gpu['compute_capability']}"
        )
    return text + ("" if gpus else "; no CUDA GPU")
