"""Which runtime: every backend x device x option set side by side on the samples.

For each sample model (and, in the full run, a foreign ONNX ResNet-50 built from the
``onnx`` wheel's test graph by `workbench.testing.foreign`), `wb.compare_backends`
measures every runtime installed here that can run it (ONNX Runtime, PyTorch eager,
torch-compile, numba, OpenVINO with its option sets from the plugin, and whatever else is
registered; the torch backends run the ONNX ResNet-50 through their ONNX converter) with
the fair protocol: each runtime in its own fresh process per round at its own settings,
rounds alternated, the range over rounds kept. Reported per model and batch size: latency
(median of round medians, with the range), throughput, cold start (compile, first
inference), the resident memory the runtime added, the latency ratio to ONNX Runtime, and
the best of each column starred.

torch-compile is compiled for the batch size it is timed at (`wb.compare_backends` sets
its ``batch_size=`` option for each batch size): compiled for batch 1 and run at 32 it
would recompile with symbolic shapes outside ``compile_s``, hiding that compile from the
cold start and timing a dynamic-shape graph no one deploying at batch 32 would use.

The ONNX reference evaluator (``onnx-reference``, a correctness reference in pure
Python) is left out unless named with ``--backends``.

    python benchmarks/runtimes.py [--rounds 3] [--budget-s 0.5] [--backends a,b] [--quick]

``--quick`` proves the script works (digits-cnn only, one round, tiny budgets) and writes
``results/runtimes.quick.*``; it is not a measurement.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from _common import write_results

import workbench as wb
from workbench.testing.foreign import foreign_resnet50

#: left out unless asked for: not a runtime anyone deploys, and minutes per ResNet-50 run
NOT_BY_DEFAULT = {"onnx-reference"}


def measure(model: str, batch_sizes: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """One model's comparison, as plain data (the table's rows and the skipped pairings)."""
    backends = args.backends or [n for n in wb.backend_names() if n not in NOT_BY_DEFAULT]
    # compare_backends compiles torch-compile for each batch size it times (`batch_size=`)
    comparison = wb.compare_backends(
        model,
        batch_sizes=batch_sizes,
        backends=backends,
        rounds=args.rounds,
        budget_s=args.budget_s,
        warmup_s=args.warmup_s,
        progress=lambda fraction, message: print(f"  {fraction:4.0%} {message}", flush=True),
    )
    table = comparison.table.copy()
    ort = table[table["runtime"] == "onnxruntime"].set_index("batch_size")["latency_ms"]
    table["vs_onnxruntime"] = [
        latency / ort[batch] if batch in ort else float("nan")
        for latency, batch in zip(table["latency_ms"], table["batch_size"], strict=True)
    ]
    return {
        "model": Path(model).stem,
        "rows": table.to_dict(orient="records"),
        "skipped": comparison.skipped,
        "comparison": comparison.to_dict(),
    }


def markdown(results: list[dict[str, Any]]) -> str:
    """One table per model; ``*`` marks the best of a column at that batch size."""
    lines = []
    for result in results:
        lines += [
            f"## {result['model']}",
            "",
            "| runtime | batch | latency ms (range) | vs ORT | items/s | compile s "
            "| first run ms | cold start s | memory MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in result["rows"]:
            lines.append(
                f"| {row['runtime']} | {row['batch_size']} "
                f"| {_cell(row, 'latency_ms', 'best_latency')} "
                f"({row['latency_min_ms']:.3g}-{row['latency_max_ms']:.3g}) "
                f"| {row['vs_onnxruntime']:.2f} "
                f"| {_cell(row, 'throughput_per_s', 'best_throughput')} "
                f"| {row['compile_s']:.3g} | {row['first_inference_ms']:.3g} "
                f"| {_cell(row, 'cold_start_s', 'best_cold_start')} "
                f"| {_cell(row, 'memory_mib', 'best_memory')} |"
                + (f" {row['errors']}" if row["errors"] else "")
            )
        lines.append("- torch-compile was compiled for each row's batch size (`batch_size=`)")
        if any("bf16" in row["runtime"] for row in result["rows"]):
            lines.append(
                "- `precision=bf16` computes in bfloat16, not fp32: its stars are for speed "
                "only; check its accuracy (`wb.evaluate`) before choosing it"
            )
        lines += [f"- not measured: {b}/{d}: {r}" for b, d, r in result["skipped"]]
        lines.append("")
    return "\n".join(lines)


def _cell(row: dict[str, Any], column: str, flag: str) -> str:
    value = row[column]
    # thousands as whole numbers (32,730 items/s), not 3.273e+04
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{text}{' *' if row[flag] else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=0.5)
    parser.add_argument("--warmup-s", type=float, default=0.2)
    parser.add_argument("--backends", type=lambda text: text.split(","), default=None)
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.budget_s, args.warmup_s = 1, 0.05, 0.02
    results = []
    with tempfile.TemporaryDirectory() as folder:
        models: list[tuple[str, list[int]]] = [("digits-cnn", [1, 32])]
        if not args.quick:
            models = [(name, [1, 32]) for name in wb.samples.names()]
            models.append((str(foreign_resnet50(Path(folder) / "resnet50.onnx")), [1, 8]))
        for model, batch_sizes in models:
            print(f"{model} at batch {batch_sizes}", flush=True)
            results.append(measure(model, batch_sizes, args))
    settings = {
        "rounds": args.rounds,
        "budget_s": args.budget_s,
        "warmup_s": args.warmup_s,
        "backends": args.backends or f"all but {sorted(NOT_BY_DEFAULT)}",
    }
    table = markdown(results)
    write_results("runtimes", {"settings": settings, "results": results}, table, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
