"""The same 16-point sweep in process and on 1 and 2 Dask worker processes (issue 17).

digits-mlp, 8 variants (baseline, INT8 dynamic per-tensor / per-channel, INT8 static
MinMax / Entropy, FP16, 50% magnitude and 50% channel pruning) x onnxruntime and torch,
``budget_s`` of timing per point, one thread per backend. Each configuration starts from
an empty store, on a `LocalCluster` of this machine (loopback, one thread per worker)
whose workers have already imported the backends, so the wall clock is the sweep's own.

- ``in process``: `wb.sweep` without a cluster (the reference).
- ``1 worker``: every point on one worker process.
- ``2 workers, honest``: the default placement. Both workers are on this machine, so
  they take turns through the per-host lock: no faster than 1 worker, by design.
- ``2 workers, exclusive=False``: both measure at once. Expect close to 2x on 2 cores
  only for the work that is not timing-bound (building variants, evaluating); each
  point's timing runs for its fixed budget whatever else runs, and the two workers'
  timings disturb each other, which is why this is not the default.

    python benchmarks/cluster_sweep.py [--budget-s 0.3] [--quick]

``--quick`` runs 4 points with tiny budgets (a smoke test of the script, not a
measurement) and writes ``results/cluster_sweep.quick.*``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import write_results

import workbench as wb
from workbench.optimize.prune import ChannelPrune, MagnitudePrune
from workbench.optimize.quantize import Fp16, Int8Dynamic, Int8Static

VARIANTS: list[Any] = [
    "baseline",
    Int8Dynamic(),
    Int8Dynamic(per_channel=True),
    Int8Static(calibration="minmax"),
    Int8Static(calibration="entropy"),
    Fp16(),
    MagnitudePrune(sparsity=0.5),
    ChannelPrune(sparsity=0.5, finetune_epochs=1),
]
BACKENDS = ["onnxruntime", "torch"]


def _warm() -> None:
    """Import the backends and transforms (here or on a worker): no point pays for it."""
    import onnxruntime.quantization  # noqa: F401
    import torch  # noqa: F401

    import workbench.evaluation.sweep
    import workbench.optimize.prune
    import workbench.optimize.quantize  # noqa: F401


def _timed_sweep(store: Path, variants: list[Any], budget_s: float, **cluster: Any) -> dict:
    start = time.perf_counter()
    table = wb.sweep(
        wb.samples.load("digits-mlp"),
        variants,
        BACKENDS,
        store=store,
        resume=False,
        budget_s=budget_s,
        options={"threads": 1},
        **cluster,
    )
    wall_s = time.perf_counter() - start
    measured = table.df[table.df["error"].isna()]
    return {
        "wall_s": round(wall_s, 2),
        "points": len(table),
        "measured": len(measured),
        "workers": sorted(set(table.df.get("worker", [])) - {None}),
        "latency_ms": {
            f"{row.variant} / {row.backend}": round(row.latency_ms, 4)
            for row in measured.itertuples()
        },
    }


def _on_cluster(workers: int, variants: list[Any], budget_s: float, exclusive: bool) -> dict:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as folder,
    ):
        client.wait_for_workers(workers)
        client.run(_warm)
        store = Path(folder) / "runs.sqlite"
        return _timed_sweep(store, variants, budget_s, cluster=client, exclusive=exclusive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=0.3, help="timing per point")
    parser.add_argument("--quick", action="store_true", help="4 points, tiny budgets")
    args = parser.parse_args()
    variants = VARIANTS[:2] if args.quick else VARIANTS
    budget_s = 0.02 if args.quick else args.budget_s
    _warm()
    with tempfile.TemporaryDirectory() as folder:
        runs = {"in process": _timed_sweep(Path(folder) / "runs.sqlite", variants, budget_s)}
    runs["1 worker"] = _on_cluster(1, variants, budget_s, exclusive=True)
    runs["2 workers, honest"] = _on_cluster(2, variants, budget_s, exclusive=True)
    runs["2 workers, exclusive=False"] = _on_cluster(2, variants, budget_s, exclusive=False)
    one = runs["1 worker"]["wall_s"]
    lines = ["| configuration | points (measured) | workers used | wall s | vs 1 worker |"]
    lines.append("|---|---:|---:|---:|---:|")
    for name, run in runs.items():
        ratio = f"{one / run['wall_s']:.2f}x" if run["wall_s"] else "-"
        lines.append(
            f"| {name} | {run['points']} ({run['measured']}) | {len(run['workers'])} "
            f"| {run['wall_s']:.1f} | {ratio} |"
        )
    table = "\n".join(lines)
    print(table)
    data = {"budget_s": budget_s, "variants": [str(v) for v in variants], "runs": runs}
    write_results("cluster_sweep", data, table, quick=args.quick)


if __name__ == "__main__":
    main()
