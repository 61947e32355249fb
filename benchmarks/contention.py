"""Honest numbers on a busy machine: runtimes compared quiet, then with a busy neighbour per core.

For each model (digits-cnn and digits-mlp at batch 32 by default) `wb.compare_runtimes`
measures ONNX Runtime, Numba, torch at its default threads and torch with ``threads=1``,
each in its own process at its own defaults, rounds alternated, twice: once on the quiet
machine, once with one busy neighbour process per available CPU (a Python loop that
never sleeps, the kind a notebook kernel or a build next door is). Reported for each
runtime: its median (range over rounds) and ratio to ONNX Runtime in both phases, how far
the busy ratio moved from the quiet one, and the contention verdict its rounds carried.

What it must show (issue 26): with the neighbours, Numba/ORT stays within 1.5x of its
quiet ratio, and torch's default run within 3x of its ``threads=1`` time. Before the
runtimes sized their threads to the free CPUs, Numba/ORT on digits-cnn went from 1.2 to
10.7 and torch's default run took 119x its single-thread time under load.

The quiet phase is only as quiet as the machine: the script reads the machine before
it starts and says so when other work was running (then the quiet ratios are not).

    python benchmarks/contention.py [--models digits-cnn,digits-mlp] [--batch-size 32]
                                    [--rounds 3] [--retries 2] [--budget-s 1.0] [--quick]

``--quick`` proves the script works (digits-mlp only, one round, tiny budgets) and
writes ``results/contention.quick.*``; it is not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from _common import write_results

import workbench as wb
from workbench.backends.cpus import contention_between, cpu_budget, read_sample
from workbench.profiling.compare_runtimes import Runtime

#: the runtimes compared; ratios are against the first
RUNTIMES = (
    Runtime("onnxruntime"),
    Runtime("numba"),
    Runtime("torch"),
    Runtime("torch", options={"threads": 1}, label="torch (threads=1)"),
)
#: issue 26's bounds: the busy ratio over the quiet one, and torch default over threads=1
NUMBA_BOUND, TORCH_BOUND = 1.5, 3.0
#: a neighbour: one Python process that never sleeps
SPIN = "while True:\n    pass\n"


@contextlib.contextmanager
def busy_neighbours(count: int) -> Iterator[list[int]]:
    """``count`` processes spinning on the CPUs while inside; each ended (by its pid) after."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    try:
        time.sleep(1.0)  # let the scheduler spread them before anything is timed
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def machine_now(seconds: float = 1.0) -> dict[str, Any]:
    """How busy the machine is over ``seconds`` (before any phase): the verdict in words."""
    before = read_sample()
    time.sleep(seconds)
    seen = contention_between(before, read_sample(), cpu_budget())
    return {**seen.to_dict(), "reasons": list(seen.reasons)}


def phase(model: str, args: argparse.Namespace, neighbours: int) -> dict[str, Any]:
    """One comparison, with ``neighbours`` busy processes running (0: quiet)."""
    with busy_neighbours(neighbours) if neighbours else contextlib.nullcontext():
        comparison = wb.compare_runtimes(
            model,
            RUNTIMES,
            batch_size=args.batch_size,
            rounds=args.rounds,
            retries=args.retries,
            budget_s=args.budget_s,
            warmup_s=args.warmup_s,
            progress=lambda f, m: print(f"    {f:4.0%} {m}", flush=True),
        )
    table = comparison.table
    return {
        "neighbours": neighbours,
        "rows": table.reset_index().to_dict(orient="records"),
        "comparison": comparison.to_dict(),
    }


def checks(quiet: dict[str, Any], busy: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """(what, value, bound, passed) for issue 26's two bounds on one model."""
    q = {r["runtime"]: r for r in quiet["rows"]}
    b = {r["runtime"]: r for r in busy["rows"]}
    moved = b["numba"]["ratio"] / q["numba"]["ratio"]
    torch_vs_one = b["torch"]["median_ms"] / b["torch (threads=1)"]["median_ms"]
    return [
        ("numba/ORT busy ÷ quiet", moved, NUMBA_BOUND, moved <= NUMBA_BOUND),
        ("torch default ÷ threads=1, busy", torch_vs_one, TORCH_BOUND, torch_vs_one <= TORCH_BOUND),
    ]


def markdown(results: list[dict[str, Any]], before: dict[str, Any], neighbours: int) -> str:
    quiet_note = (
        "the machine was quiet before the quiet phase"
        if not before["reasons"]
        else f"**the machine was NOT quiet before the quiet phase: {'; '.join(before['reasons'])}**"
    )
    lines = [
        f"Busy phase: {neighbours} neighbour process(es) spinning, one per available CPU; "
        f"{quiet_note}. Ratios are each runtime's median over ONNX Runtime's in the same "
        "round (median over rounds, range in brackets).",
        "",
    ]
    for result in results:
        quiet = {r["runtime"]: r for r in result["quiet"]["rows"]}
        busy = {r["runtime"]: r for r in result["busy"]["rows"]}
        lines += [
            f"## {result['model']} at batch {result['batch_size']}",
            "",
            "| runtime | quiet ms | quiet ratio | busy ms | busy ratio | busy ÷ quiet ratio "
            "| threads quiet / busy | verdict (busy) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, q in quiet.items():
            b = busy[name]
            lines.append(
                f"| {name} | {q['median_ms']:.4g} | {_ratio(q)} | {b['median_ms']:.4g} "
                f"| {_ratio(b)} | {b['ratio'] / q['ratio']:.2f} "
                f"| {q.get('threads', '?')} / {b.get('threads', '?')} | {b.get('verdict', '')} |"
            )
        lines.append("")
        for what, value, bound, passed in result["checks"]:
            lines.append(f"- {what}: {value:.2f} (bound {bound}) {'PASS' if passed else 'FAIL'}")
        lines.append("")
    return "\n".join(lines)


def _ratio(row: dict[str, Any]) -> str:
    if math.isnan(row["ratio"]):
        return "—"
    return f"{row['ratio']:.2f} ({row['ratio_min']:.2f}–{row['ratio_max']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=lambda t: t.split(","), default=["digits-cnn", "digits-mlp"]
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--retries", type=int, default=2, help="extra rounds while noisy")
    parser.add_argument("--budget-s", type=float, default=1.0)
    parser.add_argument("--warmup-s", type=float, default=0.3)
    parser.add_argument(
        "--neighbours", type=int, default=0, help="busy processes (default: one per CPU)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.models, args.rounds, args.retries = ["digits-mlp"], 1, 0
        args.budget_s, args.warmup_s = 0.05, 0.02
    neighbours = args.neighbours or cpu_budget().available
    before = machine_now()
    print(f"machine before the quiet phase: {before['reasons'] or 'quiet'}", flush=True)
    results = []
    for model in args.models:
        print(f"{model}: quiet", flush=True)
        quiet = phase(model, args, 0)
        print(f"{model}: {neighbours} busy neighbour(s)", flush=True)
        busy = phase(model, args, neighbours)
        results.append(
            {
                "model": model,
                "batch_size": args.batch_size,
                "quiet": quiet,
                "busy": busy,
                "checks": checks(quiet, busy),
            }
        )
    settings = {k: v for k, v in vars(args).items() if k != "quick"}
    table = markdown(results, before, neighbours)
    data = {"settings": settings, "machine_before": before, "results": results}
    write_results("contention", data, table, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
