"""Where an embedding lookup falls out of cache (issue 30 item 3): the cache sweep.

Times an embedding-bag lookup (torch eager ``F.embedding_bag`` and the Numba kernel, each
at its own default threads, in this process, one after the other at each point) over
tables from an eighth of the L2 to 8x the L3 (float32, width 32, bags of 8 uniform ids
from a pool covering the table) at batches 256 and 2,048, and writes latency and
effective GB/s per point, the cliffs found in each curve (`find_cliffs`, from the data
alone) and, per reported L2/L3 size, the nearest cliff and its ratio. Target (issue 30):
the cliffs land within 2x of the cache sizes the machine reports. The memory bandwidth
drawn is the machine's measured ceiling (``machine_ceilings``, re-measured here).

    python benchmarks/cache_sweep.py [--quick] [--figure results/cache_sweep.html]

Run it on a quiet machine: a busy one moves the cliffs (other processes share the L3)
and flattens the curves. ``--quick`` (4x size steps, one batch, small budgets) is a
smoke test of the script, written to ``results/cache_sweep.quick.*``.
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd
from _common import write_results

from workbench.machine import cache_sizes
from workbench.profiling.cache_sweep import cache_sweep, default_table_bytes
from workbench.profiling.ceilings import machine_ceilings
from workbench.units import format_bytes


def _table(points: Any, check: Any, bandwidth: float) -> str:
    lines = [
        f"Measured memory bandwidth: {bandwidth / 1e9:.1f} GB/s. Caches reported: "
        + ", ".join(f"{k} {format_bytes(v)}" for k, v in cache_sizes().items()),
        "",
        "| level | reported | nearest cliff found | ratio | curves with a cliff | within 2x |",
        "|---|---|---|---|---|---|",
    ]
    for row in check.itertuples():
        missing = pd.isna(row.detected_bytes)
        found = "none" if missing else format_bytes(row.detected_bytes)
        ratio = "" if missing else f"{row.ratio:.2f}"
        lines.append(
            f"| {row.level} | {format_bytes(row.reported_bytes)} | {found} | {ratio} | "
            f"{row.curves_with_cliff} | {'yes' if row.within_2x else 'no'} |"
        )
    lines += [
        "",
        "| runtime | batch | table | median ms | runs | GB/s | ns/lookup | noisy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points.itertuples():
        lines.append(
            f"| {p.runtime} | {p.batch:,} | {format_bytes(p.table_bytes)} | {p.latency_ms:.4g} | "
            f"{p.samples} | {p.gb_per_s:.3g} | {p.ns_per_lookup:.3g} | {p.noisy or ''} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4x size steps, one batch")
    parser.add_argument("--figure", help="also write the cache_cliffs figure (HTML) there")
    args = parser.parse_args()
    sizes = default_table_bytes(cache_sizes())
    ceilings = machine_ceilings("cpu", refresh=not args.quick)
    sweep = cache_sweep(
        sizes[::2] if args.quick else sizes,
        batches=(2048,) if args.quick else (256, 2048),
        budget_s=0.1 if args.quick else 0.5,
        bandwidth_bytes_per_s=ceilings.bandwidth_bytes_per_s,
    )
    check = sweep.level_check()
    print(check.to_string(index=False))
    print(sweep.cliffs.to_string(index=False))
    if args.figure:
        from workbench.viz.embeddings import cache_cliffs

        cache_cliffs(sweep).write_html(args.figure, include_plotlyjs="cdn")
    write_results(
        "cache_sweep",
        {"sweep": sweep.to_dict(), "level_check": check.to_dict(orient="records")},
        _table(sweep.points, check, ceilings.bandwidth_bytes_per_s),
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
