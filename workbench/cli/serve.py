"""``workbench serve``: the dashboard on this machine, with its access policy."""

from __future__ import annotations

import argparse

from workbench.argtypes import duration_s, port_int
from workbench.dashboards.serve import DEFAULT_ADDRESS, DEFAULT_PORT


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``workbench`` command line."""
    p = sub.add_parser("serve", help="serve the dashboard (localhost only unless --address)")
    p.add_argument(
        "--port", type=port_int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    p.add_argument("--model", default=None, help="sample name or model file to open first")
    p.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help=f"interface to bind (default {DEFAULT_ADDRESS}; 0.0.0.0 exposes it, see docs)",
    )
    p.add_argument(
        "--allow-websocket-origin",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="public host:port browsers will use (repeatable); needed with --address",
    )
    p.add_argument(
        "--token",
        default=None,
        help="access token browsers must present (default: generated when --address is not "
        "loopback and no --allow-websocket-origin is given)",
    )
    p.add_argument("--trust", action="store_true", help="trust --model: it may run code")
    p.add_argument("--show", action="store_true", help="open a browser tab")
    p.add_argument("--store", default=None, help="results store file (default: the user's)")
    p.add_argument(
        "--budget", type=duration_s, default=0.5, help="timing budget per measurement (s)"
    )
    p.set_defaults(func=_serve_command)


def _serve_command(args: argparse.Namespace) -> int:
    from workbench.dashboards.serve import serve

    serve(
        model=args.model,
        port=args.port,
        address=args.address,
        allow_websocket_origin=args.allow_websocket_origin,
        show=args.show,
        store=args.store,
        budget_s=args.budget,
        token=args.token,
        trust=args.trust,
    )
    return 0
