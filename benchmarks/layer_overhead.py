"""How much does per-layer instrumentation cost? (issue 3: per-layer profiling)

Profiles a sample model end to end (uninstrumented) and per layer (the backend's
default method) several times and reports the sum of per-layer medians over the
end-to-end median. Target for the default method: 0.8-1.25 on the sample CNN at batch
32 on ORT and torch. Other samples are reported for information.

    python benchmarks/layer_overhead.py [--models digits-cnn] [--batch-size 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics

from _common import write_results

import workbench as wb
from workbench.profiling.layers import attribution


def measure(model_name: str, backend: str, batch_size: int, rounds: int, threads: int) -> dict:
    model = wb.samples.load(model_name)
    ratios, sums, e2e = [], [], []
    options = {"threads": threads} if threads and backend != "numba" else None
    for _ in range(rounds):
        p = wb.profile(
            model,
            backend,
            batch_size=batch_size,
            budget_s=1.0,
            layer_repeats=30,
            options=options,
        )
        numbers = attribution(p)
        ratios.append(numbers["ratio"])
        sums.append(numbers["layers_sum_ms"])
        e2e.append(numbers["end_to_end_ms"])
    return {
        "model": model_name,
        "backend": backend,
        "batch_size": batch_size,
        "method": p.layer_method,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "layers_sum_ms_median": statistics.median(sums),
        "end_to_end_ms_median": statistics.median(e2e),
        "rounds": rounds,
        "threads": threads or "default",
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits-cnn,digits-resnet,digits-transformer")
    parser.add_argument("--backends", default="onnxruntime,torch,numba")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=0, help="intra-op threads for torch and ORT (0: default)"
    )
    args = parser.parse_args()
    rows = []
    for model_name in args.models.split(","):
        for backend in args.backends.split(","):
            if not wb.backend(backend).devices():
                continue
            row = measure(model_name, backend, args.batch_size, args.rounds, args.threads)
            rows.append(row)
            print(row)
    lines = [
        f"batch {args.batch_size}, threads {args.threads or 'default'}, {args.rounds} rounds "
        "each (budget 1 s end to end, "
        "30 instrumented runs per layer pass); ratio = sum of layer medians / end-to-end median",
        "",
        "| model | backend | layers sum ms | end to end ms | ratio (median) | ratio range |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['layers_sum_ms_median']:.4f} | "
            f"{r['end_to_end_ms_median']:.4f} | {r['ratio_median']:.3f} | "
            f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f} |"
        )
    write_results("layer_overhead", {"rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
