"""Roofline honesty on the sample models: no layer above the measured roof.

For each sample and CPU backend at batch 32 the script profiles per layer (which adds the
roofline with this machine's ceilings) and reports the highest ``roof_fraction`` and its
layer, whether the ceilings had to be re-measured, and the ceilings themselves: the best
measured fp32 FLOP/s and bandwidth (the max over several GEMM shapes and libraries, and
read/write/copy probes, repeated until stable), next to the theoretical peak from the
CPU's cores, clock and vector width. Target (issue 12): every fraction <= 1.05
(`workbench.profiling.cost.ROOF_TOLERANCE`). A layer's work is its executed FLOPs where
the backend reports them (Winograd), else the nominal FLOPs.

    python benchmarks/roofline.py [--batch 32] [--quick]

The ceilings are measured afresh at the start (``refresh=True``), so run it on a quiet
machine; each row records the load average.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from _common import write_results

import workbench as wb
from workbench.profiling.ceilings import machine_ceilings
from workbench.profiling.cost import ROOF_TOLERANCE

MODELS = ("digits-cnn", "digits-mlp", "digits-transformer", "digits-resnet")
BACKENDS = ("onnxruntime", "numba", "torch")


def _row(name: str, backend: str, batch: int, budget_s: float) -> dict[str, Any]:
    profile = wb.profile(wb.samples.load(name), backend, batch_size=batch, budget_s=budget_s)
    table = profile.layers.dropna(subset=["roof_fraction"])
    worst = table.loc[table["roof_fraction"].idxmax()] if len(table) else None
    ceilings = profile.environment.get("machine_ceilings", {})
    return {
        "model": name,
        "backend": backend,
        "batch": batch,
        "max_roof_fraction": None if worst is None else float(worst["roof_fraction"]),
        "layer": None if worst is None else str(worst["layer"]),
        "above_roof": ceilings.get("above_roof", {}),
        "peak_gflops": ceilings.get("peak_flops_per_s", float("nan")) / 1e9,
        "load_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="one model, small budgets")
    args = parser.parse_args()
    ceilings = machine_ceilings("cpu", refresh=True)
    models = MODELS[:1] if args.quick else MODELS
    rows = [
        _row(name, backend, args.batch, 0.2 if args.quick else 1.0)
        for name in models
        for backend in BACKENDS
    ]
    theoretical = ceilings.theoretical_flops_per_s
    lines = [
        f"Ceilings: {ceilings.peak_flops_per_s / 1e9:.1f} GFLOP/s measured fp32 peak, "
        f"{ceilings.bandwidth_bytes_per_s / 1e9:.1f} GB/s bandwidth ({ceilings.method}; "
        f"{ceilings.threads} threads, load {ceilings.load_average[0]:.1f} when measured).",
        "Theoretical fp32 peak: "
        + (f"{theoretical / 1e9:.1f} GFLOP/s" if theoretical else "unavailable")
        + f" ({ceilings.theoretical_note}).",
        "",
        f"Target: every layer's roof fraction <= {ROOF_TOLERANCE}.",
        "",
        "| model | backend | batch | max roof fraction | layer | ceilings used (GFLOP/s) "
        "| above roof after re-measuring | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fraction = "-" if r["max_roof_fraction"] is None else f"{r['max_roof_fraction']:.2f}"
        above = ", ".join(f"{k} ({v:.2f})" for k, v in r["above_roof"].items()) or "none"
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['batch']} | {fraction} | {r['layer']} "
            f"| {r['peak_gflops']:.1f} | {above} | {r['load_1min']:.1f} |"
        )
    worst = max((r["max_roof_fraction"] or 0.0) for r in rows)
    lines += ["", f"Highest fraction over all rows: {worst:.2f}."]
    write_results(
        "roofline",
        {"ceilings": ceilings.to_dict(), "rows": rows, "max_roof_fraction": worst},
        "\n".join(lines),
        quick=args.quick,
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
