"""Numba's one-off start in a process, kept apart from any model's compile.

The first call of any ``@njit`` function in a process initialises Numba's CPU target
(its extra typing registries, about a second), the first BLAS product imports SciPy's
BLAS bindings, and the kernel modules make their dispatchers when imported: once per
process, whatever the model, like ``import torch``. `start` pays all of it (one tiny
cached call), so a session's ``graph_s``/``plan_s`` hold the model's own work only.
"""

from __future__ import annotations

import importlib

import numba
import numpy as np

from workbench.backends.numba.pool import load_tbb


@numba.njit(cache=True)
def _product(a: np.ndarray) -> np.ndarray:
    return np.dot(a, a)


def start() -> None:
    """Start Numba here: its threading library, its CPU target, its BLAS, our kernels."""
    load_tbb()  # before Numba starts its threads
    numba.get_num_threads()
    _product(np.ones((2, 2), np.float32))
    importlib.import_module("workbench.backends.numba.cpu_ops")
