"""``workbench import``: results measured on other machines into the store, compared with
the local ones, every row saying where it was measured.

Example:
    workbench slo digits-cnn --p99-ms 5 --json gpu-box.json     # on the GPU box
    workbench import gpu-box.json here.json                      # here: import and compare
    workbench import --model digits-cnn --p99-ms 5               # compare what the store holds
"""

from __future__ import annotations

import argparse

from workbench.argtypes import positive_float

#: the columns printed (the rest stay in the store and in `records.records()`)
SHOWN = [
    "record_id", "measured_on", "where", "cpu", "gpus", "kind", "variant", "backend", "device",
    "objective_p99_ms", "rate_per_s", "p99_ms", "source",
]  # fmt: skip


def _import(args: argparse.Namespace) -> int:
    from workbench.planning import records
    from workbench.profiling.formatting import frame_text
    from workbench.store import Store

    store = Store(args.store)
    model, p99_ms = args.model, args.p99_ms
    if args.files:
        imported = records.import_results(args.files, store)
        print(f"imported {len(set(imported['record_id']))} record(s) into {store.path}:")
        print(frame_text(imported[SHOWN]))
        searches = imported[imported["kind"] == "slo"]
        if model is None and searches["model"].nunique() == 1:
            model = str(searches["model"].iloc[0])
        if p99_ms is None and searches["objective_p99_ms"].nunique() == 1:
            p99_ms = float(searches["objective_p99_ms"].iloc[0])
        if model is None or p99_ms is None:
            return 0
        print()
    if model is not None and p99_ms is not None:
        table = records.compare(model=model, p99_ms=p99_ms, store=store)
        print(f"{model} within p99 <= {p99_ms:g} ms, the highest rate first:")
    else:
        table = records.records(store, model=model)
        print(f"records in {store.path}" + (f" of {model}" if model else "") + ":")
    print(frame_text(table[SHOWN]) if len(table) else "  none")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``import`` on the ``workbench`` command."""
    p = sub.add_parser(
        "import",
        help="import results measured elsewhere (slo/scenario --json) and compare them here",
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="JSON",
        help="files written by `workbench slo --json` or `workbench scenario --json` on any "
        "machine; none: list (or, with --model and --p99-ms, compare) the stored records",
    )
    p.add_argument("--model", default=None, help="only this model's records")
    p.add_argument(
        "--p99-ms",
        type=positive_float,
        default=None,
        help="compare the SLO records measured at this objective or a tighter one",
    )
    p.add_argument("--store", default=None, help="results database (default $WORKBENCH_STORE)")
    p.set_defaults(func=_import)
