"""Which kernel a convolution runs, chosen by timing the candidates here, once per machine.

A channels-last convolution can often run several ways (`cpu_ops._conv_nhwc`): im2col +
GEMM in blocks of output rows (two block sizes when its matrix outgrows the smaller),
Winograd F(2x2, 3x3) for a 3x3 stride-1 one, a plain GEMM for a 1x1, an implicit GEMM
on the packed weight (`packed_gemm.conv_packed`, float32 on AVX-512) and a direct loop
(`depthwise.grouped_nhwc` with one group) for small ones. Which is fastest depends on
the shape, the thread count and the CPU, so with ``conv_strategy="measure"`` (the
default) the planning run builds every candidate on the layer's real input and packed
weights, times a few calls of each and keeps the fastest (median). The decision is
written to ``$WORKBENCH_CACHE_DIR/numba_conv_strategy.json`` (default
``~/.cache/workbench``) keyed by the layer's geometry, dtype, batch, thread count, GEMM
kind, CPU model and workbench version, so the next compile on this machine reads it and
times nothing. ``conv_strategy="rules"`` keeps the fixed rules (Winograd for 3x3 stride 1
with at least `cpu_ops.WINOGRAD_MIN_CHANNELS` channels, else im2col), for plans that
do not depend on the machine's noise.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The two ways to choose (`NumbaOptions.conv_strategy`).
MODES = ("measure", "rules")
#: After one warm-up call each (which loads or compiles the kernels), the candidates take
#: turns for at most `REPEATS` rounds, fewer (at least one) when the warm-up round times
#: that many rounds would pass `ROUNDS_BUDGET_S`: at resnet18's batch 32 five rounds made
#: the first compile 20 s longer on the loaded 2-core VM.
REPEATS = 5
ROUNDS_BUDGET_S = 0.2
CACHE_FILE = "numba_conv_strategy.json"


@dataclass(frozen=True)
class Decision:
    """The strategy a convolution runs and why.

    Attributes:
        strategy: the candidate's name (``"winograd"``, ``"im2col:small"``, ...).
        times_ms: median milliseconds per call of each candidate timed (empty under
            the rules, or when a layer has one candidate).
        source: ``"measured"`` (timed in this compile), ``"cache"`` (read from the
            strategy cache on disk), ``"rules"`` (the fixed rules) or ``"only
            candidate"`` (nothing to choose from).
        rules: what the fixed rules would run (empty: the same as ``strategy``).
    """

    strategy: str
    times_ms: Mapping[str, float] = field(default_factory=dict)
    source: str = "rules"
    rules: str = ""

    def note(self) -> str:
        """One line for a profile's note column: the choice and the candidates' times."""
        why = self.source
        if self.rules and self.rules != self.strategy:
            why += f", the rules' {self.rules}"
        if not self.times_ms:
            return f"conv strategy {self.strategy} ({why})"
        times = ", ".join(f"{name} {ms:.3g}" for name, ms in sorted(self.times_ms.items()))
        return f"conv strategy {self.strategy} ({why}; ms: {times})"

    def to_dict(self) -> dict[str, Any]:
        rules = self.rules or self.strategy
        return {"strategy": self.strategy, "times_ms": dict(self.times_ms), "source": self.source,
                "rules": rules}  # fmt: skip


def time_call_ms(name: str, run: Callable[[], Any]) -> float:
    """Milliseconds one call of ``run`` takes (``name``: the candidate, for fake timers)."""
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1e3


#: The timer `choose` uses: ``timer(name, run) -> ms`` must call ``run`` once. Tests
#: replace it with a deterministic one.
TIMER: Callable[[str, Callable[[], Any]], float] = time_call_ms


def choose(
    key: str, candidates: Mapping[str, Callable[[], Callable[[], Any]]], rules: str = ""
) -> Decision:
    """The fastest of ``candidates`` on this machine: read from the cache, else timed.

    Args:
        key: the layer's cache key (`layer_key`).
        candidates: name -> a builder returning the bound call of that strategy (on the
            layer's real arrays). Builders run in order; each call's output overwrites the
            last, so the caller's output holds a valid result whichever wins.
        rules: the candidate the fixed rules pick, recorded beside the choice.

    Returns:
        The `Decision`; a cached decision naming a strategy no longer offered is timed again.
    """
    if len(candidates) == 1:
        return Decision(next(iter(candidates)), {}, "only candidate", rules)
    cached = _read_cache(_cache_path()).get(key)
    if cached is not None and cached.get("strategy") in candidates:
        return Decision(cached["strategy"], cached.get("times_ms", {}), "cache", rules)
    runs = {name: build() for name, build in candidates.items()}
    started = time.perf_counter()
    for run in runs.values():
        run()  # warm-up: the kernels load (or compile) and the workspaces are touched
    warm_round_s = time.perf_counter() - started
    rounds = max(1, min(REPEATS, int(ROUNDS_BUDGET_S / max(warm_round_s, 1e-9))))
    # rounds of one call each, so that a load change on the machine hits every candidate
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].append(TIMER(name, run))
    times = {name: statistics.median(values) for name, values in samples.items()}
    best = min(times, key=lambda name: times[name])
    decision = Decision(best, times, "measured", rules)
    _write_cache(_cache_path(), key, decision)
    return decision


def layer_key(geometry: Mapping[str, Any]) -> str:
    """The cache key of a layer: its ``geometry`` (shapes, strides, dtype, batch, threads,
    GEMM kind...) with this machine's CPU model and the workbench and Numba versions."""
    return json.dumps({**geometry, **_machine()}, sort_keys=True, separators=(",", ":"))


@functools.cache
def _machine() -> dict[str, str]:
    """This machine's part of a key: CPU model, workbench's and Numba's versions."""
    from importlib import metadata

    import numba

    from workbench.backends.cpus import cpu_model

    try:  # the distribution's name (`workbench.machine.DISTRIBUTION`, a layer above)
        version = metadata.version("inference-workbench")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"cpu": cpu_model(), "workbench": version, "numba": numba.__version__}


def _cache_path() -> Path:
    from workbench.backends.base import cache_dir

    return cache_dir() / CACHE_FILE


#: path -> (modification time, entries): the file is parsed once per process and change.
_LOADED: dict[Path, tuple[float, dict[str, Any]]] = {}


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return {}
    loaded = _LOADED.get(path)
    if loaded is None or loaded[0] != mtime:
        try:
            entries = json.loads(path.read_text(encoding="utf-8")).get("entries", {})
        except (OSError, ValueError, AttributeError):
            entries = {}  # a damaged cache is measured again and rewritten
        loaded = _LOADED[path] = (mtime, entries if isinstance(entries, dict) else {})
    return loaded[1]


def _write_cache(path: Path, key: str, decision: Decision) -> None:
    """Add one entry (read, merge, replace atomically); an unwritable folder is skipped."""
    entries = dict(_read_cache(path))
    entries[key] = decision.to_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"version": 1, "entries": entries}), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        return  # the decision still holds for this session; the next compile measures
    _LOADED.pop(path, None)
