"""The numba backend against ONNX Runtime (fp32, CPU) on the sample models, measured fairly.

Protocol (`wb.compare_runtimes`, see docs/profiling.md): each runtime runs in its own
fresh process at its own default settings, the processes alternate over ``--rounds``
rounds in a rotated order, and the table gives the median of the per-round medians, their
range, and numba / ORT round by round with its range. Nothing of ORT is changed for
numba's sake (no thread-spinning switch, no thread count); each child records the load
average. Target (issue 12): numba within 1.5x of ORT on digits-cnn and digits-mlp at
batch 1 and 32; digits-transformer and digits-resnet are for information.

With ``--variants`` numba's other configurations run as further runtimes of their own
(the ONNX layout, our own GEMM). The GEMM section compares the two GEMMs the numba backend
can use, BLAS called from ``@njit`` and our cache-blocked kernel, one after the other in
this process (they are two kernels of one runtime, not two runtimes), in GFLOP/s.

With ``--model-set`` the models are the Numba path's model set (issue 27,
``tests/backends/numba/model_set.py``: samples, their INT8 variants, the ONNX zoo's
light models, a transformers BERT, torchvision's mobilenet_v3_small and resnet18 where
torchvision imports), each written to an ONNX file the children load; a coverage table
comes first: the ops numba refuses, and its largest difference from ORT at batch 1.

    python benchmarks/numba_cpu.py [--rounds 5] [--budget-s 1.0] [--variants] [--quick]
                                   [--model-set [--only NAME ...] [--batches 1 32]]

``--only`` keeps the named models of the set (heavy ones included, also with
``--quick``); ``--batches`` sets the batch sizes (default 1 and 32, ``--quick`` 1). In
``--model-set`` mode Numba's disk cache starts empty for each model and batch
(``NUMBA_CACHE_DIR`` is a fresh folder the children share), so the first Numba child's
compile is a cold one and the later ones are the cached second compile; the table gives
both (the runtime's start-up in the process, the model's compile with numba's plan at
the timed shapes included, and the first inference, apart; the file's load is in the
JSON).

``--quick`` proves the script works (one model, two rounds, tiny budgets; with
``--model-set`` the set's cheap models at batch 1) and writes
``results/numba_cpu.quick.*`` (``numba_model_set.quick.*``); it is not a measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_results

import workbench as wb

#: the issue's targets are on the first two; the others are reported for information
MODELS = ("digits-cnn", "digits-mlp", "digits-transformer", "digits-resnet")
BATCHES = (1, 32)
#: numba's other configurations, each its own runtime (``--variants``)
VARIANTS = (
    wb.Runtime("numba", options={"layout": "nchw"}, label="numba nchw"),
    wb.Runtime("numba", options={"gemm": "tiled"}, label="numba own GEMM"),
)


def compare_model(
    name: str, batch: int, rounds: int, budget_s: float, variants: bool, model: Any = None
) -> dict[str, Any]:
    """ORT (the baseline) and numba, each in its own processes, alternated over rounds
    (on the sample ``name``, or on ``model``, a file path, when given)."""
    runtimes = [wb.Runtime("onnxruntime"), wb.Runtime("numba"), *(VARIANTS if variants else ())]
    comparison = wb.compare_runtimes(
        model or name,
        runtimes,
        batch,
        rounds=rounds,
        budget_s=budget_s,
        progress=lambda _, message: print(f"  {name} b{batch} {message}", flush=True),
    )
    return comparison.to_dict() | {"table": comparison.table.reset_index().to_dict("records")}


def model_set(quick: bool, only: list[str] | None = None) -> list[tuple[Any, wb.Model | None, str]]:
    """(entry, model or None, why not) for each model of the set; ``quick`` keeps the
    cheap ones (no zoo, no torchvision), ``only`` the named ones whatever their cost."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "backends" / "numba"))
    from model_set import entries

    from workbench.errors import ModelLoadError

    built = []
    for entry in entries():
        if only is not None:
            if entry.name not in only:
                continue
        elif quick and (entry.heavy or (entry.family == "sample" and entry.name != "digits-cnn")):
            continue
        try:
            model = entry.make() if entry.family != "zoo" else _weighted_zoo(entry.name)
        except (ModelLoadError, ImportError) as exc:
            built.append((entry, None, str(exc).splitlines()[0]))
            continue
        built.append((entry, model, ""))
    return built


def _weighted_zoo(name: str) -> wb.Model:
    """A zoo model with seeded random weights (the shipped ones are all 0.02)."""
    from workbench.testing.foreign import light_model

    short = name.removeprefix("zoo ")
    folder = Path(tempfile.mkdtemp(prefix="wb-zoo-"))
    return wb.load(light_model(short, folder / f"{short}.onnx"))


