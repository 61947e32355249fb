"""INT8 on the numba backend: its integer kernels against its own fp32 and ONNX Runtime's INT8.

The workbench's own INT8 variants of the samples (``int8-static``: QDQ, whose Gemm/MatMul
and Conv numba fuses into integer kernels; ``int8-dynamic``: DynamicQuantizeLinear +
MatMulInteger) and their fp32 models, each written to an ONNX file. Protocol
(`wb.compare_runtimes`, see docs/profiling.md): every (runtime, model file) runs in its
own fresh process at its runtime's defaults, the processes alternate over ``--rounds``
rounds, and the table gives the median of per-round medians and each one's ratio to
numba's fp32 in the same round. ORT's fp32 is there for scale.

    python benchmarks/numba_int8.py [--rounds 5] [--budget-s 1.0] [--quick]
                                    [--samples digits-mlp digits-cnn] [--batches 1 32]

``--quick`` proves the script works (digits-mlp at batch 1, two rounds, tiny budgets)
and writes ``results/numba_int8.quick.*``; it is not a measurement.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from _common import write_results

import workbench as wb

SAMPLES = ("digits-mlp", "digits-cnn")
BATCHES = (1, 32)
BASELINE = "numba fp32"


def variant_files(sample: str, folder: Path) -> dict[str, Path]:
    """The sample's fp32, int8-static and int8-dynamic ONNX files."""
    model = wb.samples.load(sample)
    data = wb.samples.dataset("digits")
    variants = {"fp32": model}
    for config in ("int8-static", "int8-dynamic"):
        variants[config] = wb.quantize(model, config, data=data)
    files = {}
    for name, variant in variants.items():
        path = folder / f"{sample}-{name}.onnx"
        path.write_bytes(variant.to_onnx().onnx_bytes)
        files[name] = path
    return files


def runtimes(files: dict[str, Path]) -> list[wb.Runtime]:
    """numba fp32 first (the baseline), then numba's and ORT's INT8, then ORT's fp32."""
    return [
        wb.Runtime("numba", label=BASELINE, model=str(files["fp32"])),
        wb.Runtime("numba", label="numba int8-static", model=str(files["int8-static"])),
        wb.Runtime("numba", label="numba int8-dynamic", model=str(files["int8-dynamic"])),
        wb.Runtime("onnxruntime", label="ORT int8-static", model=str(files["int8-static"])),
        wb.Runtime("onnxruntime", label="ORT fp32", model=str(files["fp32"])),
    ]


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| sample | batch | runtime | median ms | range ms | / numba fp32 (range) |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        for row in result["table"]:
            ratio = f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
            cells = [
                result["sample"], str(result["batch"]), row["runtime"], f"{row['median_ms']:.4f}",
                f"{row['min_ms']:.4f}-{row['max_ms']:.4f}", ratio,
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _progress(what: str) -> Any:
    return lambda _, message: print(f"  {what} {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=1.0, help="per process, seconds")
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    parser.add_argument("--samples", nargs="+", default=list(SAMPLES))
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    args = parser.parse_args()
    samples, batches, rounds, budget_s = args.samples, args.batches, args.rounds, args.budget_s
    if args.quick:
        samples, batches, rounds, budget_s = samples[:1], batches[:1], 2, 0.05
    folder = Path(tempfile.mkdtemp(prefix="wb-numba-int8-"))
    results = []
    for sample in samples:
        files = variant_files(sample, folder)
        for batch in batches:
            comparison = wb.compare_runtimes(
                str(files["fp32"]),
                runtimes(files),
                batch,
                rounds=rounds,
                budget_s=budget_s,
                baseline=BASELINE,
                progress=_progress(f"{sample} b{batch}"),
            )
            records = comparison.table.reset_index().to_dict("records")
            results.append({"sample": sample, "batch": batch, "table": records})
    text = table(results)
    print(text)
    write_results(
        "numba_int8",
        {"protocol": "wb.compare_runtimes", "rounds": rounds, "budget_s": budget_s,
         "results": results},
        text,
        quick=args.quick,
    )  # fmt: skip


if __name__ == "__main__":
    main()
