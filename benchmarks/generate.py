"""Generation speed: TTFT, TPOT and decode tokens/s, torch eager against ONNX Runtime
(and onnxruntime-genai where its extra is installed).

For each random-weight Llama config (`workbench.loaders.language.RANDOM_LLAMAS`:
``llama-tiny``, and ``llama-100m`` unless ``--models`` says otherwise; random weights are
for speed only) `wb.generate_profile` generates greedily (batch 1 unless ``--batch-size``
says otherwise) on each runtime with the fair protocol of ``benchmarks/runtimes.py``: each
runtime in its own fresh process per round at its own defaults (torch: transformers eager
with its ``DynamicCache``; ONNX Runtime: the exported decoder, the cache kept bound between
steps, the onnxruntime backend's default threads and optimisation; numba: the same exported
decoder run by the Numba executor, its KV cache preallocated and written in place, every
step's plan made in an untimed generation first; onnxruntime-genai, where installed: the
model built by its model builder (fp32, CPU) in the child before timing, its own generation
loop), the order of the runtimes alternated from round to round, the range over rounds kept.
Each process also checks its greedy tokens against torch's (``diverges_at``) and reads this
machine's memory bandwidth for the decode roofline (`wb.machine_ceilings`, cached on disk;
measured by the first process that needs it).

Reported per model and runtime: TTFT, TPOT and the inter-token p90 (the median of the
rounds' medians, with the range over rounds), prefill and decode tokens/s at those
medians, the fraction of the measured bandwidth decoding attains, whether the tokens
match torch's, the per-layer medians' sum over each phase's median (where the runtime
times layers: torch's hooks, the Numba executor's step timing; on ORT the decoder's
blocks timed plain between plain generations, each block split among its modules by
the node profiler, with the profiler's own sums beside; the per-layer generations run
after the timed ones, so the headline numbers carry no instruments; issue 28's target:
0.95 to 1.05), the KV-cache writes' share of a decode step (the ``*.cache_update``
rows), the TPOT of the per-layer generations against the plain TPOT (what the breakdown
costs; target <= 1.1x), noisy rounds; and each runtime's decode tokens/s over torch's (issue
28's target for ONNX Runtime: >= 1.2x at batch 1).

    python benchmarks/generate.py [--rounds 3] [--runs 3] [--models llama-tiny,llama-100m]
        [--prompt-length 32] [--output-length 32] [--batch-size 1] [--quick]

``--batch-size N`` generates N sequences at once (random prompts of one length) and writes
``results/generate_bN.*``; issue 28's speed targets are stated at batch 1.

``--quick`` proves the script works (llama-tiny only, one round, one run, 8 tokens) and
writes ``results/generate.quick.*``; it is not a measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import write_results

RUNTIMES = ("torch", "onnxruntime", "numba")
#: runtimes of optional extras, benchmarked where installed (genai: onnxruntime-genai,
#: the decoder built by its model builder, fp32, in the child before timing)
OPTIONAL_RUNTIMES = ("genai",)
UNATTRIBUTED = "(unattributed)"  # workbench.profiling.table's gap row


def runtimes_here() -> tuple[str, ...]:
    """`RUNTIMES` and the optional ones whose backend is usable here."""
    from workbench.backends.base import get_backend

    return RUNTIMES + tuple(r for r in OPTIONAL_RUNTIMES if get_backend(r).devices())


def child(args: argparse.Namespace) -> None:
    """One runtime, one model, one round, in this fresh process: the profile as JSON."""
    from workbench.loaders.language import language_model
    from workbench.profiling.generate import generate_profile

    started = time.perf_counter()
    model = language_model(args.child_model, seed=0)
    built = time.perf_counter()
    g = generate_profile(
        model,
        backend=args.child_backend,
        prompt_length=args.prompt_length,
        output_length=args.output_length,
        batch_size=args.batch_size,
        runs=args.runs,
        warmup=1,
        roofline=True,
        layers=True,  # timed after the plain runs: the headline numbers never carry hooks
    )
    data = g.to_dict()
    data["build_s"] = built - started
    data["process_s"] = time.perf_counter() - started  # build, export, check and timing
    print("RESULT " + json.dumps(data), flush=True)


def run_child(model: str, runtime: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child-model",
        model,
        "--child-backend",
        runtime,
        "--prompt-length",
        str(args.prompt_length),
        "--output-length",
        str(args.output_length),
        "--batch-size",
        str(args.batch_size),
        "--runs",
        str(args.runs),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {out.returncode}: {last}"}
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def summarise(model: str, rounds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per runtime: medians over the rounds of each round's median, and ranges."""
    rows = []
    for runtime, results in rounds.items():
        good = [r for r in results if "error" not in r]
        row: dict[str, Any] = {"model": model, "runtime": runtime, "rounds": len(good)}
        row["errors"] = sorted({r["error"] for r in results if "error" in r})
        if not good:
            rows.append(row)
            continue
        for key, field, stat in (
            ("ttft", "ttft", "median"),
            ("tpot", "tpot", "median"),
            ("itl_p90", "inter_token", "p90"),
        ):
            values = [r[field][stat] for r in good if r[field] is not None]
            row[f"{key}_ms"] = statistics.median(values) if values else None
            row[f"{key}_min_ms"] = min(values) if values else None
            row[f"{key}_max_ms"] = max(values) if values else None
        first = good[0]
        batch = first["batch_size"]
        row["prefill_tokens_per_s"] = batch * first["prompt_length"] * 1000.0 / row["ttft_ms"]
        row["decode_tokens_per_s"] = batch * 1000.0 / row["tpot_ms"] if row["tpot_ms"] else None
        fractions = [r["bandwidth_fraction"] for r in good if r["bandwidth_fraction"] is not None]
        row["bandwidth_fraction"] = statistics.median(fractions) if fractions else None
        row["bandwidth_bytes_per_s"] = first["bandwidth_bytes_per_s"]
        row["decode_bytes_per_step"] = first["decode_bytes_per_step"]
        row["weights_bytes"] = first["weights_bytes"]
        row["diverges_at"] = [r["diverges_at"] for r in good]
        row["noisy_rounds"] = sum(
            bool(r["ttft"]["noisy"] or (r["inter_token"] and r["inter_token"]["noisy"]))
            for r in good
        )
        row["process_s"] = statistics.median(r["process_s"] for r in good)
        for phase, field, stat in (
            ("prefill", "ttft", "median"),
            ("decode", "inter_token", "median"),
        ):
            ratios = [
                _layer_sum(r[f"{phase}_layers"]) / r[field][stat]
                for r in good
                if r[f"{phase}_layers"] and r[field]
            ]
            row[f"{phase}_layer_sum_ratio"] = statistics.median(ratios) if ratios else None
            # ORT: the median call's kernels as the node profiler reported them, before
            # its own per-kernel cost was taken off (`layers_method`)
            reported = [
                r["layers_method"][phase]["raw_sum_ms"] / r[field][stat]
                for r in good
                if (r.get("layers_method") or {}).get(phase, {}).get("raw_sum_ms") and r[field]
            ]
            row[f"{phase}_reported_sum_ratio"] = statistics.median(reported) if reported else None
            net = [
                r["layers_method"][phase]["net_sum_ms"] / r[field][stat]
                for r in good
                if (r.get("layers_method") or {}).get(phase, {}).get("net_sum_ms") and r[field]
            ]
            row[f"{phase}_net_sum_ratio"] = statistics.median(net) if net else None
            shares = [
                _cache_updates(r[f"{phase}_layers"]) / r[field][stat]
                for r in good
                if r[f"{phase}_layers"] and r[field]
            ]
            row[f"{phase}_cache_update_share"] = statistics.median(shares) if shares else None
        methods = [r["layers_method"] for r in good if r.get("layers_method")]
        row["blocks"] = len(methods[0].get("blocks", ())) if methods else None
        overheads = [m["profiler_overhead_ms"] * 1000.0 for m in methods]
        row["profiler_overhead_us"] = statistics.median(overheads) if overheads else None
        passes = [m["pass_s"] for m in methods if m.get("pass_s") is not None]
        row["layers_pass_s"] = statistics.median(passes) if passes else None
        costs = [r["profiling_cost"] for r in good if r.get("profiling_cost")]
        row["profiling_cost"] = statistics.median(costs) if costs else None
        layered = [r["layers_tpot"]["median"] for r in good if r.get("layers_tpot")]
        row["layers_tpot_ms"] = statistics.median(layered) if layered else None
        rows.append(row)
    torch = next((r for r in rows if r["runtime"] == "torch"), None)
    for row in rows:
        base = torch.get("decode_tokens_per_s") if torch else None
        own = row.get("decode_tokens_per_s")
        row["decode_vs_torch"] = own / base if own and base else None
    ort = next((r for r in rows if r["runtime"] == "onnxruntime"), None)
    for row in rows:
        base = ort.get("decode_tokens_per_s") if ort else None
        own = row.get("decode_tokens_per_s")
        row["decode_vs_onnxruntime"] = own / base if own and base else None
    return rows