def coverage(entry: Any, model: wb.Model | None, why: str) -> dict[str, Any]:
    """What numba refuses of ``model``; where it runs, whether its outputs at batch 1
    equal ORT's within the ``model`` tolerances (NaN and inf in the same places), and
    the largest difference between their finite values."""
    from model_set import refused_ops

    row: dict[str, Any] = {"model": entry.name, "family": entry.family, "refused": []}
    if model is None:
        return row | {"status": f"not built: {why}"}
    row["refused"] = refused_ops(model)
    if row["refused"]:
        return row | {"status": "refused"}
    x = model.example_inputs(1)
    expected = wb.backend("onnxruntime").compile(model, "cpu").run(x)
    got = wb.backend("numba").compile(model, "cpu").run(x)
    return row | {"status": "runs", **agreement(got, expected)}


def agreement(got: list[Any], expected: list[Any]) -> dict[str, Any]:
    """Whether outputs equal the reference's within the ``model`` tolerances (NaN and
    inf in the same places), the largest difference between their finite values, and
    whether the reference has non-finite values."""
    from workbench.tolerances import allclose

    pairs = list(zip(got, expected, strict=True))
    gaps = [np.abs(np.asarray(a, np.float64) - b) for a, b in pairs]
    return {
        "matches": all(allclose(a, b, "model") for a, b in pairs),
        "max_abs_diff": max(float(np.max(g, where=np.isfinite(g), initial=0)) for g in gaps),
        "nonfinite": any(not np.isfinite(b).all() for _, b in pairs),
    }


