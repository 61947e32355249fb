"""How much does per-layer instrumentation cost? (issue 3: per-layer profiling)

Profiles a sample model end to end (uninstrumented) and per layer (the backend's
default method) several times and reports the sum of per-layer medians over the
end-to-end median. Target for the default method: 0.8-1.25 on the sample CNN at batch
32 on ORT and torch. Other samples are reported for information.

    python benchmarks/layer_overhead.py [--models digits-cnn] [--batch-size 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics

from _common import write_results

import workbench as wb
from workbench.profiling.layers import attribution


def measure(model_name: str, backend: str, batch_size: int, rounds: int, threads: int) -> dict:
    model = wb.samples.load(model_name)
    ratios, sums, e2e = [], [], []
    options = {"threads": threads} if threads and backend != "numba" else None
    if backend == "torch" and not threads:
        # torch's thread count is process-wide: put back the default a previous row changed
        options = {"threads": DEFAULT_TORCH_THREADS}
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


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


DEFAULT_TORCH_THREADS = _torch_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits-cnn,digits-resnet,digits-transformer")
    parser.add_argument("--backends", default="onnxruntime,torch,numba")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads",
        default="1,0",
        help="intra-op threads for torch and ORT, 0 = the library default",
    )
    args = parser.parse_args()
    rows = []
    load_before = os.getloadavg()
    for threads in [int(t) for t in args.threads.split(",")]:
        for model_name in args.models.split(","):
            for backend in args.backends.split(","):
                if not wb.backend(backend).devices():
                    continue
                if backend == "numba" and threads:
                    continue  # numba has no thread option: measured once, with its default
                try:
                    row = measure(model_name, backend, args.batch_size, args.rounds, threads)
                except Exception as exc:  # one broken backend must not lose the other rows
                    print(f"{model_name} {backend}: failed: {exc}")
                    continue
                rows.append(row)
                print(row)
    load_after = os.getloadavg()
    lines = [
        f"batch {args.batch_size}, {args.rounds} rounds each (budget 1 s end to end, "
        "30 instrumented runs per layer pass); ratio = sum of layer medians / end-to-end median",
        "",
        f"Machine load average (1/5/15 min) before {_load(load_before)}, after "
        f"{_load(load_after)} on {os.cpu_count()} cores: other jobs shared the machine. "
        "Multi-threaded rows suffer most from that (a descheduled worker thread stalls every "
        "parallel op), so the single-thread rows are the controlled measurement.",
        "",
        "| model | backend | threads | layers sum ms | end to end ms | ratio (median) | range |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['threads']} | {r['layers_sum_ms_median']:.4f} | "
            f"{r['end_to_end_ms_median']:.4f} | {r['ratio_median']:.3f} | "
            f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f} |"
        )
    data = {"rows": rows, "loadavg_before": load_before, "loadavg_after": load_after}
    write_results("layer_overhead", data, "\n".join(lines))


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
