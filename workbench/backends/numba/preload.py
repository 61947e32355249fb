"""Load a plan's CPU kernels from Numba's disk cache (or compile them) when planning.

A bound step is a callable the executor replays: a ``functools.partial`` of a jitted
kernel and its fixed arrays, or a closure over such calls (a sequence, a BLAS scope).
Numba loads a kernel's machine code at its first call; `load_kernels` asks for the
same signatures at plan time instead, so the plan's ``plan_s`` holds the kernels'
loading (or compiling) and the first inference is an inference. A call it cannot see
(arguments made at run time) still loads at its first run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from numba.core.registry import CPUDispatcher


def load_kernels(calls: Iterable[Callable[[], Any]]) -> int:
    """Load (or compile) every jitted CPU kernel ``calls`` make with fixed arguments.

    Returns:
        How many kernel signatures were asked for (each once).
    """
    wanted: dict[tuple[int, tuple[Any, ...]], tuple[Any, tuple[Any, ...]]] = {}
    for kernel, args in _kernel_calls(calls, set()):
        signature = tuple(kernel.typeof_pyval(a) for a in args)
        wanted.setdefault((id(kernel), signature), (kernel, signature))
    for kernel, signature in wanted.values():
        kernel.compile(signature)
    return len(wanted)


def _kernel_calls(
    calls: Iterable[Any], seen: set[int]
) -> Iterator[tuple[CPUDispatcher, tuple[Any, ...]]]:
    """The (kernel, arguments) pairs inside ``calls``: partials of kernels, and what
    partials and closures hold (closures are walked once each)."""
    for call in calls:
        if id(call) in seen or not callable(call):
            continue
        seen.add(id(call))
        if isinstance(call, functools.partial):
            if isinstance(call.func, CPUDispatcher) and not call.keywords:
                yield call.func, call.args
            else:
                yield from _kernel_calls([call.func, *call.args], seen)
            continue
        for cell in getattr(call, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not filled yet
                continue
            yield from _kernel_calls(value if isinstance(value, tuple) else (value,), seen)
