"""The threading layer Numba's parallel loops run on: TBB wherever it can be loaded.

Numba's layers behave very differently when another process holds one of the cores
(``benchmarks/numba_threading.py``, docs/numba.md): OpenMP's workers wait for each other
at the end of every region and a descheduled one stalls it for a time slice (digits-cnn
at batch 32 on 2 threads: 39 ms at load 11 on 2 cores), Numba's own workqueue less so
(5.8 ms), TBB's work stealing lets the running threads take the stalled one's share
(1.5 ms; 0.8-1.0 ms quiet). Numba tries TBB first, but the ``tbb`` wheel (a dependency
on x86-64) puts ``libtbb.so.12`` under ``<prefix>/lib``, where the dynamic loader does
not look; loaded here by its path first, Numba finds it by its soname. Without it Numba
keeps its own order (OpenMP, then workqueue), and an explicit ``NUMBA_THREADING_LAYER``
is the user's choice.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path

#: the TBB runtime Numba's tbb layer links against (interface 12060 or later)
LIBTBB = "libtbb.so.12"


@functools.cache
def load_tbb() -> str:
    """Load the TBB library the ``tbb`` wheel installed, before Numba starts its threads.

    Returns:
        The path loaded, or "" where none was (not Linux, another layer asked for in
        ``NUMBA_THREADING_LAYER``, no wheel, or a library that does not load).
    """
    if sys.platform != "linux":
        return ""
    if os.environ.get("NUMBA_THREADING_LAYER", "default") not in ("default", "safe", "tbb"):
        return ""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = Path(prefix) / "lib" / LIBTBB
        if not path.is_file():
            continue
        try:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        return str(path)
    return ""
