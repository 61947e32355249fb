"""Generative quantization: decode tokens/s of each language-model variant against HF
transformers eager fp32, and the same recipe's KL on the trained sample.

Speed (issue 31's target: the best variant's decode tokens/s >= 4x eager fp32 at batch 1
on the ``llama-100m`` config, random weights, for speed only): each variant
(`wb.lm_quantize`: fp32 ORT export, int4 and int8 MatMulNBits with accuracy level 4,
ORT dynamic int8, bf16 where the CPU has the instructions, torchao int8 where installed)
and the eager fp32 baseline are built and profiled (`wb.generate_profile`, greedy, batch
1) each in a fresh process per round at its runtime's own defaults, the order rotated
from round to round; the round with the median TPOT stands for the variant and the
range over rounds is kept.

Accuracy (target: that recipe's KL <= 0.01): `wb.lm_accuracy` of the same recipes built
from the trained ``llama-stdlib`` sample, on its held-out text (KL of the next-token
distributions against fp32, its 95% bootstrap interval, top-1 agreement, delta
perplexity). The table is `wb.lm_tradeoff`'s: speed of the 100M config beside the KL of
the same recipe on the trained sample (``kl_model`` says which).

Mixed precision (target: a plan under a KL budget of 0.002 keeps >= 75% of the int4
speed-up): `wb.lm_sensitivity` of int4 on llama-stdlib, one row per projection, then
`wb.lm_mixed_plan` with ``--kl-budget``: the fewest projections kept in int8 whose whole
plan MEASURES within the budget on the same held-out windows. Its row's KL is that
measurement; its speed is the same plan on the speed config, the trained sample's layer
``i`` of ``n`` standing for the speed config's layers ``j`` with ``j * n // N == i`` (the
same share of each projection kind kept in int8; ``lm_head`` is ``lm_head``). Kept: its
decode speed-up over eager divided by int4's.

    python benchmarks/lm_quantize.py [--rounds 3] [--runs 3] [--prompt-length 32]
        [--output-length 32] [--windows 64] [--kl-budget 0.002] [--quick]

``--quick`` proves the script works (llama-tiny for speed, one round, one run, 8 tokens,
8 accuracy windows) and writes ``results/lm_quantize.quick.*``; it is not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

from _common import write_results

BASELINE = "eager-fp32"
MIXED = "int4-mixed"
TARGET_SPEEDUP, TARGET_KL = 4.0, 0.01
#: the share of int4's decode speed-up over eager the mixed plan must keep
TARGET_KEPT = 0.75


def variants() -> list[str]:
    """The eager baseline and every variant this machine can build."""
    from workbench.optimize.lm_quantize import lm_methods

    names = [BASELINE, *(name for name, why in lm_methods().items() if why is None)]
    if "int4" in names:  # the plan is int4 with some layers wider: it needs int4
        names.insert(names.index("int4") + 1, MIXED)
    return names


def build(name: str, model: Any, plan: dict[str, Any] | None = None) -> Any:
    from workbench.optimize.lm_quantize import WeightOnly, lm_config_from_recipe, lm_quantize

    if name == BASELINE:
        return model
    if name == MIXED:
        assert plan is not None, "the mixed variant needs the plan's recipe"
        return lm_quantize(model, scaled(lm_config_from_recipe(plan), model))
    if name in ("int4", "int8"):  # accuracy level 4: int8 activations, the fast CPU path
        return lm_quantize(model, WeightOnly(bits=int(name[-1]), accuracy_level=4))
    return lm_quantize(model, name)


def scaled(config: Any, model: Any) -> Any:
    """The plan (found on llama-stdlib) for ``model``: a path under the sample's block
    ``i`` of ``n`` stands for that path under each of ``model``'s ``N`` blocks ``j`` with
    ``j * n // N == i``; a path outside the blocks (``lm_head``) for itself."""
    import dataclasses
    import re

    from workbench.loaders.language import language_model

    sample = language_model("llama-stdlib").config.num_hidden_layers
    blocks = model.config.num_hidden_layers

    def mapped(paths: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for path in paths:
            match = re.fullmatch(r"(.*\.layers)\.(\d+)(\..*)?", path)
            if match is None:
                out.append(path)
                continue
            head, index, tail = match.group(1), int(match.group(2)), match.group(3) or ""
            out += [f"{head}.{j}{tail}" for j in range(blocks) if j * sample // blocks == index]
        return tuple(out)

    return dataclasses.replace(config, int8=mapped(config.int8), exclude=mapped(config.exclude))


def mixed_plan(args: argparse.Namespace, length: int) -> Any:
    """`wb.lm_mixed_plan` of int4 on llama-stdlib within ``--kl-budget`` (or its error)."""
    from workbench.errors import WorkbenchError
    from workbench.loaders.language import language_model
    from workbench.optimize.lm_sensitivity import lm_mixed_plan, lm_sensitivity

    started = time.perf_counter()
    sample = language_model("llama-stdlib")
    sensitivity = lm_sensitivity(sample, "int4", windows=args.windows, window_length=length)
    try:
        plan = lm_mixed_plan(sensitivity, kl_budget=args.kl_budget)
    except WorkbenchError as exc:
        print(f"{MIXED}: {exc}", flush=True)
        return sensitivity, None
    took = time.perf_counter() - started
    print(f"{MIXED}: {plan} ({took:.0f} s with the sensitivity)", flush=True)
    return sensitivity, plan


def child(args: argparse.Namespace) -> None:
    """One variant, one round, in this fresh process: its profile as JSON."""
    from workbench.loaders.language import language_model
    from workbench.profiling.generate import generate_profile

    plan = json.loads(args.plan_recipe) if args.plan_recipe else None
    variant = build(args.child_variant, language_model(args.model, seed=0), plan)
    g = generate_profile(
        variant,
        backend=getattr(variant, "runtimes", ("torch",))[0],
        prompt_length=args.prompt_length,
        output_length=args.output_length,
        runs=args.runs,
        warmup=1,
        check_tokens=False,  # random weights: the tokens say nothing of the recipe
    )
    facts = {
        "label": getattr(variant, "label", None),
        "size_bytes": getattr(variant, "size_bytes", None),
        "recipe": getattr(variant, "recipe", None),
    }
    print("RESULT " + json.dumps({"profile": g.to_dict(), **facts}), flush=True)


def run_child(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child-variant", variant, "--model", args.model]
    for flag in ("prompt_length", "output_length", "runs"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if variant == MIXED:
        command += ["--plan-recipe", json.dumps(args.plan.recipe)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {out.returncode}: {last}"}
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def accuracies(names: list[str], windows: int, length: int) -> dict[str, Any]:
    """Each recipe's `LMAccuracy` on the trained sample (None for the baseline)."""
    from workbench.evaluation.lm_accuracy import lm_accuracy
    from workbench.loaders.language import language_model

    sample = language_model("llama-stdlib")
    return {
        name: lm_accuracy(build(name, sample), windows=windows, window_length=length)
        for name in names
        if name not in (BASELINE, MIXED)
    }


def shown(value: float | None, spec: str) -> str:
    """A table cell: the number, or a dash where none was measured (None, NaN)."""
    return "—" if value is None or math.isnan(value) else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--output-length", type=int, default=32)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--kl-budget", type=float, default=0.002, help="the mixed plan's")
    parser.add_argument("--model", default="llama-100m", help="the speed config")
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    parser.add_argument("--child-variant", help=argparse.SUPPRESS)
    parser.add_argument("--plan-recipe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_variant:
        child(args)
        return
    if args.quick:
        args.rounds, args.runs, args.output_length, args.prompt_length = 1, 1, 8, 8
        args.model, args.windows = "llama-tiny", 8
    from workbench.evaluation.lm_accuracy import lm_tradeoff
    from workbench.profiling.generate import GenerationProfile

    length = 64 if not args.quick else 24
    names = variants()
    sensitivity, args.plan = mixed_plan(args, length) if MIXED in names else (None, None)
    if args.plan is None and MIXED in names:
        names.remove(MIXED)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for index in range(args.rounds):
        shift = index % len(names)  # rotate who goes first: nobody always meets a warm machine
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            result = run_child(name, args)
            rounds[name].append(result)
            what = result.get("error") or f"TPOT {result['profile']['tpot']['median']:.3g} ms"
            took = time.perf_counter() - started
            print(f"{name} round {index + 1}: {what} ({took:.0f} s)", flush=True)
    accuracy = accuracies(names, args.windows, length)
    if args.plan is not None:
        accuracy[MIXED] = args.plan.accuracy
    points, spread = [], {}
    for name in names:
        done = [r for r in rounds[name] if "error" not in r]
        if not done:
            print(f"{name}: every round failed: {rounds[name][0]['error']}", flush=True)
            continue
        done.sort(key=lambda r: r["profile"]["tpot"]["median"])
        middle = done[len(done) // 2]
        stand_in = SimpleNamespace(**{k: v for k, v in middle.items() if k != "profile"})
        profile = GenerationProfile.from_dict(middle["profile"])
        points.append((stand_in, profile, accuracy.get(name)))
        tpots = [r["profile"]["tpot"]["median"] for r in done]
        spread[profile.backend, getattr(stand_in, "label", None) or "baseline"] = (
            min(tpots),
            max(tpots),
        )
    table = lm_tradeoff(points)
    df = table.df
    best = df[df["variant"] != "baseline"].sort_values("throughput_per_s").iloc[-1]
    verdict = {
        "best_variant": best["variant"],
        "best_backend": best["backend"],
        "speedup_vs_eager": float(best["speedup_vs_baseline"]),
        "kl_on_sample": None
        if best["metric_value"] != best["metric_value"]
        else float(best["metric_value"]),
    }
    verdict["meets_speed"] = verdict["speedup_vs_eager"] >= TARGET_SPEEDUP
    verdict["meets_kl"] = (
        verdict["kl_on_sample"] is not None and verdict["kl_on_sample"] <= TARGET_KL
    )
    verdict.update(mixed_verdict(df, args))
    settings = {
        "speed_model": args.model,
        "accuracy_model": "llama-stdlib",
        "rounds": args.rounds,
        "runs": args.runs,
        "prompt_length": args.prompt_length,
        "output_length": args.output_length,
        "windows": args.windows,
        "kl_budget": args.kl_budget,
        "batch_size": 1,
    }
    lines = [
        f"Speed: {args.model} (random weights), batch 1, prompt {args.prompt_length}, "
        f"{args.output_length} tokens, {args.rounds} rounds x {args.runs} runs, a fresh "
        f"process each; KL: the same recipe on llama-stdlib, {args.windows} held-out windows.",
        "",
        "| variant | runtime | decode tok/s | TPOT ms (range over rounds) | TTFT ms | "
        "weights+KV MB | size MB | KL [95% CI] | top-1 | Δ ppl | vs eager | Pareto |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in df.itertuples():
        low, high = spread[row.backend, row.variant]
        kl = shown(row.metric_value, ".3g")
        if kl != "—" and not math.isnan(row.kl_ci_low):
            kl += f" [{row.kl_ci_low:.3g}, {row.kl_ci_high:.3g}]"
        top1, ppl = shown(row.top1_agreement, ".1%"), shown(row.delta_perplexity, "+.3g")
        lines.append(
            f"| {row.variant} | {row.backend} | {row.throughput_per_s:.1f} | "
            f"{row.latency_ms:.3g} ({low:.3g}–{high:.3g}) | {row.ttft_ms:.3g} | "
            f"{row.memory_bytes / 1e6:.1f} | {row.size_bytes / 1e6:.1f} | {kl} | {top1} | "
            f"{ppl} | {row.speedup_vs_baseline:.2f}x | {'yes' if row.pareto else ''} |"
        )
    lines += [
        "",
        f"Best: {verdict['best_variant']} on {verdict['best_backend']}, "
        f"{verdict['speedup_vs_eager']:.2f}x eager fp32 decode tokens/s (target >= "
        f"{TARGET_SPEEDUP:g}x: {'met' if verdict['meets_speed'] else 'NOT met'}); its KL on "
        f"llama-stdlib {shown(verdict['kl_on_sample'], '.3g')} (target <= {TARGET_KL:g}: "
        f"{'met' if verdict['meets_kl'] else 'NOT met'}).",
        mixed_line(verdict, args),
        *table.notes,
    ]
    text = "\n".join(lines)
    rows = json.loads(df.to_json(orient="records"))
    write_results(
        "lm_quantize",
        {
            "settings": settings,
            "verdict": verdict,
            "rows": rows,
            "accuracy": {k: v.to_dict() for k, v in accuracy.items()},
            "sensitivity": sensitivity.to_dict() if sensitivity else None,
            "plan": args.plan.to_dict() if args.plan else None,
            "rounds": {
                k: [r.get("error") or r["profile"]["tpot"] for r in v] for k, v in rounds.items()
            },
        },
        text,
        quick=args.quick,
    )
    print(text)


def mixed_verdict(df: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The mixed plan's decode speed-up over eager against int4's (both on ORT)."""
    if args.plan is None:
        return {"mixed_plan": None, "meets_mixed": False}
    recipes = [(row, row.recipe or {}) for row in df.itertuples()]
    plain = [
        r for r, rec in recipes if rec.get("name") == "weight-only" and rec["config"]["bits"] == 4
    ]
    mixed = next((r for r, rec in recipes if rec.get("name") == "weight-only-mixed"), None)
    if mixed is None or not plain:
        return {"mixed_plan": args.plan.recipe["label"], "meets_mixed": False}
    int4 = float(plain[0].speedup_vs_baseline)
    speedup = float(mixed.speedup_vs_baseline)
    return {
        "mixed_plan": args.plan.recipe["label"],
        "mixed_kept_layers": list(args.plan.kept),
        "mixed_kl_on_sample": args.plan.accuracy.kl_mean,
        "mixed_speedup_vs_eager": speedup,
        "int4_speedup_vs_eager": int4,
        "mixed_keeps": speedup / int4,
        "mixed_keeps_of_gain": (speedup - 1) / (int4 - 1) if int4 > 1 else None,
        "meets_mixed": speedup / int4 >= TARGET_KEPT
        and args.plan.accuracy.kl_mean <= args.kl_budget,
    }


def mixed_line(verdict: dict[str, Any], args: argparse.Namespace) -> str:
    """The mixed-precision target's sentence for the results file."""
    if verdict.get("mixed_speedup_vs_eager") is None:
        why = "no plan met it" if args.plan is None else "its speed or int4's was not measured"
        return f"Mixed plan within KL {args.kl_budget:g}: {why} (target NOT met)."
    gain = verdict["mixed_keeps_of_gain"]
    return (
        f"Mixed plan within KL {args.kl_budget:g} ({verdict['mixed_plan']}: "
        f"{', '.join(verdict['mixed_kept_layers']) or 'nothing'} in int8 on llama-stdlib; KL "
        f"{verdict['mixed_kl_on_sample']:.3g} measured): {verdict['mixed_speedup_vs_eager']:.2f}x "
        f"eager against int4's {verdict['int4_speedup_vs_eager']:.2f}x, keeps "
        f"{verdict['mixed_keeps']:.0%} of the int4 speed-up"
        + (f" ({gain:.0%} of its gain over eager)" if gain is not None else "")
        + f" (target >= {TARGET_KEPT:.0%}: {'met' if verdict['meets_mixed'] else 'NOT met'})."
    )


if __name__ == "__main__":
    main()
