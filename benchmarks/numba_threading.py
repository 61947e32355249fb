"""Which Numba threading layer degrades gracefully when a neighbour takes the cores?

Numba's parallel loops run on one of three layers: ``omp`` (OpenMP; its workers spin
after each region), ``workqueue`` (Numba's own pool) and ``tbb`` (work stealing, when
the TBB library is loaded). Each layer runs in its own process, the layers alternated,
with the numba backend forced onto every available CPU (``threads=`` the CPU count, so
its parallel regions run even when other work is seen), on digits-cnn and digits-mlp at
batch 32: once as the machine is, once with one busy neighbour process per CPU.
Reported per layer and model: the median (ms) in both phases and busy over quiet.

    python benchmarks/numba_threading.py [--budget-s 1.0] [--rounds 2] [--tbb-lib PATH]
                                         [--quick]

``--tbb-lib`` names a ``libtbb.so.12`` to load (the ``tbb`` wheel installs it under
``<prefix>/lib``, where the dynamic loader does not look); without one and without a
loadable TBB, the tbb layer is left out and says why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from typing import Any

from _common import write_results
from contention import busy_neighbours

MODELS = ("digits-cnn", "digits-mlp")
LAYERS = ("omp", "workqueue", "tbb")


def child(layer: str, budget_s: float, tbb_lib: str) -> dict[str, Any]:
    """In a fresh process: the layer picked before Numba starts, both models timed."""
    os.environ["NUMBA_THREADING_LAYER"] = layer
    if tbb_lib:
        import ctypes

        ctypes.CDLL(tbb_lib, mode=ctypes.RTLD_GLOBAL)  # numba finds it by its soname
    import numba

    import workbench as wb
    from workbench.backends.base import settings_of
    from workbench.backends.cpus import cpu_budget
    from workbench.profiling.timer import Timer

    threads = cpu_budget().available
    out: dict[str, Any] = {"threads": threads}
    for name in MODELS:
        model = wb.samples.load(name)
        session = wb.backend("numba").compile(model, "cpu", threads=threads)
        with settings_of(session):
            runner = session.runner(model.example_inputs(32))
            m = Timer(runner, warmup_s=0.3, budget_s=budget_s, threads=threads).measure()
        out[name] = {"median_ms": m.median, "p90_ms": m.p90, "n": m.n, "verdict": m.verdict}
    out["layer"] = numba.threading_layer()
    return out


def run_child(layer: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", layer, "--budget-s", str(args.budget_s)]
    if args.tbb_lib:
        command += ["--tbb-lib", args.tbb_lib]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return dict(json.loads(lines[-1]))


def measure(args: argparse.Namespace, neighbours: int) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {layer: [] for layer in LAYERS}
    with busy_neighbours(neighbours) if neighbours else contextlib.nullcontext():
        for r in range(args.rounds):
            for i in range(len(LAYERS)):
                layer = LAYERS[(r + i) % len(LAYERS)]
                print(f"  round {r + 1}: {layer}", flush=True)
                results[layer].append(run_child(layer, args))
    return results


def _median(rounds: list[dict[str, Any]], model: str) -> float:
    import statistics

    values = [r[model]["median_ms"] for r in rounds if model in r]
    return statistics.median(values) if values else float("nan")


def markdown(quiet: dict[str, Any], busy: dict[str, Any], neighbours: int) -> str:
    lines = [
        f"Busy phase: {neighbours} neighbour process(es) spinning. Median of the rounds' "
        "medians, ms; the verdicts of the busy rounds say what the machine did.",
        "",
        "| layer | model | as is ms | busy ms | busy ÷ as is | busy verdicts |",
        "|---|---|---|---|---|---|",
    ]
    for layer in LAYERS:
        errors = {r["error"] for r in quiet[layer] + busy[layer] if "error" in r}
        if errors:
            lines.append(f"| {layer} | — | — | — | — | unavailable: {'; '.join(errors)} |")
            continue
        for model in MODELS:
            q, b = _median(quiet[layer], model), _median(busy[layer], model)
            verdicts = "; ".join(sorted({r[model]["verdict"] for r in busy[layer]} - {""}))
            lines.append(f"| {layer} | {model} | {q:.4g} | {b:.4g} | {b / q:.2f} | {verdicts} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tbb-lib", default="")
    parser.add_argument("--child", default="")
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.budget_s, args.tbb_lib)), flush=True)
        return
    if args.quick:
        args.budget_s, args.rounds = 0.05, 1
    from workbench.backends.cpus import cpu_budget

    neighbours = cpu_budget().available
    print("as the machine is", flush=True)
    quiet = measure(args, 0)
    print(f"{neighbours} busy neighbour(s)", flush=True)
    busy = measure(args, neighbours)
    table = markdown(quiet, busy, neighbours)
    settings = {"budget_s": args.budget_s, "rounds": args.rounds, "tbb_lib": args.tbb_lib}
    data = {"settings": settings, "quiet": quiet, "busy": busy}
    write_results("numba_threading", data, table, quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
