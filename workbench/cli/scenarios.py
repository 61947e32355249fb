"""``workbench scenario`` and ``workbench slo``: serving scenarios from the command line.

Example:
    workbench scenario digits-cnn --kind server --rate 200 --target-ms 10 --json run.json
    workbench slo digits-cnn --p99-ms 5 --backends onnxruntime torch --price-per-hour 0.10
    workbench scenario dlrm --kind server --rate 20 --candidates 500 --target-ms 50
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workbench.argtypes import (
    batch_int,
    count_int,
    duration_s,
    nonnegative_float,
    positive_float,
    positive_int,
    threads_int,
)


def _scenario(args: argparse.Namespace) -> int:
    from workbench.scenarios import scenario

    result = scenario(
        args.model,
        args.kind,
        args.backend,
        args.device,
        rate_per_s=args.rate,
        max_batch=args.max_batch,
        batch_window_ms=args.batch_window_ms,
        target_latency_ms=args.target_ms,
        samples_per_query=args.samples_per_query,
        interval_ms=args.interval_ms,
        batch_size=args.batch_size,
        min_queries=args.min_queries,
        min_duration_s=args.min_duration,
        seed=args.seed,
        options={"threads": args.threads} if args.threads else None,
        price_per_hour=args.price_per_hour,
        tdp_watts=args.tdp_watts,
        **_ranking(args),
    )
    print(result.summary())
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    if result.valid:
        return 0
    tries = [hint for key, hint in _HINTS if any(key in reason for reason in result.reasons)]
    print(
        f"workbench: the run is INVALID ({'; '.join(result.reasons)}); "
        f"for a valid run try {' or '.join(tries) or 'a lower --rate'}",
        file=sys.stderr,
    )
    return 1


#: what to try for each kind of reason a run is invalid
_HINTS = (
    ("fell behind", "a lower --rate (the load generator could not keep up on this machine)"),
    ("dropped", "a lower --rate, or batching (--max-batch 8 --batch-window-ms 1)"),
    ("over the target", "a lower --rate, a larger --target-ms, or batching (--max-batch 8)"),
    ("than the minimum", "a longer --min-duration or fewer --min-queries"),
    ("missed their", "a longer --interval-ms or fewer --samples-per-query"),
)


def _variants(args: argparse.Namespace) -> list[Any] | None:
    """The models named by ``--variants`` (``baseline`` or transform specs).

    A variant that cannot be built is left out with a line saying why; the others run.

    Raises:
        TransformError: no variant could be built.
    """
    if not args.variants:
        return None
    import workbench as wb
    from workbench.cli.sweep import load_data, parse_variant
    from workbench.errors import TransformError, WorkbenchError

    model = wb.load(args.model)
    data = load_data(args.data) if args.data else None
    models = []
    for text in args.variants:
        try:
            spec = parse_variant(text)
            models.append(model if spec == "baseline" else wb.transform(model, spec, data=data))
        except WorkbenchError as exc:
            print(f"failed: variant {text}: {exc}", file=sys.stderr)
    if not models:
        raise TransformError(f"none of the variants {args.variants} could be built")
    return models


def _slo(args: argparse.Namespace) -> int:
    from workbench.scenarios import slo

    result = slo(
        args.model,
        args.p99_ms,
        backends=args.backends,
        variants=_variants(args),
        devices=args.devices,
        steps=args.steps,
        min_queries=args.min_queries,
        min_duration_s=args.min_duration,
        options={"threads": args.threads} if args.threads else None,
        price_per_hour=args.price_per_hour,
        **_ranking(args),
    )
    print(result.summary())
    failed = result.table[result.table["limited_by"].astype(str).str.startswith("failed: ")]
    for row in failed.itertuples():
        print(f"failed: {row.variant} on {row.backend}/{row.device}: {row.limited_by[8:]}")
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0 if len(failed) < len(result.table) else 1


def _ranking(args: argparse.Namespace) -> dict[str, Any]:
    """``candidates`` and ``user_inputs`` for a ranking run (none without --candidates)."""
    user = args.user_inputs.split(",") if args.user_inputs else None
    return {"candidates": args.candidates, "user_inputs": user}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a model file (.onnx, .pt2, TorchScript) or a sample name")
    p.add_argument(
        "--min-queries", type=positive_int, default=None, help="override the minimum queries"
    )
    p.add_argument(
        "--min-duration", type=duration_s, default=None, help="override the minimum seconds"
    )
    p.add_argument("--threads", type=threads_int, default=None, help="intra-op threads")
    p.add_argument(
        "--price-per-hour",
        type=positive_float,
        default=None,
        help="the machine's price per hour (from your provider's price list) for cost per million",
    )
    p.add_argument(
        "--candidates",
        type=positive_int,
        default=None,
        help="ranking: items each request scores (one user's features over N candidates)",
    )
    p.add_argument(
        "--user-inputs",
        default=None,
        help="ranking: comma-separated inputs holding the user's features (default the float ones)",
    )
    p.add_argument("--json", default=None, help="write the result as JSON to this path")


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``scenario`` and ``slo`` on the ``workbench`` command."""
    from workbench.scenarios.result import KINDS

    p = sub.add_parser("scenario", help="run a LoadGen-style serving scenario")
    _common(p)
    p.add_argument("--kind", default="single-stream", choices=KINDS, help="the scenario")
    p.add_argument("--backend", default="onnxruntime", help="backend name (default onnxruntime)")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.add_argument("--rate", type=positive_float, default=None, help="server: offered queries/s")
    p.add_argument("--max-batch", type=batch_int, default=1, help="server: dynamic batch limit")
    p.add_argument(
        "--batch-window-ms", type=nonnegative_float, default=0.0, help="server: batching window"
    )
    p.add_argument("--target-ms", type=positive_float, default=None, help="server: latency target")
    p.add_argument("--samples-per-query", type=batch_int, default=8, help="multi-stream samples")
    p.add_argument("--interval-ms", type=positive_float, default=10.0, help="multi-stream interval")
    p.add_argument("--batch-size", type=batch_int, default=32, help="offline batch size")
    p.add_argument("--seed", type=count_int, default=0, help="server arrival seed")
    p.add_argument(
        "--tdp-watts",
        type=positive_float,
        default=None,
        help="also show a labelled TDP x time estimate",
    )
    p.set_defaults(func=_scenario)

    p = sub.add_parser("slo", help="highest server rate within a p99 budget, per backend")
    _common(p)
    p.add_argument(
        "--p99-ms", type=positive_float, required=True, help="the p99 latency budget (ms)"
    )
    p.add_argument("--backends", nargs="+", default=["onnxruntime"], help="backend names")
    p.add_argument("--devices", nargs="+", default=["cpu"], help="device names")
    p.add_argument(
        "--variants", nargs="+", default=None, help="baseline and transforms, e.g. int8-dynamic"
    )
    p.add_argument("--data", default=None, help=".npz with x and y, for calibrated variants")
    p.add_argument("--steps", type=positive_int, default=5, help="server runs per bisection")
    p.set_defaults(func=_slo)
