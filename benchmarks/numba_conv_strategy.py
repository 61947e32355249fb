"""Numba's convolution kernels chosen by measuring against the fixed rules, measured fairly.

Two runtimes of one backend, each in its own fresh processes at the same defaults but
``conv_strategy`` (`workbench.backends.numba.strategy`), alternated over ``--rounds``
rounds (`wb.compare_runtimes`): ``numba rules`` (the baseline: Winograd for 3x3 stride 1
with 16 channels or more, else im2col) and ``numba measure`` (the default: each
convolution's candidates timed at the first compile on this machine, the choice cached).
Per model and batch the strategy cache (``WORKBENCH_CACHE_DIR``) starts empty, so the
first ``measure`` child pays the measuring and the later ones read the cache; Numba's
kernel cache is the usual one (warm after the first run), so the compile seconds compare
the measuring, not kernel compilation. The models are from the Numba model set
(`numba_cpu.model_set`; torchvision's need the ``.venv-torchvision`` overlay on
``PYTHONPATH``).

    python benchmarks/numba_conv_strategy.py [--only NAME ...] [--batches 1 32]
                                             [--rounds 3] [--budget-s 1.0] [--quick]

``--quick`` (digits-cnn, batch 1, two short rounds) writes
``results/numba_conv_strategy.quick.*``: a smoke test, not a measurement.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import write_results
from numba_cpu import cold_start, model_set

import workbench as wb

RUNTIMES = (
    wb.Runtime("numba", options={"conv_strategy": "rules"}, label="numba rules"),
    wb.Runtime("numba", options={"conv_strategy": "measure"}, label="numba measure"),
)
MODELS = ("digits-cnn", "digits-resnet", "mobilenet_v3_small", "resnet18")


def _decisions(path: Path) -> dict[str, Any]:
    """From the strategy cache the children wrote: how many layer keys (a layer at one
    thread count) got each strategy, how many differ from the rules' pick, and the
    candidates' timings summed over those keys: the rules' kernels against the chosen
    ones, timed in the same alternated rounds."""
    import json

    from workbench.backends.numba.strategy import CACHE_FILE

    try:
        entries = json.loads((path / CACHE_FILE).read_text())["entries"].values()
    except (OSError, ValueError, KeyError):
        return {}
    counts: dict[str, int] = {}
    changed, rules_ms, chosen_ms = 0, 0.0, 0.0
    for entry in entries:
        counts[entry["strategy"]] = counts.get(entry["strategy"], 0) + 1
        changed += entry["strategy"] != entry["rules"]
        rules_ms += entry["times_ms"][entry["rules"]]
        chosen_ms += entry["times_ms"][entry["strategy"]]
    return {"counts": counts, "changed": changed, "rules_ms": rules_ms, "chosen_ms": chosen_ms}


def _progress(what: str, _: Any, message: str) -> None:
    print(f"  {what} {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=1.0, help="per process, seconds")
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.only, args.batches, args.rounds, args.budget_s = ["digits-cnn"], [1], 2, 0.05
    folder = Path(tempfile.mkdtemp(prefix="wb-conv-strategy-"))
    results: list[dict[str, Any]] = []
    lines = [
        "Each runtime in its own fresh processes, alternated; ms = median of the per-round",
        "medians (range); ratio = measure / rules in the same round (range); compile s =",
        "compile + plan (no runtime start-up, no inference) in the first child (empty",
        "strategy cache) / the fastest later one (strategy cache read). Strategies chosen:",
        "per layer key (a layer at one thread count) in the strategy cache, with the",
        "candidates' own timings summed (the rules' kernels against the chosen ones, timed",
        "in the same alternated rounds).",
        "",
        "| model | batch | rules ms | measure ms | measure / rules | compile s rules "
        "| compile s measure | strategies chosen | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry, model, why in model_set(False, args.only):
        if model is None:
            print(f"{entry.name}: not built ({why})", file=sys.stderr)
            continue
        path = folder / f"{entry.name.replace(' ', '_')}.onnx"
        path.write_bytes(model.to_onnx().onnx_bytes)
        for batch in args.batches:
            cache = folder / f"strategy-{path.stem}-{batch}"
            os.environ["WORKBENCH_CACHE_DIR"] = str(cache)  # the children's strategy cache
            comparison = wb.compare_runtimes(
                str(path), list(RUNTIMES), batch, rounds=args.rounds, budget_s=args.budget_s,
                progress=functools.partial(_progress, f"{entry.name} b{batch}"),
            )  # fmt: skip
            result = comparison.to_dict() | {"model": entry.name, "decisions": _decisions(cache)}
            results.append(result)
            rows = {
                row["runtime"]: row for row in comparison.table.reset_index().to_dict("records")
            }
            rules, measure = rows["numba rules"], rows["numba measure"]
            decided = result["decisions"]
            chosen = ", ".join(f"{k} {v}" for k, v in sorted(decided.get("counts", {}).items()))
            if decided.get("rules_ms"):
                chosen += (
                    f"; {decided['changed']} not the rules' pick; conv kernels "
                    f"{decided['chosen_ms']:.3g} ms chosen / {decided['rules_ms']:.3g} rules'"
                )
            lines.append(
                f"| {entry.name} | {batch} | {rules['median_ms']:.3f} "
                f"({rules['min_ms']:.3f}-{rules['max_ms']:.3f}) | {measure['median_ms']:.3f} "
                f"({measure['min_ms']:.3f}-{measure['max_ms']:.3f}) | {measure['ratio']:.2f}x "
                f"({measure['ratio_min']:.2f}-{measure['ratio_max']:.2f}) "
                f"| {cold_start(result, 'numba rules', 'compile_s')} "
                f"| {cold_start(result, 'numba measure', 'compile_s')} | {chosen or '-'} "
                f"| {max(rules['load_max'], measure['load_max']):.1f} |"
            )
    text = "\n".join(lines)
    print(text)
    data = {"protocol": "wb.compare_runtimes", "rounds": args.rounds, "models": results}
    write_results("numba_conv_strategy", data, text, quick=args.quick)


if __name__ == "__main__":
    main()