def run_model_set(args: argparse.Namespace) -> None:
    """Coverage of the model set, then ORT against numba on every model numba runs."""
    folder = Path(tempfile.mkdtemp(prefix="wb-model-set-"))
    rows, results = [], []
    rounds, budget_s = (2, 0.05) if args.quick else (args.rounds, args.budget_s)
    batches = args.batches or ((1,) if args.quick else BATCHES)
    for entry, model, why in model_set(args.quick, args.only):
        row = coverage(entry, model, why)
        rows.append(row)
        print(row, flush=True)
        if row["status"] != "runs" or model is None:
            continue
        path = folder / f"{entry.name.replace(' ', '_')}.onnx"
        path.write_bytes(model.to_onnx().onnx_bytes)
        for batch in batches:
            # an empty disk cache for the children (this process keeps its own): the
            # first numba child compiles cold, the later ones reuse what it wrote
            os.environ["NUMBA_CACHE_DIR"] = str(folder / f"numba-cache-{path.stem}-{batch}")
            result = compare_model(entry.name, batch, rounds, budget_s, args.variants, path)
            results.append(result | {"model": entry.name})
    lines = [
        "| model | family | numba | ops refused | equals ORT (batch 1) | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        same = "-"
        if "matches" in row:
            same = "yes" if row["matches"] else "NO"
            same += " (NaN/inf in ORT's too)" if row["nonfinite"] else ""
        diff = f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "-"
        refused = ", ".join(row["refused"]) or "-"
        cells = [row["model"], row["family"], row["status"], refused, same, diff]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\n" + table(results, [])
    print(text)
    write_results(
        args.results,
        {"protocol": "wb.compare_runtimes", "rounds": rounds, "budget_s": budget_s,
         "coverage": rows, "models": results},
        text,
        quick=args.quick,
    )  # fmt: skip


def gemm_shapes() -> list[tuple[str, int, int, int]]:
    """(label, M, K, N) of GEMMs the sample CNN and MLP run at batch 32."""
    return [
        ("cnn conv2 as im2col (layout nhwc) b32", 32 * 64, 288, 64),
        ("cnn conv2 as Winograd, 1 of 16 (default) b32", 32 * 16, 32, 64),
        ("cnn conv3 as Winograd, 1 of 16 (default) b32", 32 * 4, 64, 64),
        ("mlp fc2 b32", 32, 512, 512),
        ("square 512", 512, 512, 512),
    ]


def _block_ms(fn: Callable[[], Any], budget_ms: float) -> float:
    """Mean milliseconds per call over a block of about ``budget_ms`` (at least 3 calls)."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(3, int(budget_ms / 1e3 / once))
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def compare_gemm(rounds: int, budget_ms: float) -> list[dict[str, Any]]:
    """BLAS from ``@njit`` against our tiled kernel on each shape (one kernel, then the other).

    Not alternated: the tiled kernel's OpenMP workers keep spinning after a parallel
    region and would slow whatever ran next in this process.
    """
    from workbench.backends.numba import cpu

    rng = np.random.default_rng(0)
    rows = []
    for label, m, k, n in gemm_shapes():
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((m, n), np.float32)
        kernels = {
            "blas": lambda a=a, b=b, out=out: cpu.gemm_blas(a, b, out),
            "tiled": lambda a=a, b=b, out=out: cpu.gemm_tiled[0](a, b, out),
        }
        times = {
            key: [_block_ms(fn, budget_ms) for _ in range(rounds)] for key, fn in kernels.items()
        }
        flops = 2.0 * m * k * n
        rows.append(
            {
                "shape": label,
                "m": m,
                "k": k,
                "n": n,
                "median_ms": {key: statistics.median(v) for key, v in times.items()},
                "gflops": {key: flops / statistics.median(v) / 1e6 for key, v in times.items()},
            }
        )
    return rows


#: the cold-start columns: the child's ``startup`` key, its heading, its format
COLD_START = (
    ("startup_s", "runtime start-up s", "{:.2f}"),
    ("compile_s", "compile s", "{:.2f}"),
    ("first_inference_ms", "first inference ms", "{:.0f}"),
)


def cold_start(result: dict[str, Any], runtime: str, key: str) -> str:
    """``key`` of a runtime's ``startup`` in its first child process of ``result`` and
    the lowest of its later ones, as "first / later" ("-" where none ran)."""
    values = [
        float(run["startup"][key])
        for run in sorted(result.get("results", []), key=lambda r: (r["round"], r["position"]))
        if run["runtime"] == runtime and key in (run.get("startup") or {})
    ]
    form = next(f for k, _, f in COLD_START if k == key)
    first = form.format(values[0]) if values else "-"
    return f"{first} / {form.format(min(values[1:])) if len(values) > 1 else '-'}"


def table(models: list[dict[str, Any]], gemms: list[dict[str, Any]]) -> str:
    """The Markdown report: one row per model, batch and runtime; then the GEMMs."""
    lines = [
        "Each runtime in its own fresh process at its own defaults, alternating rounds.",
        "ms = median of the per-round medians (range over rounds); ratio = runtime / ORT",
        "in the same round, median over rounds (range); load = highest 1-min load average",
        "any of the runtime's processes saw.",
        "",
        "Cold start, each as the runtime's first child / the lowest of its later children",
        "(for numba in --model-set mode: cold disk cache / cached); loading the file is in",
        "none of them (the JSON keeps it): runtime start-up s = the runtime's one-off start",
        "in the process, not the model's (ORT: its import; numba: its import, CPU target,",
        "BLAS and kernel modules), as `import torch` is not counted; compile s = the model's",
        "compile, no inference (ORT: session creation; numba: graph + plan at the timed",
        "shapes, its kernels loaded from the disk cache or compiled); first inference ms =",
        "the first call after it (first touch of buffers, lazy initialisation).",
        "",
        "| model | batch | runtime | rounds | ms | ms range | ratio vs ORT | ratio range | load "
        + "".join(f"| {title} first / later " for _, title, _ in COLD_START)
        + "|",
        "|---|---|---|---|---|---|---|---|---" + "|---" * len(COLD_START) + "|",
    ]
    for result in models:
        for row in result["table"]:
            starts = "".join(
                f"| {cold_start(result, row['runtime'], key)} " for key, _, _ in COLD_START
            )
            lines.append(
                f"| {result['model']} | {result['batch_size']} | {row['runtime']} "
                f"| {row['rounds']} | {row['median_ms']:.3f} "
                f"| {row['min_ms']:.3f}-{row['max_ms']:.3f} | {row['ratio']:.2f}x "
                f"| {row['ratio_min']:.2f}-{row['ratio_max']:.2f}x | {row['load_max']:.1f} "
                f"{starts}|" + (f" {row['errors']}" if row["errors"] else "")
            )
    if gemms:
        lines += [
            "",
            "| GEMM | M x K x N | BLAS GFLOP/s | own tiled GFLOP/s |",
            "|---|---|---|---|",
        ]
        for row in gemms:
            g = row["gflops"]
            lines.append(
                f"| {row['shape']} | {row['m']}x{row['k']}x{row['n']} "
                f"| {g['blas']:.1f} | {g['tiled']:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=1.0, help="per process, seconds")
    parser.add_argument("--variants", action="store_true", help="also numba nchw / own GEMM")
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    parser.add_argument("--model-set", action="store_true", help="the issue-27 model set")
    parser.add_argument("--only", nargs="+", help="with --model-set: these models of the set")
    parser.add_argument("--batches", nargs="+", type=int, help="with --model-set: batch sizes")
    parser.add_argument(
        "--results",
        default="numba_model_set",
        help="with --model-set: the results file's name (results/<name>.md/.json), so runs "
        "of different models of the set (the zoo, torchvision) do not replace each other",
    )
    args = parser.parse_args()
    if args.model_set:
        run_model_set(args)
        return
    models, rounds, budget_s = MODELS, args.rounds, args.budget_s
    if args.quick:
        models, rounds, budget_s = MODELS[:1], 2, 0.05
    results = [
        compare_model(m, b, rounds, budget_s, args.variants) for m in models for b in BATCHES
    ]
    gemms = compare_gemm(rounds, 5.0 if args.quick else 30.0)
    text = table(results, gemms)
    print(text)
    write_results(
        "numba_cpu",
        {
            "protocol": "wb.compare_runtimes: own process per runtime, own defaults, alternated",
            "rounds": rounds,
            "budget_s": budget_s,
            "models": results,
            "gemm": gemms,
        },
        text,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
