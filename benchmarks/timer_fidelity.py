"""Does our `Measurement` agree with the reference timers? (issue: foundation)

Times the same inference with workbench's `Timer` and with
``torch.utils.benchmark.Timer`` (torch backend) or a plain ``InferenceSession.run``
loop (ORT backend), interleaved in one process, and reports ours / reference.
Target: within 5%.

    python benchmarks/timer_fidelity.py [--model digits-cnn] [--batch-size 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import write_results

import workbench as wb
from workbench.profiling.timer import Timer


def torch_reference(session, x: dict[str, np.ndarray], seconds: float) -> float:
    import torch
    import torch.utils.benchmark as tb

    tensors = [torch.from_numpy(a) for a in x.values()]
    module = session.module

    def call() -> None:
        with torch.inference_mode():
            module(*tensors)

    timer = tb.Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=seconds).median * 1000


def ort_reference(session, x: dict[str, np.ndarray], seconds: float) -> float:
    samples, deadline = [], time.perf_counter() + seconds
    ort_session = session.session
    for _ in range(5):
        ort_session.run(None, x)
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        ort_session.run(None, x)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    model = wb.samples.load(args.model)
    x = model.example_inputs(args.batch_size)
    references = {"torch": torch_reference, "onnxruntime": ort_reference}
    rows = []
    for backend, reference in references.items():
        session = wb.backend(backend).compile(model, "cpu")
        ours, theirs = [], []
        for _ in range(args.rounds):  # interleaved so drift hits both equally
            ours.append(Timer(session.runner(x), budget_s=args.seconds).measure().median)
            theirs.append(reference(session, x, args.seconds))
        ratio = statistics.median(ours) / statistics.median(theirs)
        rows.append(
            {
                "backend": backend,
                "workbench_ms": statistics.median(ours),
                "reference_ms": statistics.median(theirs),
                "ratio": ratio,
                "reference": "torch.utils.benchmark.Timer"
                if backend == "torch"
                else "InferenceSession.run loop",
            }
        )
    table = "| backend | reference | workbench median ms | reference median ms | ratio |\n"
    table += "|---|---|---|---|---|\n" + "\n".join(
        f"| {r['backend']} | {r['reference']} | {r['workbench_ms']:.4f} | "
        f"{r['reference_ms']:.4f} | {r['ratio']:.3f} |"
        for r in rows
    )
    table = f"{args.model}, batch {args.batch_size}, {args.rounds} interleaved rounds\n\n{table}"
    write_results(
        "timer_fidelity", {"model": args.model, "batch_size": args.batch_size, "rows": rows}, table
    )
    print(table)


if __name__ == "__main__":
    main()
