"""Where an embedding lookup falls out of cache: table size x batch -> latency and GB/s.

`cache_sweep` times an embedding-bag lookup (torch eager ``F.embedding_bag`` and the
Numba kernel `workbench.backends.numba.embedding_bag.embedding_bag`) over tables from a
fraction of the L2 to several times the L3, at a few batch sizes, with uniform ids so
every row is equally likely and the working set is the whole table. Each timed call
reads the next batch of a pool of ids covering the table, so rows are not reused from
the previous call. The effective rate is the bytes the lookups read (``lookups x width x
itemsize``) over the median latency.

`find_cliffs` finds the cliffs in each curve from the data alone (a piecewise-constant
fit of log rate over log size, steps of at least ``min_drop``) and then names each one
after the nearest cache level this machine reports (`workbench.machine.cache_sizes`),
with the ratio between the two: the sweep's check is that the L2 and L3 cliffs land
within 2x of the reported sizes. Timings run in this process, one runtime after the
other at each point, each at its own default threads.

Example:
    >>> sweep = wb.cache_sweep(batches=(2048,))
    >>> sweep.cliffs[["runtime", "level", "detected_bytes", "reported_bytes", "ratio"]]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ParameterError
from workbench.profiling.results import dump_json, load_json

__all__ = [
    "RUNTIMES",
    "CacheSweep",
    "cache_sweep",
    "cliffs_table",
    "default_table_bytes",
    "find_cliffs",
]

#: the lookups the sweep can time: torch eager and the fused Numba kernel
RUNTIMES = ("torch", "numba")
#: a cliff is a step down of at least this fraction of the rate before it
MIN_DROP = 0.2
#: at most this many plateaus per curve (L1/L2, L3, DRAM and one spare: a TLB step)
MAX_PLATEAUS = 4
#: a plateau between two cliffs spans at least this many doublings of the table size
MIN_PLATEAU_OCTAVES = 2.0
#: the ids pool holds at most this many ids (8 bytes each), however large the table
MAX_POOL_IDS = 8 << 20
_CLIFF_COLUMNS = [
    "runtime",
    "batch",
    "level",
    "detected_bytes",
    "reported_bytes",
    "ratio",
    "within_2x",
    "gb_per_s_before",
    "gb_per_s_after",
]


def default_table_bytes(caches: Mapping[str, int]) -> list[int]:
    """Powers of two from an eighth of the L2 to 8x the L3 (a fixed span without sizes)."""
    low = caches.get("L2", 1 << 20) // 8
    high = caches.get("L3", 32 << 20) * 8
    return [1 << e for e in range(int(math.log2(low)), int(math.log2(high)) + 1)]


def find_cliffs(
    table_bytes: Sequence[float],
    rates: Sequence[float],
    caches: Mapping[str, int],
    min_drop: float = MIN_DROP,
) -> list[dict[str, Any]]:
    """The cliffs of one rate-vs-size curve, each named after the nearest cache level.

    The curve (sorted by size) is fitted in log-log by 1 to `MAX_PLATEAUS` plateaus
    (least squares; a plateau between two cliffs spans `MIN_PLATEAU_OCTAVES` doublings
    at least, so a gradual step is one cliff, not two); the most plateaus whose every
    step is a drop of at least ``min_drop`` wins. A cliff sits between the last size of
    one plateau and the first of the next (their geometric mean). Nothing about the
    cache sizes steers the fit: they only name the cliffs found.

    Args:
        table_bytes: the table sizes, in bytes.
        rates: the rate at each size (GB/s, or anything proportional).
        caches: reported cache sizes by level (``{"L2": 1048576, "L3": 33554432}``).
        min_drop: the smallest step down that counts, as a fraction of the rate before.

    Returns:
        One dict per cliff, smallest first: ``level`` (the nearest reported level, ""
        when none is reported), ``detected_bytes``, ``reported_bytes``, ``ratio``
        (detected / reported), ``within_2x``, ``rate_before`` and ``rate_after`` (the
        plateaus' geometric means).

    Example:
        >>> find_cliffs([1, 2, 4, 8], [9, 9, 3, 3], {"L2": 3})[0]["detected_bytes"]
        2.828...
    """
    order = np.argsort(np.asarray(table_bytes, dtype=float))
    x = np.log(np.asarray(table_bytes, dtype=float)[order])
    y = np.log(np.asarray(rates, dtype=float)[order])
    if len(x) < 2 or not np.isfinite(y).all():
        return []
    for plateaus in range(min(MAX_PLATEAUS, len(x)), 1, -1):
        bounds = _plateaus(x, y, plateaus)
        if bounds is None:
            continue
        means = [float(y[a:b].mean()) for a, b in bounds]
        if all(
            after <= before + math.log(1.0 - min_drop)
            for before, after in itertools.pairwise(means)
        ):
            return [
                _named(math.exp((x[b - 1] + x[b]) / 2), before, after, caches)
                for (_, b), (before, after) in zip(bounds, itertools.pairwise(means), strict=False)
            ]
    return []


def _plateaus(x: np.ndarray, y: np.ndarray, count: int) -> list[tuple[int, int]] | None:
    """``count`` consecutive index ranges minimising the squared error of ``y`` around
    their means; a plateau between two others spans `MIN_PLATEAU_OCTAVES` of ``x`` (log
    sizes) at least. None when no split satisfies that."""
    n = len(y)
    prefix, squares = np.concatenate([[0], np.cumsum(y)]), np.concatenate([[0], np.cumsum(y**2)])
    shortest = MIN_PLATEAU_OCTAVES * math.log(2.0) - 1e-9

    def cost(a: int, b: int, interior: bool) -> float:
        if interior and x[b - 1] - x[a] < shortest:
            return math.inf  # a gradual step split in two is not a plateau
        total = prefix[b] - prefix[a]
        return float(squares[b] - squares[a] - total * total / (b - a))

    # (end, plateaus) -> (squared error, ranges) of the best fit of y[:end]
    best: dict[tuple[int, int], tuple[float, list[tuple[int, int]]]] = {}
    for end in range(1, n + 1):
        best[(end, 1)] = (cost(0, end, False), [(0, end)])
    for k in range(2, count + 1):
        for end in range(k, n + 1):
            interior = k < count or end < n  # only the last plateau may be short
            options = [
                (best[(start, k - 1)][0] + cost(start, end, interior), best[(start, k - 1)][1])
                for start in range(k - 1, end)
            ]
            error, ranges = min(options, key=lambda option: option[0])
            start = ranges[-1][1]
            best[(end, k)] = (error, [*ranges, (start, end)])
    error, ranges = best[(n, count)]
    return ranges if math.isfinite(error) else None


def _named(size: float, before: float, after: float, caches: Mapping[str, int]) -> dict[str, Any]:
    level = min(caches, key=lambda name: abs(math.log(size / caches[name])), default="")
    reported = caches.get(level, 0)
    ratio = size / reported if reported else float("nan")
    return {
        "level": level,
        "detected_bytes": size,
        "reported_bytes": reported,
        "ratio": ratio,
        "within_2x": bool(reported) and 0.5 <= ratio <= 2.0,
        "rate_before": math.exp(before),
        "rate_after": math.exp(after),
    }


@dataclass(frozen=True)
class CacheSweep:
    """The lookups' latency and effective rate over table size x batch, and the cliffs.

    Attributes:
        points: one row per (runtime, batch, table size): ``runtime, batch, table_bytes,
            rows, lookups, bytes_read, latency_ms`` (median), ``p90_ms``, ``samples``,
            ``noisy`` (the `Measurement`'s verdict, "" when clean), ``gb_per_s``
            (``bytes_read / latency``, 1e9 bytes) and ``ns_per_lookup``.
        cliffs: one row per detected cliff: ``runtime, batch, level, detected_bytes,
            reported_bytes, ratio, within_2x, gb_per_s_before, gb_per_s_after``.
        caches: the cache sizes this machine reports, by level, in bytes.
        bandwidth_bytes_per_s: the machine's measured memory bandwidth, None when not
            measured (with ``bandwidth_note`` saying why).
        width: the tables' width (columns).
        bag: ids per bag.
        itemsize: bytes per table element (4: float32).
        ids: how ids were drawn (``"uniform"`` or ``"zipf"``).
        environment: the CPU, the load average during the sweep, the threads.
    """

    points: pd.DataFrame
    cliffs: pd.DataFrame
    caches: Mapping[str, int]
    bandwidth_bytes_per_s: float | None
    width: int
    bag: int
    itemsize: int = 4
    ids: str = "uniform"
    bandwidth_note: str = ""
    environment: Mapping[str, Any] = field(default_factory=dict)

    def level_check(self) -> pd.DataFrame:
        """Per reported L2/L3 level: the nearest cliff found on any curve and its ratio."""
        rows = []
        for level in ("L2", "L3"):
            if level not in self.caches:
                continue
            found = self.cliffs[self.cliffs["level"] == level]
            best = found.iloc[(found["ratio"].map(math.log).abs()).argsort()[:1]]
            rows.append(
                {
                    "level": level,
                    "reported_bytes": self.caches[level],
                    "detected_bytes": float(best["detected_bytes"].iloc[0]) if len(best) else None,
                    "ratio": float(best["ratio"].iloc[0]) if len(best) else None,
                    "curves_with_cliff": int(
                        found[["runtime", "batch"]].drop_duplicates().shape[0]
                    ),
                    "within_2x": bool(len(best)) and bool(best["within_2x"].iloc[0]),
                }
            )
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        from workbench.units import format_bytes

        parts = [f"CacheSweep: {len(self.points)} points"]
        for row in self.level_check().itertuples():
            found = (
                "no cliff found"
                if row.ratio is None
                else f"cliff at {format_bytes(row.detected_bytes)} ({row.ratio:.2f}x)"
            )
            parts.append(f"{row.level} {format_bytes(row.reported_bytes)}: {found}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "points": self.points.to_dict(orient="records"),
            "cliffs": self.cliffs.to_dict(orient="records"),
            "caches": dict(self.caches),
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "bandwidth_note": self.bandwidth_note,
            "width": self.width,
            "bag": self.bag,
            "itemsize": self.itemsize,
            "ids": self.ids,
            "environment": dict(self.environment),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheSweep:
        """Rebuild from `to_dict` output."""
        return cls(
            points=pd.DataFrame(data["points"]),
            cliffs=pd.DataFrame(data["cliffs"], columns=_CLIFF_COLUMNS),
            caches={k: int(v) for k, v in data["caches"].items()},
            bandwidth_bytes_per_s=data.get("bandwidth_bytes_per_s"),
            bandwidth_note=data.get("bandwidth_note", ""),
            width=int(data["width"]),
            bag=int(data["bag"]),
            itemsize=int(data.get("itemsize", 4)),
            ids=data.get("ids", "uniform"),
            environment=data.get("environment", {}),
        )

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The sweep as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> CacheSweep:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "a cache sweep"))


def cache_sweep(
    table_bytes: Sequence[int] | None = None,
    batches: Sequence[int] = (256, 2048),
    *,
    runtimes: Sequence[str] = RUNTIMES,
    width: int = 32,
    bag: int = 8,
    ids: str = "uniform",
    budget_s: float = 0.3,
    seed: int = 0,
    caches: Mapping[str, int] | None = None,
    bandwidth_bytes_per_s: float | None = None,
    min_drop: float = MIN_DROP,
) -> CacheSweep:
    """Time embedding-bag lookups over table size x batch and find the cache cliffs.

    Runs on the CPU, in this process; allocates one float32 table at a time (the
    largest is ``max(table_bytes)``) and a pool of ids covering it. Each point
    is a `Measurement` (median of repeats within ``budget_s``, after warm-up).

    Args:
        table_bytes: table sizes in bytes (rounded down to whole rows); default
            `default_table_bytes` (an eighth of the L2 to 8x the L3).
        batches: bags per call.
        runtimes: a subset of `RUNTIMES`.
        width: columns per row (float32).
        bag: ids per bag (lookups per call = batch x bag).
        ids: ``"uniform"`` (every row equally likely: the working set is the table, so
            the cliffs show) or ``"zipf"`` (hot rows scattered over the table, weight
            ``1 / (rank + 1) ** 1.1`` as in the samples' data: the hot rows stay cached,
            which softens the cliffs).
        budget_s: time budget of each point's repeats, in seconds.
        seed: the ids' seed.
        caches: cache sizes by level; default: the ones this machine reports
            (`workbench.machine.cache_sizes`).
        bandwidth_bytes_per_s: the memory bandwidth to draw; default: the machine's
            measured ceiling (`machine_ceilings`, cached; a few seconds if not).
        min_drop: the smallest step down that counts as a cliff (`find_cliffs`).

    Returns:
        A frozen `CacheSweep`.

    Raises:
        ParameterError: an unknown runtime or ids, a size, batch, width or bag not positive,
            or a table too large for this machine's free memory (said before allocating).

    Example:
        >>> sweep = wb.cache_sweep(batches=(2048,), budget_s=0.2)
        >>> sweep.level_check()
    """
    import os

    import psutil

    from workbench.machine import cache_sizes, cpu_info

    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown or not runtimes:
        raise ParameterError(f"runtimes must be some of {list(RUNTIMES)}, got {list(runtimes)}")
    if ids not in ("uniform", "zipf"):
        raise ParameterError(f"ids must be 'uniform' or 'zipf', got {ids!r}")
    caches = dict(cache_sizes() if caches is None else caches)
    sizes = sorted(set(default_table_bytes(caches) if table_bytes is None else table_bytes))
    for name, values in (
        ("table_bytes", sizes),
        ("batches", batches),
        ("width", [width]),
        ("bag", [bag]),
    ):
        if not values or min(values) <= 0:
            raise ParameterError(f"{name} must be positive, got {list(values)}")
    free = psutil.virtual_memory().available
    if 2 * max(sizes) > free:
        raise ParameterError(
            f"a {max(sizes) / 2**20:,.0f} MiB table (twice that with the ids) does not fit the "
            f"{free / 2**20:,.0f} MiB of free memory; pass smaller table_bytes"
        )
    note = ""
    if bandwidth_bytes_per_s is None:
        from workbench.profiling.ceilings import machine_ceilings

        try:
            bandwidth_bytes_per_s = machine_ceilings("cpu").bandwidth_bytes_per_s
        except Exception as exc:  # the sweep stands without the line to draw
            note = f"memory bandwidth unavailable: {type(exc).__name__}: {exc}"
    rng = np.random.default_rng(seed)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for size in sizes:
        table_rows = max(1, size // (width * 4))
        table = rng.standard_normal((table_rows, width), dtype=np.float32)
        for batch in batches:
            pool = _ids_pool(rng, table_rows, batch, bag, ids)
            for runtime in runtimes:
                rows.append(_point(runtime, table, pool, batch, bag, budget_s))
        del table
    points = pd.DataFrame(rows)
    cliffs = cliffs_table(points, caches, min_drop)
    environment = {
        "cpu": cpu_info()["model"],
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }
    return CacheSweep(
        points, cliffs, caches, bandwidth_bytes_per_s, width, bag, 4, ids, note, environment
    )


def _ids_pool(
    rng: np.random.Generator, rows: int, batch: int, bag: int, ids: str = "uniform"
) -> np.ndarray:
    """Batches of ids, ``(calls, batch, bag)``: enough calls to draw twice as many ids as
    rows (so a call does not find the last one's rows cached), within `MAX_POOL_IDS`."""
    per_call = batch * bag
    calls = int(np.clip(math.ceil(2 * rows / per_call), 4, max(4, MAX_POOL_IDS // per_call)))
    if ids == "zipf":
        from workbench.loaders.rec_data import zipf_ids

        return zipf_ids(rng, rows, (calls, batch, bag), rng.permutation(rows))
    return rng.integers(0, rows, (calls, batch, bag), dtype=np.int64)


def _point(
    runtime: str, table: np.ndarray, pool: np.ndarray, batch: int, bag: int, budget_s: float
) -> dict[str, Any]:
    from workbench.profiling.timer import Timer

    run = _runner(runtime, table, pool)
    measurement = Timer(run, budget_s=budget_s, warmup=3, label=f"{runtime} lookup").measure()
    lookups = batch * bag
    bytes_read = lookups * table.shape[1] * table.itemsize
    median = measurement.median
    return {
        "runtime": runtime,
        "batch": batch,
        "table_bytes": int(table.nbytes),
        "rows": int(table.shape[0]),
        "lookups": lookups,
        "bytes_read": bytes_read,
        "latency_ms": median,
        "p90_ms": measurement.p90,
        "samples": measurement.n,
        "noisy": measurement.verdict,
        "gb_per_s": bytes_read / (median * 1e-3) / 1e9,
        "ns_per_lookup": median * 1e6 / lookups,
    }


def _runner(runtime: str, table: np.ndarray, pool: np.ndarray) -> Callable[[], Any]:
    """A zero-argument call that looks up the pool's next batch (cycling)."""
    calls = len(pool)
    state = {"call": 0}
    if runtime == "torch":
        import torch
        import torch.nn.functional as F

        weight, ids = torch.from_numpy(table), torch.from_numpy(pool)

        def run() -> Any:
            state["call"] = (state["call"] + 1) % calls
            return F.embedding_bag(ids[state["call"]], weight, mode="sum")

        return run
    from workbench.backends.numba.embedding_bag import embedding_bag

    def run_numba() -> Any:
        state["call"] = (state["call"] + 1) % calls
        return embedding_bag(table, pool[state["call"]], mode="sum")

    return run_numba


def cliffs_table(
    points: pd.DataFrame, caches: Mapping[str, int], min_drop: float = MIN_DROP
) -> pd.DataFrame:
    """`find_cliffs` on each (runtime, batch) curve of ``points`` (`CacheSweep.points`):
    one row per cliff, the columns of `CacheSweep.cliffs`."""
    rows = []
    for (runtime, batch), curve in points.groupby(["runtime", "batch"], sort=False):
        for cliff in find_cliffs(curve["table_bytes"], curve["gb_per_s"], caches, min_drop):
            rows.append(
                {
                    "runtime": runtime,
                    "batch": int(batch),
                    **{k: cliff[k] for k in ("level", "detected_bytes", "reported_bytes")},
                    "ratio": cliff["ratio"],
                    "within_2x": cliff["within_2x"],
                    "gb_per_s_before": cliff["rate_before"],
                    "gb_per_s_after": cliff["rate_after"],
                }
            )
    return pd.DataFrame(rows, columns=_CLIFF_COLUMNS)
