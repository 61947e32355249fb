"""``workbench devices``: backends x devices on this machine (or a Dask cluster's workers).

On this machine the table also says which backends generate (``workbench generate
--backend``): every registered backend with a decoder, plugins included.
"""

from __future__ import annotations

import argparse


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``devices`` to the ``workbench`` command line."""
    p = sub.add_parser("devices", help="list backends x devices on this machine")
    p.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="list every worker of this Dask scheduler instead, e.g. tcp://scheduler:8786",
    )
    p.set_defaults(func=_devices)


def _devices(args: argparse.Namespace) -> int:
    from workbench.cluster import devices
    from workbench.machine import describe_machine
    from workbench.profiling.formatting import frame_text

    table = devices(args.cluster)
    if args.cluster is None:
        print(describe_machine())
        print()
        from workbench.backends.base import generation_backends

        # whether `workbench generate --backend` takes it: a backend with a decoder
        # (plugins included); a worker's registry may differ, so only this machine's
        table.insert(3, "generates", table["backend"].isin(generation_backends()))
    print(frame_text(table))
    return 0