def _layer_sum(records: list[dict[str, Any]]) -> float:
    """The per-layer medians of a phase added up, the ``(unattributed)`` gap left out."""
    return sum(r["latency_ms"] for r in records if r["layer"] != UNATTRIBUTED)


def _cache_updates(records: list[dict[str, Any]]) -> float:
    """The KV-cache writes' per-layer medians (the ``*.cache_update`` rows) added up."""
    return sum(r["latency_ms"] for r in records if r["layer"].endswith(".cache_update"))


def markdown(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    lines = [
        f"Batch {settings['batch_size']}, prompt {settings['prompt_length']} tokens, output "
        f"{settings['output_length']} tokens, greedy; {settings['rounds']} rounds, each "
        f"runtime in its own fresh process per round (order alternated), "
        f"{settings['runs']} timed generations after 1 warm-up per process; fp32, random "
        "weights (speed only). Latencies: median of the rounds' medians (range over rounds).",
        "",
        "| model | runtime | TTFT ms | TPOT ms | ITL p90 ms | prefill tok/s | decode tok/s "
        "| decode vs torch | bandwidth fraction | tokens vs torch | layer sums / phase "
        "(prefill, decode) | cache update / decode step | TPOT layers timed ms (x plain) "
        "| noisy rounds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row["rounds"]:
            lines.append(f"| {row['model']} | {row['runtime']} | failed: {row['errors']} |")
            continue
        diverged = [d for d in row["diverges_at"] if d is not None]
        tokens = (
            "reference"
            if row["runtime"] == "torch"
            else ("identical" if not diverged else f"differ from step {min(diverged)}")
        )
        fraction = row["bandwidth_fraction"]
        lines.append(
            f"| {row['model']} | {row['runtime']} | {_range(row, 'ttft')} | {_range(row, 'tpot')} "
            f"| {_range(row, 'itl_p90')} | {row['prefill_tokens_per_s']:,.0f} "
            f"| {row['decode_tokens_per_s']:,.1f} | {_ratio(row['decode_vs_torch'])} "
            f"| {'unavailable' if fraction is None else f'{fraction:.0%}'} | {tokens} "
            f"| {_sums(row)} | {_share(row['decode_cache_update_share'])} | {_cost(row)} "
            f"| {row['noisy_rounds']}/{row['rounds']} |"
        )
    lines.append("")
    for row in rows:
        if row["runtime"] == "numba" and row.get("decode_vs_onnxruntime"):
            slower = 1 / row["decode_vs_onnxruntime"]
            lines.append(
                f"- {row['model']}: ONNX Runtime decode tok/s / numba's = {slower:.2f}x "
                "(issue 28's target: <= 1.5x, identical tokens)"
            )
    bandwidth = next(
        (r["bandwidth_bytes_per_s"] for r in rows if r.get("bandwidth_bytes_per_s")), 0
    )
    if bandwidth:
        lines += [
            "",
            f"- bandwidth fraction: bytes a decode step reads (weights once + the KV cache "
            f"attended) / TPOT, over this machine's measured bandwidth "
            f"({bandwidth / 2**30:.1f} GiB/s, `wb.machine_ceilings`, measured under the load "
            "noted above)",
        ]
    lines += [
        "- layer sums / phase: the per-layer medians added up over the phase's plain median "
        "(prefill: TTFT; decode: the inter-token latency), from generations timed after the "
        "plain ones with the instruments on (torch: module hooks; numba: its step timing; "
        "ORT: between plain generations, on the kept inputs of each prefill and of the "
        "middle decode step, the decoder cut into blocks (decoder layers, embeddings, final "
        "norm, head) each timed in a plain session, in a process of their own whose block "
        "sessions share one thread pool (ORT's global pool, at the decoder's threads), as "
        "the whole graph's kernels share its session's, median of 3 chains, each block's time "
        "split among its modules by the node profiler's kernels on a profiling copy: the "
        "sums are the blocks' times; the profiler's own kernel sums, as reported and "
        "net of its per-kernel cost measured on a chain of cheap nodes, are shown beside; "
        "'pass': the seconds the blocks and the profiler took between the generations)",
        "- cache update / decode step: the `*.cache_update` rows (the KV write: the cache's "
        "update on torch, the Concat nodes writing `present.*` on ORT) over the inter-token "
        "median",
        "- TPOT layers timed: the TPOT of those instrumented generations (on ORT the "
        "generations run plain, the blocks and the profiler between them), and its ratio to "
        "the plain TPOT (what the per-layer breakdown costs)",
    ]
    return "\n".join(lines)


def _range(row: dict[str, Any], key: str) -> str:
    value = row.get(f"{key}_ms")
    if value is None:
        return "unavailable"
    return f"{value:.3g} ({row[f'{key}_min_ms']:.3g}-{row[f'{key}_max_ms']:.3g})"


def _sums(row: dict[str, Any]) -> str:
    prefill, decode = row["prefill_layer_sum_ratio"], row["decode_layer_sum_ratio"]
    if prefill is None:
        return "not done on this runtime"
    text = f"{prefill:.2f}, {'-' if decode is None else f'{decode:.2f}'}"
    raw = row.get("prefill_reported_sum_ratio"), row.get("decode_reported_sum_ratio")
    net = row.get("prefill_net_sum_ratio"), row.get("decode_net_sum_ratio")
    if raw[0] is not None:
        text += (
            f" ({row['blocks']} blocks timed plain; the profiler's kernels as reported: "
            f"{_pair(raw)}, net of {row['profiler_overhead_us']:.1f} us/kernel: {_pair(net)}; "
            f"pass {row['layers_pass_s']:.1f} s)"
        )
    return text


def _pair(values: tuple[float | None, float | None]) -> str:
    return ", ".join("-" if v is None else f"{v:.2f}" for v in values)


def _share(value: float | None) -> str:
    return "not done on this runtime" if value is None else f"{value:.1%}"


def _cost(row: dict[str, Any]) -> str:
    layered, cost = row["layers_tpot_ms"], row["profiling_cost"]
    if layered is None or cost is None:
        return "not done on this runtime"
    return f"{layered:.3g} ({cost:.2f}x)"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--output-length", type=int, default=32)
    parser.add_argument(
        "--batch-size", type=int, default=1, help="sequences per generation (results: generate_bN)"
    )
    parser.add_argument(
        "--models", type=lambda text: text.split(","), default=["llama-tiny", "llama-100m"]
    )
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    parser.add_argument("--child-model", help=argparse.SUPPRESS)
    parser.add_argument("--child-backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_model:
        child(args)
        return
    if args.quick:
        args.rounds, args.runs, args.output_length, args.prompt_length = 1, 1, 8, 8
        args.models = ["llama-tiny"]
    rows = []
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    runtimes = runtimes_here()
    for model in args.models:
        rounds: dict[str, list[dict[str, Any]]] = {runtime: [] for runtime in runtimes}
        for index in range(args.rounds):
            # alternate which runtime goes first, so neither always meets a warmer machine
            order = runtimes if index % 2 == 0 else tuple(reversed(runtimes))
            for runtime in order:
                started = time.perf_counter()
                result = run_child(model, runtime, args)
                rounds[runtime].append(result)
                took = time.perf_counter() - started
                what = result.get("error") or f"TPOT {result['tpot']['median']:.3g} ms"
                print(f"{model} round {index + 1} {runtime}: {what} ({took:.0f} s)", flush=True)
        rows += summarise(model, rounds)
        # the per-layer tables are summed into the rows; kept whole they would be most of the file
        raw[model] = {
            runtime: [{k: v for k, v in r.items() if not k.endswith("_layers")} for r in results]
            for runtime, results in rounds.items()
        }
    settings = {
        "rounds": args.rounds,
        "runs": args.runs,
        "prompt_length": args.prompt_length,
        "output_length": args.output_length,
        "batch_size": args.batch_size,
        "models": args.models,
    }
    table = markdown(rows, settings)
    write_results(
        "generate" if args.batch_size == 1 else f"generate_b{args.batch_size}",
        {"settings": settings, "rows": rows, "rounds": raw},
        table,
        quick=args.quick,
    )
    print(table)


if __name__ == "__main__":
    main()
