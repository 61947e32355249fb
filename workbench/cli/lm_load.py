"""``workbench lm-load``: load an OpenAI-compatible streaming endpoint; TTFT, TPOT, goodput.

Example:
    workbench lm-load http://127.0.0.1:8000 --rate 4 --requests 32 --objective interactive
    workbench lm-load http://vllm:8000 --model meta-llama/Llama-2-7b-hf --concurrency 16
    workbench lm-load http://127.0.0.1:8000 --search --objective mlperf-llama2 --price-per-hour 2
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from workbench.argtypes import count_int, positive_float, positive_int


def _lm_load(args: argparse.Namespace) -> int:
    from workbench.errors import InputError
    from workbench.scenarios.lm_load import Objective, lm_load, lm_slo

    objective: Any = args.objective
    if args.ttft_ms is not None or args.tpot_ms is not None:
        if args.ttft_ms is None or args.tpot_ms is None:
            raise InputError("give both --ttft-ms and --tpot-ms, or an --objective preset")
        objective = Objective(args.ttft_ms, args.tpot_ms)
    try:
        extra = json.loads(args.extra_body) if args.extra_body else None
    except ValueError:
        raise InputError(f"--extra-body is not JSON: {args.extra_body[:60]}") from None
    common: dict[str, Any] = {
        "prompt": args.prompt or "The quick brown fox jumps over the lazy dog.",
        "max_tokens": args.max_tokens,
        "model": args.model,
        "timeout_s": args.timeout_s,
        "seed": args.seed,
        "api_key": args.api_key,
        "extra_body": extra,
    }
    result: Any
    if args.search:
        result = lm_slo(
            args.url,
            objective,
            steps=args.steps,
            requests=args.requests,
            price_per_hour=args.price_per_hour,
            **common,
        )
        ok = result.max_rate_per_s > 0
    else:
        result = lm_load(
            args.url,
            rate_per_s=args.rate,
            concurrency=args.concurrency,
            burst_size=args.burst,
            requests=args.requests,
            objective=objective,
            price_per_hour=args.price_per_hour,
            **common,
        )
        ok = result.valid and result.failed < len(result.requests)
    print(result.summary())
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0 if ok else 1


class _Objectives:
    """``--objective``'s choices, looked up only when checked or listed, so building the
    parser imports no pandas."""

    def names(self) -> list[str]:
        from workbench.scenarios.lm_load import OBJECTIVES

        return list(OBJECTIVES)

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``lm-load`` on the ``workbench`` command."""
    p = sub.add_parser(
        "lm-load", help="load an OpenAI-compatible streaming endpoint: TTFT, TPOT, goodput"
    )
    p.add_argument("url", help="http://host:port, or the full /v1/(chat/)completions URL")
    p.add_argument("--rate", type=positive_float, default=None, help="Poisson requests/s")
    p.add_argument("--concurrency", type=positive_int, default=None, help="requests in flight")
    p.add_argument(
        "--burst", type=positive_int, default=None, help="requests per burst (alone: all at once)"
    )
    p.add_argument(
        "--search",
        action="store_true",
        help="bisect the highest Poisson rate whose p99 TTFT and TPOT meet the objective",
    )
    p.add_argument("--steps", type=positive_int, default=5, help="runs of --search (default 5)")
    p.add_argument("--requests", type=positive_int, default=64, help="requests per run")
    p.add_argument("--prompt", default=None, help="the prompt text")
    p.add_argument("--max-tokens", type=positive_int, default=32, help="tokens per request")
    p.add_argument(
        "--model",
        default=None,
        help="the request's model field (default: the first GET /v1/models lists)",
    )
    p.add_argument(
        "--objective",
        default="mlperf-llama2",
        choices=_Objectives(),
        metavar="NAME",
        help="TTFT/TPOT preset (default mlperf-llama2: 2000 / 200 ms; interactive: 450 / 40)",
    )
    p.add_argument("--ttft-ms", type=positive_float, default=None, help="custom TTFT objective")
    p.add_argument("--tpot-ms", type=positive_float, default=None, help="custom TPOT objective")
    p.add_argument(
        "--price-per-hour", type=positive_float, default=None, help="for cost per 1M tokens"
    )
    p.add_argument("--timeout-s", type=positive_float, default=60.0, help="per request")
    p.add_argument("--seed", type=count_int, default=0, help="arrival schedule seed")
    p.add_argument("--api-key", default=None, help="sent as Authorization: Bearer")
    p.add_argument("--extra-body", default=None, help="more request fields as JSON")
    p.add_argument("--json", default=None, help="write the result as JSON here")
    p.set_defaults(func=_lm_load)
