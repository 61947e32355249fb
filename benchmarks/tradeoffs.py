"""Accuracy versus speed: are the transforms' speed-ups real? (issue: accuracy versus speed)

Latency protocol, all with the same ``--threads``: on ONNX Runtime each variant is saved
as an ONNX file and measured with `wb.compare_runtimes` (its own fresh process per round,
alternated rounds; two ORT sessions in one process would each keep a spinning thread
pool that disturbs the other). On torch the variants are timed in this process in
interleaved rounds: torch has one process-wide thread pool, so two variants there are
one runtime serving two models, as in real use. Either way the median of the per-round
medians is reported, with the speed-up's range over rounds on ORT.

1. INT8 on digits-mlp with ONNX Runtime: FP32 against INT8 dynamic / static, QDQ and
   QOperator, per-tensor and per-channel, at batch 32, 64 and 128.
   Target: >= 1.5x faster at batch >= 32, accuracy within 1 point.
2. 50% channel pruning of digits-cnn with a 3-epoch fine-tune, on ORT and torch at
   batch 32. Target: >= 2x on ORT, >= 1.5x on torch, accuracy within 2 points.
3. Why slower: static INT8 of digits-cnn without batch-norm folding against FP32 and
   against INT8 with folding, with `explain`'s per-layer reasons.
4. The full default sweep of digits-mlp (baseline, INT8 dynamic, INT8 static, FP16,
   channel pruning at 3 levels; onnxruntime and torch), wall clock from scratch.
   Target: under 3 minutes.

    python benchmarks/tradeoffs.py [--threads 1] [--rounds 5] [--budget-s 0.3] [--quick]

``--quick`` proves the script works (two INT8 variants, one fine-tune epoch, one round,
tiny budgets) and writes ``results/tradeoffs.quick.*``; it is not a measurement.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import write_results

import workbench as wb
from workbench.evaluation.metrics import evaluate
from workbench.optimize.prune import ChannelPrune
from workbench.optimize.quantize import Int8Dynamic, Int8Static
from workbench.profiling.timer import Timer

INT8_VARIANTS = {
    "int8-dynamic": Int8Dynamic(),
    "int8-dynamic per-channel": Int8Dynamic(per_channel=True),
    "int8-static qdq minmax per-tensor": Int8Static(method="minmax", per_channel=False),
    "int8-static qdq minmax per-channel": Int8Static(method="minmax"),
    "int8-static qdq entropy per-channel": Int8Static(method="entropy"),
    "int8-static qoperator minmax per-tensor": Int8Static(
        method="minmax", per_channel=False, quant_format="qoperator"
    ),
}


def side_by_side(
    models: dict[str, wb.Model],
    backend: str,
    batch_size: int,
    rounds: int,
    budget_s: float,
    threads: int,
) -> dict[str, dict[str, float]]:
    """Per variant: ``median_ms`` (median over rounds) and ``speedup`` vs the first, with range.

    On ORT with the fair protocol (each variant's ONNX file in its own processes); on torch
    in this process (see the module docstring).
    """
    if backend != "onnxruntime":
        return _in_process(models, backend, batch_size, rounds, budget_s, threads)
    with tempfile.TemporaryDirectory() as folder:
        runtimes = []
        for i, (key, model) in enumerate(models.items()):
            path = Path(folder) / f"variant{i}.onnx"
            model.to_onnx(path)
            options = {"threads": threads}
            runtimes.append(wb.Runtime(backend, options=options, label=key, model=str(path)))
        table = wb.compare_runtimes(
            runtimes[0].model, runtimes, batch_size, rounds=rounds, budget_s=budget_s
        ).table
    return {
        key: {
            "median_ms": row["median_ms"],
            "speedup": 1 / row["ratio"],
            "speedup_min": 1 / row["ratio_max"],
            "speedup_max": 1 / row["ratio_min"],
            "load_max": row["load_max"],
        }
        for key, row in table.iterrows()
    }


def _in_process(
    models: dict[str, wb.Model],
    backend: str,
    batch_size: int,
    rounds: int,
    budget_s: float,
    threads: int,
) -> dict[str, dict[str, float]]:
    x = next(iter(models.values())).example_inputs(batch_size)
    sessions = {
        k: wb.backend(backend).compile(m, "cpu", threads=threads) for k, m in models.items()
    }
    runners = {k: s.runner(x) for k, s in sessions.items()}
    medians: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for key, runner in runners.items():
            medians[key].append(Timer(runner, budget_s=budget_s).measure().median)
    for session in sessions.values():
        session.close()
    base = statistics.median(next(iter(medians.values())))
    return {
        k: {"median_ms": statistics.median(v), "speedup": base / statistics.median(v)}
        for k, v in medians.items()
    }


def _speedups(numbers: dict[str, float]) -> dict[str, float]:
    """The speed-up and, where measured (ORT), its range over rounds."""
    keys = ("speedup", "speedup_min", "speedup_max", "load_max")
    return {key: numbers[key] for key in keys if key in numbers}


def accuracy(model: wb.Model, backend: str, threads: int) -> float:
    data = wb.samples.dataset("digits", split="test")
    return evaluate(model, data, backend, options={"threads": threads}, bar=False).value


def int8_mlp(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = wb.samples.load("digits-mlp")
    train = wb.samples.dataset("digits", split="train")
    variants = list(INT8_VARIANTS.items())[: 2 if args.quick else None]
    models = {"fp32": base} | {k: wb.quantize(base, c, train) for k, c in variants}
    acc = {k: accuracy(m, "onnxruntime", args.threads) for k, m in models.items()}
    rows = []
    for batch in (32,) if args.quick else (32, 64, 128):
        times = side_by_side(models, "onnxruntime", batch, args.rounds, args.budget_s, args.threads)
        for key, numbers in times.items():
            rows.append(
                {
                    "variant": key,
                    "batch_size": batch,
                    "latency_ms": numbers["median_ms"],
                    **_speedups(numbers),
                    "accuracy": acc[key],
                    "accuracy_drop_points": 100 * (acc["fp32"] - acc[key]),
                    "size_bytes": models[key].to_onnx().size_bytes,
                }
            )
    return rows


def pruned_cnn(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = wb.samples.load("digits-cnn")
    start = time.perf_counter()
    epochs = 1 if args.quick else 3
    pruned = wb.prune(base, ChannelPrune(sparsity=0.5, finetune_epochs=epochs))
    prune_s = time.perf_counter() - start
    rows = []
    for backend in ("onnxruntime", "torch"):
        models = {"fp32": base, f"prune-channels(50%, ft{epochs})": pruned}
        times = side_by_side(models, backend, 32, args.rounds, args.budget_s, args.threads)
        for key, numbers in times.items():
            acc, base_acc = (accuracy(m, backend, args.threads) for m in (models[key], base))
            rows.append(
                {
                    "backend": backend,
                    "variant": key,
                    "batch_size": 32,
                    "latency_ms": numbers["median_ms"],
                    **_speedups(numbers),
                    "accuracy": acc,
                    "accuracy_drop_points": 100 * (base_acc - acc),
                    "params": models[key].params,
                    "transform_s": prune_s if key != "fp32" else 0.0,
                }
            )
    return rows


def why_slower(args: argparse.Namespace) -> dict[str, Any]:
    """Static INT8 of digits-cnn without batch-norm folding: slower than FP32, and why."""
    from workbench.optimize.explain import explain

    base = wb.samples.load("digits-cnn")
    train = wb.samples.dataset("digits", split="train")
    unfolded = wb.quantize(base, Int8Static(method="minmax", fold_batchnorm=False), train)
    folded = wb.quantize(base, Int8Static(method="minmax"), train)
    models = {"fp32": base, "int8 unfolded bn": unfolded, "int8 folded bn": folded}
    times = side_by_side(models, "onnxruntime", 32, args.rounds, args.budget_s, args.threads)
    options = {"threads": args.threads}
    profiles = [
        wb.profile(m, "onnxruntime", batch_size=32, budget_s=args.budget_s, options=options)
        for m in (base, unfolded)
    ]
    table = explain(profiles[0], profiles[1], base, unfolded)
    slower = table[table["slower"]].head(5)
    return {
        "latency_ms": {key: numbers["median_ms"] for key, numbers in times.items()},
        "slower_layers": slower[["layer", "base_ms", "variant_ms", "reasons"]].to_dict("records"),
    }


def full_sweep(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        table = wb.sweep(
            wb.samples.load("digits-mlp"),
            backends=["onnxruntime", "torch"],
            store=Path(folder) / "runs.sqlite",
            options={"threads": args.threads},
            budget_s=args.budget_s,
        )
        seconds = time.perf_counter() - start
    columns = ["variant", "backend", "latency_ms", "size_bytes", "metric_value", "pareto", "error"]
    return {"seconds": seconds, "points": len(table), "rows": table.df[columns].to_dict("records")}


def _speedup_text(row: dict[str, Any]) -> str:
    """``2.10x``, with the range over rounds where measured: ``2.10x (1.95-2.20)``."""
    text = f"{row['speedup']:.2f}x"
    if "speedup_min" in row:
        text += f" ({row['speedup_min']:.2f}-{row['speedup_max']:.2f})"
    return text


def markdown(
    int8: list[dict[str, Any]],
    prune: list[dict[str, Any]],
    sweep: dict[str, Any],
    why: dict[str, Any],
) -> str:
    lines = ["## INT8 on digits-mlp (onnxruntime)", ""]
    lines += ["| variant | batch | latency ms | speed-up | accuracy | drop (points) |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for r in int8:
        lines.append(
            f"| {r['variant']} | {r['batch_size']} | {r['latency_ms']:.4f} | "
            f"{_speedup_text(r)} | {r['accuracy']:.4f} | {r['accuracy_drop_points']:.2f} |"
        )
    lines += ["", "## 50% channel pruning of digits-cnn, 3-epoch fine-tune (batch 32)", ""]
    lines += ["| backend | variant | latency ms | speed-up | accuracy | drop (points) | params |"]
    lines += ["|---|---|---:|---:|---:|---:|---:|"]
    for r in prune:
        lines.append(
            f"| {r['backend']} | {r['variant']} | {r['latency_ms']:.4f} | {_speedup_text(r)} | "
            f"{r['accuracy']:.4f} | {r['accuracy_drop_points']:.2f} | {r['params']:,} |"
        )
    lines += ["", "## Why is my INT8 model slower? digits-cnn, static INT8, batch 32 (ORT)", ""]
    lines += [", ".join(f"{k}: {v:.4f} ms" for k, v in why["latency_ms"].items()), ""]
    lines += ["| layer | fp32 ms | int8 unfolded ms | reasons |", "|---|---:|---:|---|"]
    for r in why["slower_layers"]:
        lines.append(
            f"| {r['layer']} | {r['base_ms']:.4f} | {r['variant_ms']:.4f} | {r['reasons']} |"
        )
    lines += ["", "## Full default sweep of digits-mlp (2 backends)", ""]
    lines += [f"{sweep['points']} points in {sweep['seconds']:.1f} s (target: under 180 s)", ""]
    lines += ["| variant | backend | latency ms | size bytes | accuracy | pareto | error |"]
    lines += ["|---|---|---:|---:|---:|---|---|"]
    for r in sweep["rows"]:
        latency = f"{r['latency_ms']:.4f}" if r["latency_ms"] == r["latency_ms"] else "–"
        value = f"{r['metric_value']:.4f}" if r["metric_value"] == r["metric_value"] else "–"
        error = r["error"][:60] if isinstance(r["error"], str) else ""
        lines.append(
            f"| {r['variant']} | {r['backend']} | {latency} | {r['size_bytes']:,} | {value} | "
            f"{r['pareto']} | {error} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=0.3)
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.budget_s = 1, 0.02
    int8 = int8_mlp(args)
    prune = pruned_cnn(args)
    sweep = full_sweep(args)
    why = why_slower(args)
    settings = {"threads": args.threads, "rounds": args.rounds, "budget_s": args.budget_s}
    data = {
        "settings": settings,
        "int8_mlp": int8,
        "pruned_cnn": prune,
        "full_sweep": sweep,
        "why_slower": why,
    }
    table = markdown(int8, prune, sweep, why)
    write_results("tradeoffs", data, f"Settings: {settings}\n\n{table}", quick=args.quick)
    print(table)


if __name__ == "__main__":
    main()
