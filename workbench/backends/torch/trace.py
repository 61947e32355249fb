"""``torch.profiler`` glue: Chrome traces written outside workbench read into per-layer
timings, and the profiler's native chatter kept off the terminal.

`workbench.profiling.profile.Profile.from_torch_trace` turns an import into a `Profile`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from workbench.backends.base import ImportedTrace, LayerTiming
from workbench.errors import InvalidArgumentError

_RUN_MARKERS = ("ProfilerStep#", "wb::run#")

#: what kineto prints on every profiler start and stop, whatever the log level says, and
#: the allocator's line when a tensor made before the profiler started (the model's cache,
#: garbage a collection frees meanwhile) is freed inside it: memory is read from the
#: allocations recorded inside, so a free of an unrecorded block changes no number shown
PROFILER_NOISE = (
    b"USDT:",
    b"STAGE:",
    b"External init callback must run in same thread",
    b"allocated before the profiling started",
)


class _QuietStderr:
    """File descriptor 2 sent to a temporary file while any thread profiles (counted)."""

    lock = threading.Lock()
    depth = 0
    saved = -1
    sink: IO[bytes] | None = None


@contextmanager
def quiet_profiler() -> Iterator[None]:
    """Keep the native profiler's start/stop lines off the terminal and the server's log.

    Kineto writes ``USDT: ... profiler_start`` and "External init callback must run in
    same thread" to file descriptor 2 from C++, past ``sys.stderr`` and past every log
    level. While any thread is inside this block, descriptor 2 goes to a temporary file;
    when the last one leaves, everything else written meanwhile (by any thread) is passed
    on to the real stderr, so nothing but the profiler's chatter is lost.
    """
    state = _QuietStderr
    with state.lock:
        if state.depth == 0:
            sys.stderr.flush()
            try:
                state.saved = os.dup(2)
            except OSError:  # no descriptor 2 (a daemon): nothing reaches a terminal anyway
                state.saved = -1
            else:
                state.sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the last to leave
                os.dup2(state.sink.fileno(), 2)
        state.depth += 1
    try:
        yield
    finally:
        with state.lock:
            state.depth -= 1
            if state.depth == 0 and state.sink is not None:
                sys.stderr.flush()
                os.dup2(state.saved, 2)
                os.close(state.saved)
                state.sink.seek(0)
                kept = [
                    line
                    for line in state.sink.read().splitlines(keepends=True)
                    if not any(noise in line for noise in PROFILER_NOISE)
                ]
                state.sink.close()
                state.sink = None
                if kept:
                    os.write(2, b"".join(kept))


def import_trace(path: str | Path) -> ImportedTrace:
    """Per-layer timings from a ``torch.profiler`` Chrome trace (``prof.export_chrome_trace``).

    Layers are, in order of preference: ``record_function`` ranges (workbench's own
    ``wb::<module path>`` ranges, or the user's), the ``nn.Module: <Class>_<n>`` ranges of
    a trace recorded ``with_stack=True``, or else the top-level aten ops (the note then
    says the table is per op, not per module). Nested ranges count their own time only,
    so rows partition the traced time. Runs are split on ``ProfilerStep#N`` /
    ``wb::run#N`` ranges; without them, the n-th occurrence of a layer is run n.

    Args:
        path: the JSON file.

    Returns:
        An `ImportedTrace` (batch size unknown: 0).

    Raises:
        InvalidArgumentError: the file holds no usable events; also a ``ValueError``.

    Example:
        >>> [t.layer for t in import_trace("trace.json").timings]
    """
    data = json.loads(Path(path).read_text())
    events = data.get("traceEvents", []) if isinstance(data, dict) else data
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    markers = [e for e in spans if str(e.get("name", "")).startswith(_RUN_MARKERS)]
    layers, how = _torch_layer_events(spans)
    if not layers:
        raise InvalidArgumentError(
            f"{path} holds no torch.profiler ranges or ops: pass a Chrome trace that "
            "torch.profiler wrote (prof.export_chrome_trace)"
        )
    samples = _exclusive_samples(layers, markers)
    timings = [
        LayerTiming(name, op, tuple(s), {"scope": "leaf"}) for (name, op), s in samples.items()
    ]
    if markers:
        totals = [m["dur"] / 1e3 for m in sorted(markers, key=lambda e: e["ts"])]
    else:
        runs = max(len(s) for s in samples.values())
        totals = [sum(s[i] for s in samples.values() if i < len(s)) for i in range(runs)]
    notes = [
        f"imported from torch.profiler trace {Path(path).name}; batch size unknown (0)",
        "end-to-end times come from the profiled runs themselves (instrumented)",
    ]
    if how == "aten ops":
        notes.append("the trace has no module ranges: the table is per aten op")
    return ImportedTrace(
        model=Path(path).stem,
        backend="torch",
        device="cuda:0" if any(e.get("cat") == "kernel" for e in spans) else "cpu",
        batch_size=0,
        timings=tuple(timings),
        run_ms=tuple(totals),
        method=f"imported torch.profiler trace ({how}, {len(totals)} runs)",
        notes=tuple(notes),
    )


def _torch_layer_events(spans: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    annotations = [
        e
        for e in spans
        if e.get("cat") == "user_annotation" and not str(e["name"]).startswith(_RUN_MARKERS)
    ]
    if annotations:
        for e in annotations:
            e["_layer"] = str(e["name"]).removeprefix("wb::")
            e["_op"] = "record_function"
        return annotations, "record_function ranges"
    modules = [e for e in spans if e.get("cat") == "python_function" and "nn.Module: " in e["name"]]
    if modules:
        for e in modules:
            label = e["name"].split("nn.Module: ", 1)[1]
            e["_layer"], e["_op"] = label, label.rsplit("_", 1)[0]
        return modules, "nn.Module ranges"
    ops = [e for e in spans if e.get("cat") == "cpu_op"]
    for e in ops:
        e["_layer"] = e["_op"] = str(e["name"])
    return _top_level(ops), "aten ops"


def _top_level(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    ends: dict[Any, float] = defaultdict(float)
    for e in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
        if e["ts"] >= ends[e.get("tid")]:
            result.append(e)
            ends[e.get("tid")] = e["ts"] + e["dur"]
    return result


def _exclusive_samples(
    events: list[dict[str, Any]], markers: list[dict[str, Any]]
) -> dict[tuple[str, str], list[float]]:
    """Own time (ms) of each range per run: its duration minus its directly nested ranges."""
    ordered = sorted(events, key=lambda e: (e.get("tid"), e["ts"], -e["dur"]))
    own = {id(e): float(e["dur"]) for e in ordered}
    stacks: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in ordered:
        stack = stacks[e.get("tid")]
        while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
            stack.pop()
        if stack:
            own[id(stack[-1])] -= float(e["dur"])
        stack.append(e)
    spans = sorted((m["ts"], m["ts"] + m["dur"]) for m in markers)
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    if spans:
        per_run: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * len(spans))
        for e in ordered:
            run = next((i for i, (s, end) in enumerate(spans) if s <= e["ts"] <= end), None)
            if run is not None:
                per_run[(e["_layer"], e["_op"])][run] += max(0.0, own[id(e)]) / 1e3
        return dict(per_run)
    for e in sorted(ordered, key=lambda e: e["ts"]):
        samples[(e["_layer"], e["_op"])].append(max(0.0, own[id(e)]) / 1e3)
    return dict(samples)
