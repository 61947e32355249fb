"""``workbench devices``: backends x devices on this machine (or a Dask cluster's workers)."""

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

    if args.cluster is None:
        print(describe_machine())
        print()
    print(frame_text(devices(args.cluster)))
    return 0
