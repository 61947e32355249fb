"""Machine ceilings for the roofline: attainable FLOP/s and memory bandwidth, measured once.

Measured with a large fp32 GEMM (torch, else numpy) and a large copy, best of a few
repeats, in well under three seconds; cached on disk in
``$WORKBENCH_CACHE_DIR/ceilings.json`` (default ``~/.cache/workbench``), keyed by device,
processor and thread count.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Ceilings:
    """What a device can attain.

    Attributes:
        device: the device string (``"cpu"``, ``"cuda:0"``).
        peak_flops_per_s: attained fp32 FLOP/s of a large GEMM (2 FLOPs per multiply-add).
        bandwidth_bytes_per_s: attained bytes/s of a large copy (read + write).
        method: how it was measured.
        measured_at: ISO timestamp (UTC).
    """

    device: str
    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    method: str = ""
    measured_at: str = ""

    @property
    def ridge_intensity(self) -> float:
        """FLOPs per byte above which a kernel is compute bound."""
        return self.peak_flops_per_s / self.bandwidth_bytes_per_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ridge_intensity": self.ridge_intensity}


def cache_dir() -> Path:
    """Where workbench caches measurements (env ``WORKBENCH_CACHE_DIR`` overrides)."""
    return Path(os.environ.get("WORKBENCH_CACHE_DIR") or Path.home() / ".cache" / "workbench")


def machine_ceilings(device: str = "cpu", refresh: bool = False) -> Ceilings:
    """The device's attainable FLOP/s and memory bandwidth, measured once and cached.

    Args:
        device: ``"cpu"`` or a CUDA device (``"cuda:0"``, measured with torch).
        refresh: measure again even when a cached value exists.

    Returns:
        A `Ceilings`.

    Raises:
        ValueError: a device other than cpu/cuda (nothing to measure it with).

    Example:
        >>> c = wb.machine_ceilings("cpu")
        >>> c.peak_flops_per_s / 1e9, c.bandwidth_bytes_per_s / 1e9   # GFLOP/s, GB/s
    """
    key = _key(device)
    path = cache_dir() / "ceilings.json"
    cached = _read(path)
    if not refresh and key in cached:
        return Ceilings(**{k: v for k, v in cached[key].items() if k != "ridge_intensity"})
    ceilings = _measure(device)
    cached[key] = ceilings.to_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1))
    except OSError:  # a read-only home still gets the numbers, just not cached
        pass
    return ceilings


def _key(device: str) -> str:
    from workbench.machine import cpu_info

    threads = ""
    try:
        import torch

        threads = str(torch.get_num_threads())
    except ImportError:
        pass
    return f"{device}|{cpu_info().get('model', '')}|threads={threads}"


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _measure(device: str) -> Ceilings:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if device == "cpu":
        flops, how = _gemm_cpu()
        return Ceilings(device, flops, _copy_cpu(), f"fp32 GEMM ({how}), 256 MiB copy", now)
    if device.startswith("cuda"):
        return Ceilings(device, *_cuda(device), "fp32 GEMM and 256 MiB copy (torch)", now)
    raise ValueError(f"cannot measure ceilings of device {device!r}: only cpu and cuda:N")


def _best(fn: Any, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _gemm_cpu(n: int = 1024) -> tuple[float, str]:
    try:
        import torch

        a, b = torch.rand(n, n), torch.rand(n, n)
        return 2.0 * n**3 / _best(lambda: torch.mm(a, b), repeats=12), "torch"
    except ImportError:
        x, y = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
        return 2.0 * n**3 / _best(lambda: x @ y, repeats=12), "numpy"


def _copy_cpu(megabytes: int = 256) -> float:
    # larger than any last-level cache, so the copy streams from memory
    src = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    return 2.0 * src.nbytes / _best(lambda: np.copyto(dst, src))


def _cuda(device: str) -> tuple[float, float]:
    import torch

    dev = torch.device(device)
    n = 8192
    a, b = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
    src = torch.ones(64 * 2**20, device=dev)
    dst = torch.empty_like(src)

    def timed(fn: Any) -> float:
        def run() -> None:
            fn()
            torch.cuda.synchronize(dev)

        return _best(run)

    return 2.0 * n**3 / timed(lambda: torch.mm(a, b)), 2.0 * src.nbytes / timed(
        lambda: dst.copy_(src)
    )
