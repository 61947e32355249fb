"""Peak memory of one inference: host RSS sampled in the background, device memory on CUDA.

Measured in its own run, so the sampling thread never competes with a timed pass.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np


class RssSampler:
    """Samples this process's resident set size every ``interval_s`` while active.

    Example:
        >>> with RssSampler() as rss:
        ...     session.run(x)
        >>> rss.peak_bytes - rss.before_bytes
    """

    def __init__(self, interval_s: float = 0.001) -> None:
        import psutil

        self._process = psutil.Process()
        self.interval_s = interval_s
        self.before_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, int(self._process.memory_info().rss))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> RssSampler:
        self.before_bytes = int(self._process.memory_info().rss)
        self.peak_bytes = self.before_bytes
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def peak_memory(session: Any, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Peak memory of one ``session.run(inputs)`` (bytes).

    Returns:
        ``peak_bytes`` (host RSS peak during the run, the process's whole footprint),
        ``rss_before_bytes``, ``run_delta_bytes`` (what the run added), and on CUDA with
        torch loaded ``device_peak_bytes`` (torch's allocator peak; other runtimes' device
        arenas are reported by their own profilers, see ``backend_peak_bytes``).
        Never raises: a failing run is reported as ``error``.
    """
    device_stats = _cuda_reset(session.device)
    try:
        with RssSampler() as rss:
            session.run(inputs)
    except Exception as exc:  # memory is a side report; the timing pass reports failures
        return {"error": f"memory run failed: {exc}"}
    report: dict[str, Any] = {
        "peak_bytes": rss.peak_bytes,
        "rss_before_bytes": rss.before_bytes,
        "run_delta_bytes": max(0, rss.peak_bytes - rss.before_bytes),
    }
    if device_stats:
        import torch

        report["device_peak_bytes"] = int(torch.cuda.max_memory_allocated(session.device))
    return report


def _cuda_reset(device: str) -> bool:
    """Reset torch's CUDA peak counter when torch is already loaded and the device is CUDA."""
    if not device.startswith("cuda") or "torch" not in sys.modules:
        return False
    import torch

    if not torch.cuda.is_available():
        return False
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    time.sleep(0)
    return True
