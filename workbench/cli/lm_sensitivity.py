"""``workbench lm-sensitivity``: the KL cost of quantizing each layer of a language model
alone, and with ``--budget`` the mixed-precision plan that measures within it.

Example:
    workbench lm-sensitivity llama-stdlib
    workbench lm-sensitivity llama-stdlib --granularity block --windows 32
    workbench lm-sensitivity llama-stdlib --budget 0.002 --json plan.json
"""

from __future__ import annotations

import argparse

from workbench.argtypes import count_int, positive_float, positive_int


def _sensitivity(args: argparse.Namespace) -> int:
    from workbench.loaders.language import language_model
    from workbench.optimize.lm_sensitivity import lm_mixed_plan, lm_sensitivity
    from workbench.profiling.results import dump_json

    model = language_model(args.model)
    result = lm_sensitivity(
        model,
        args.config,
        granularity=args.granularity,
        layers=args.layer or None,
        windows=args.windows,
        window_length=args.window_length,
        seed=args.seed,
    )
    print(result)
    data = {"sensitivity": result.to_dict()}
    if args.budget is not None:
        plan = lm_mixed_plan(result, kl_budget=args.budget, keep=args.keep)
        print(f"\nplan: {plan}")
        data["plan"] = plan.to_dict()
    if args.json:
        dump_json(data, args.json, 1)
        print(f"\nwrote {args.json}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``lm-sensitivity`` on the ``workbench`` command."""
    from workbench.loaders.language import TRAINED_LLAMAS

    p = sub.add_parser(
        "lm-sensitivity",
        help="KL cost of quantizing each layer of a language model alone; a plan under a budget",
    )
    p.add_argument(
        "model",
        help="a trained model: a local transformers folder or a trained sample "
        f"({', '.join(TRAINED_LLAMAS)}); random-weight configs are refused (no accuracy)",
    )
    p.add_argument(
        "--config",
        default="int4",
        choices=["int4", "int8", "int8-dynamic"],
        help="what each layer is quantized to, alone (default int4)",
    )
    p.add_argument(
        "--granularity",
        default="projection",
        choices=["projection", "block"],
        help="a row per projection (every Linear, default) or per decoder block",
    )
    p.add_argument(
        "--layer",
        action="append",
        default=None,
        metavar="PATH",
        help="a module path to try instead (repeat for more), e.g. model.layers.0.mlp",
    )
    p.add_argument("--windows", type=positive_int, default=64, help="held-out windows")
    p.add_argument("--window-length", type=positive_int, default=64, help="tokens per window")
    p.add_argument("--seed", type=count_int, default=1, help="window starts and bootstrap")
    p.add_argument(
        "--budget",
        type=positive_float,
        default=None,
        metavar="NATS",
        help="also find the mixed int4 plan whose measured mean KL is within this budget",
    )
    p.add_argument(
        "--keep",
        default="int8",
        choices=["int8", "fp32"],
        help="the precision of the layers the plan keeps (default int8)",
    )
    p.add_argument(
        "--json",
        default=None,
        help='write {"sensitivity": ..., "plan": ...} here (LMSensitivity / LMMixedPlan JSON)',
    )
    p.set_defaults(func=_sensitivity)
