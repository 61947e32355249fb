"""``workbench plan``: fleet size and 1-/3-year cost from measured SLO results, or, with
``--place``, the split of one model's layers across two processors.

Example:
    workbench slo digits-cnn --p99-ms 5 --json here.json
    workbench plan --candidate here.json docs/machines/example-rented-cpu.toml \\
        --rate 2000 --p99-ms 5 --peak 2 --growth 0.3 --redundancy 1 --json plan.json
    workbench plan --place ort.json numba.json --model digits-cnn --measure
    workbench plan --place ort.json numba.json --switch --objective cost \\
        --prices box-a.toml box-b.toml
"""

from __future__ import annotations

import argparse

from workbench.argtypes import count_int, nonnegative_float, positive_float, positive_int


def _plan(args: argparse.Namespace) -> int:
    from workbench.planning import PlanError, plan
    from workbench.planning.what_if import electricity_sensitivity, utilization_sensitivity
    from workbench.profiling.formatting import frame_text

    if args.place:
        return _place(args)
    if not (args.candidate and args.rate and args.p99_ms):
        raise PlanError(
            "workbench plan needs --candidate, --rate and --p99-ms (or --place A.json B.json "
            "--model MODEL to split a model across two processors)"
        )
    result = plan(
        [(machine, slo_json) for slo_json, machine in args.candidate],
        args.rate,
        args.p99_ms,
        peak_to_average=args.peak,
        growth_per_year=args.growth,
        redundancy=args.redundancy,
        years=args.years,
        max_machines=args.max_machines,
    )
    print(result.summary())
    if args.what_if:
        print("\nthe cheapest when every electricity price is scaled by a factor:")
        print(frame_text(electricity_sensitivity(result)))
        print("\nthe cheapest when no machine may run above a share of its measured rate:")
        print(frame_text(utilization_sensitivity(result)))
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def _place(args: argparse.Namespace) -> int:
    from workbench.loaders import load
    from workbench.planning import placement as pl
    from workbench.profiling.profile import Profile

    model = load(args.model) if args.model else None  # None: the sample the profiles name
    a, b = (Profile.from_json(path) for path in args.place)
    if args.link.startswith("cuda"):  # both ends are here: measure the copy to the GPU
        link = pl.measure_link(pl.cuda_copy(args.link), device=args.link,
                               name=f"host to {args.link}")  # fmt: skip
    else:
        link = pl.Link.parse(args.link, args.link_latency_ms)
    switch = pl.measure_switch(a, b, model) if args.switch else None
    prices = None
    if args.prices:
        from workbench.planning.economics import load_machine

        prices = (load_machine(args.prices[0]), load_machine(args.prices[1]))
    result = pl.place(
        a, b, model=model, link=link, max_cuts=args.max_cuts, switch=switch,
        objective=args.objective, prices=prices, fused_cuts=args.fused_cuts,
    )  # fmt: skip
    if args.measure:
        result = pl.measure_placement(result, model, which=args.measure,
                                      rounds=args.measure_rounds)  # fmt: skip
    print(result.summary())
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``plan`` on the ``workbench`` command."""
    p = sub.add_parser(
        "plan", help="which machine, how many, and its 1-/3-year cost, from workbench slo --json"
    )
    p.add_argument(
        "--candidate",
        nargs=2,
        action="append",
        metavar=("SLO_JSON", "MACHINE_TOML"),
        help="a `workbench slo --json` file (or a generation profile's JSON: planned in "
        "tokens/s, costed per 1M tokens) and the economics of the machine it was measured "
        "on (repeatable; see docs/plan.md for the TOML keys)",
    )
    p.add_argument("--rate", type=positive_float, help="average predictions/s")
    p.add_argument("--p99-ms", type=positive_float, help="the p99 objective (ms)")
    p.add_argument("--peak", type=positive_float, default=1.0, help="peak-to-average (>= 1)")
    p.add_argument(
        "--growth", type=nonnegative_float, default=0.0, help="yearly growth, 0.3 = +30%%"
    )
    p.add_argument("--redundancy", type=count_int, default=0, help="spare machines (N+k)")
    p.add_argument("--years", type=positive_int, default=3, help="horizon (default 3)")
    p.add_argument("--max-machines", type=positive_int, default=None, help="fleet size limit")
    p.add_argument(
        "--what-if",
        action="store_true",
        help="also print the choice against the electricity price and a utilization cap",
    )
    p.add_argument("--json", default=None, help="write the plan as JSON to this path")
    q = p.add_argument_group("placement (docs/placement.md)")
    q.add_argument(
        "--place",
        nargs=2,
        metavar=("PROFILE_A", "PROFILE_B"),
        help="split --model's layers across the processors of two `workbench profile --json` "
        "files (per-layer, same model and batch size)",
    )
    q.add_argument(
        "--model", help="the profiled model: a file, or a sample (default: the profiles' sample)"
    )
    q.add_argument(
        "--link",
        default="same-memory",
        help="same-memory (default), pcie<gen>x<lanes> or a bandwidth such as 12GB/s "
        "(declared), or cuda:N (host-to-GPU copies measured here)",
    )
    q.add_argument(
        "--link-latency-ms", type=nonnegative_float, default=0.0, help="per transfer (ms)"
    )
    q.add_argument("--max-cuts", type=positive_int, default=1, help="changes of processor")
    q.add_argument(
        "--fused-cuts",
        action="store_true",
        help="also offer cuts inside a kernel a runtime fuses (a convolution and its "
        "activation): not predictable, each such split's note says so",
    )
    q.add_argument(
        "--switch",
        action="store_true",
        help="measure here what one change of runtime costs in one process and add it per "
        "change (both runtimes must run here)",
    )
    q.add_argument(
        "--objective",
        choices=["latency", "cost"],
        default="latency",
        help="the least ms per call (default) or the least money per call (needs --prices)",
    )
    q.add_argument(
        "--prices",
        nargs=2,
        metavar=("MACHINE_A_TOML", "MACHINE_B_TOML"),
        help="the economics of each processor's machine (docs/plan.md's TOML keys)",
    )
    q.add_argument(
        "--measure",
        nargs="?",
        const="best",
        choices=["best", "all"],
        help="run the best (or all) splits here and print measured against predicted",
    )
    p.add_argument(
        "--measure-rounds",
        type=int,
        default=1,
        metavar="N",
        help="with --measure: time every split N times, round-robin; the median is shown",
    )
    p.set_defaults(func=_plan)
