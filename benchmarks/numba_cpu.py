"""The numba backend against ONNX Runtime (fp32, CPU) on the sample models.

The default numba configuration (channels-last convolutions, BLAS GEMM) is compared,
and for reference the ONNX layout (``layout="nchw"``) and our own GEMM. Each pair runs
in this process, interleaved: every round times a block of inferences on each backend
in turn, so drifting clocks and noisy neighbours hit both alike; the reported latency
is the median over rounds of each block's mean. The machine's load average is
recorded, since on a shared machine it moves every number. Target: numba within 1.5x
of ORT on the CNN and MLP (the transformer and ResNet are for information). Also
compares the two GEMMs the numba backend can use, BLAS called from ``@njit``
(``np.dot``) and our cache-blocked kernel, on GEMM shapes these models produce, in
GFLOP/s.

    python benchmarks/numba_cpu.py [--rounds 7] [--budget-ms 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import write_results

import workbench as wb

#: the issue's targets are on the first two; the others are reported for information
MODELS = ("digits-cnn", "digits-mlp", "digits-transformer", "digits-resnet")
BATCHES = (1, 32)
#: compile options of each numba configuration: the default, then two for comparison
PHASES: dict[str, dict[str, str]] = {
    "default": {},
    "nchw": {"layout": "nchw"},
    "tiled": {"gemm": "tiled"},
}


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


def compare_model(name: str, batch: int, rounds: int, budget_ms: float) -> dict[str, Any]:
    """ORT against each numba GEMM choice, each pair interleaved in its own phase.

    The phases are separate because the own-GEMM kernel runs OpenMP parallel regions,
    whose idle workers keep spinning and would slow whatever runs next; interleaving it
    with the others would charge that to them.
    """
    import onnxruntime as ort

    model = wb.samples.load(name)
    inputs = model.example_inputs(batch_size=batch)
    options = ort.SessionOptions()
    # ORT's idle threads spin by default, which starves whichever runtime runs next in
    # the same process (here: numba and its BLAS); without spinning both get the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    ort_session = ort.InferenceSession(
        model.to_onnx().onnx_bytes, options, providers=["CPUExecutionProvider"]
    )
    row: dict[str, Any] = {"model": name, "batch": batch, "phases": {}}
    for phase, options in PHASES.items():
        ours = wb.backend("numba").compile(model, "cpu", **options).runner(inputs)
        runners = {"onnxruntime": lambda: ort_session.run(None, inputs), "numba": ours}
        for run in runners.values():  # warm-up: compile, plan, fill caches
            for _ in range(5):
                run()
        samples: dict[str, list[float]] = {key: [] for key in runners}
        for _ in range(rounds):
            for key, run in runners.items():
                samples[key].append(_block_ms(run, budget_ms))
        medians = {key: statistics.median(values) for key, values in samples.items()}
        row["phases"][phase] = {
            "median_ms": medians,
            "samples_ms": samples,
            "ratio_vs_ort": medians["numba"] / medians["onnxruntime"],
        }
    return row


def gemm_shapes() -> list[tuple[str, int, int, int]]:
    """(label, M, K, N) of GEMMs the sample CNN and MLP run at batch 32."""
    return [
        ("cnn conv2 as im2col (layout nhwc) b32", 32 * 64, 288, 64),
        ("cnn conv2 as Winograd, 1 of 16 (default) b32", 32 * 16, 32, 64),
        ("cnn conv3 as Winograd, 1 of 16 (default) b32", 32 * 4, 64, 64),
        ("mlp fc2 b32", 32, 512, 512),
        ("square 512", 512, 512, 512),
    ]


def compare_gemm(rounds: int, budget_ms: float) -> list[dict[str, Any]]:
    from workbench.backends.numba import cpu

    rng = np.random.default_rng(0)
    rows = []
    for label, m, k, n in gemm_shapes():
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((m, n), np.float32)
        kernels = {
            "blas (np.dot in @njit)": lambda a=a, b=b, out=out: cpu.gemm_blas(a, b, out),
            "own tiled (parallel)": lambda a=a, b=b, out=out: cpu.gemm_tiled[0](a, b, out),
        }
        # one kernel after the other, not alternating: see compare_model
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


def table(models: list[dict[str, Any]], gemms: list[dict[str, Any]]) -> str:
    lines = [
        "Ratio = numba latency / ORT latency, each measured interleaved with ORT.",
        "",
        "| model | batch | ORT ms | numba ms | ratio | NCHW layout ratio | own GEMM ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in models:
        phases = row["phases"]
        med = phases["default"]["median_ms"]
        lines.append(
            f"| {row['model']} | {row['batch']} | {med['onnxruntime']:.3f} | {med['numba']:.3f} "
            f"| {phases['default']['ratio_vs_ort']:.2f}x "
            f"| {phases['nchw']['ratio_vs_ort']:.2f}x | {phases['tiled']['ratio_vs_ort']:.2f}x |"
        )
    lines += ["", "| GEMM | M x K x N | BLAS GFLOP/s | own tiled GFLOP/s |", "|---|---|---|---|"]
    for row in gemms:
        g = row["gflops"]
        lines.append(
            f"| {row['shape']} | {row['m']}x{row['k']}x{row['n']} "
            f"| {g['blas (np.dot in @njit)']:.1f} | {g['own tiled (parallel)']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget-ms", type=float, default=30.0)
    args = parser.parse_args()
    models = [compare_model(m, b, args.rounds, args.budget_ms) for m in MODELS for b in BATCHES]
    gemms = compare_gemm(args.rounds, args.budget_ms)
    text = table(models, gemms)
    load = os.getloadavg()
    text += (
        f"\n\nLoad average (1, 5, 15 min) at the end: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}"
    )
    print(text)
    write_results(
        "numba_cpu",
        {
            "rounds": args.rounds,
            "budget_ms": args.budget_ms,
            "load_average": load,
            "models": models,
            "gemm": gemms,
        },
        text,
    )


if __name__ == "__main__":
    main()
