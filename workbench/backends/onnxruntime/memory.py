"""The memory an ONNX Runtime session uses in one inference, from ORT's own allocator.

ORT's node profiler writes, with every kernel event, its arena's statistics at that point
(``mem_bytes_in_use``, ``mem_in_use_peak``, ``mem_arena_held``, and ``output_size``). A
profiling copy of the session runs the inputs twice: the first run plans the memory
pattern, the second is the steady state, whose allocations above what the arena held
before it are the activation peak. The session given is never profiled.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workbench.backends.base import Inputs, MemoryReport

if TYPE_CHECKING:
    from workbench.backends.onnxruntime.layers import TracedSession


def onnxruntime_memory(session: TracedSession, inputs: Inputs) -> MemoryReport:
    """Measure the steady-state run of a profiling copy of ``session``.

    Args:
        session: an onnxruntime backend session (not changed, not profiled).
        inputs: model inputs.

    Returns:
        A `MemoryReport`; unavailable when this build's profiler writes no allocator
        statistics (execution providers other than the CPU's may not).
    """
    if session.provider != "CPUExecutionProvider":
        # the profiler's statistics are the CPU arena's: a device's memory is not in them
        return MemoryReport.unavailable(
            f"onnxruntime's profiler reports only the CPU arena, not {session.provider}'s memory"
        )
    with session.profiled_trace(inputs, 2) as (trace_path, feeds):
        events = json.loads(trace_path.read_text())
    report = arena_report(events)
    if not report.measured:
        return report
    return dataclasses.replace(
        report,
        weights_bytes=sum(layer.params_bytes for layer in session.model.layers),
        input_bytes=sum(int(a.nbytes) for a in feeds.values()),
    )


def arena_report(events: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> MemoryReport:
    """The last run's arena statistics from an ORT profiling trace (a list of events).

    Args:
        events: the trace's events (``{"traceEvents": [...]}`` is accepted too).

    Returns:
        ``activation_peak_bytes``: the highest ``mem_bytes_in_use`` during the last
        ``model_run`` minus what was in use before it; ``reserved_bytes``: the highest
        ``mem_arena_held``. Unavailable when no kernel event carries them.
    """
    # some tools wrap the list in {"traceEvents": [...]}
    listed: Sequence[Mapping[str, Any]] = (
        events.get("traceEvents", []) if isinstance(events, Mapping) else events
    )
    kernels = sorted(
        (e for e in listed if e.get("cat") == "Node" and "mem_bytes_in_use" in e.get("args", {})),
        key=lambda e: e["ts"],
    )
    if not kernels:
        return MemoryReport.unavailable(
            "onnxruntime's profiler wrote no allocator statistics (mem_bytes_in_use) for "
            "this execution provider"
        )
    runs = sorted(e["ts"] for e in listed if e.get("name") == "model_run")
    start = runs[-1] if runs else kernels[0]["ts"]
    before = [e for e in kernels if e["ts"] < start]
    last = [e for e in kernels if e["ts"] >= start]
    base = int(before[-1]["args"]["mem_bytes_in_use"]) if before else 0
    peak = max(int(e["args"]["mem_bytes_in_use"]) for e in last)
    held = max(int(e["args"].get("mem_arena_held", 0)) for e in kernels)
    return MemoryReport(
        source="onnxruntime profiler: CPU arena bytes in use during the steady-state run",
        activation_peak_bytes=max(0, peak - base),
        reserved_bytes=held or None,
        notes=(
            "weights are the graph's initializers as stored; ORT's pre-packed copies are "
            "not counted",
        ),
    )
