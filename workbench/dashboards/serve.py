"""``workbench serve``: the dashboard served by Panel, bound to localhost by default.

Each browser session gets its own `App` (state, worker threads, upload folder), so two
sessions never share picks or block each other. To expose it beyond this machine, bind
``--address 0.0.0.0``, name the public host with ``--allow-websocket-origin`` and put it
behind an authenticating reverse proxy (see docs/dashboard.md).

Also usable as ``panel serve workbench/dashboards/serve.py``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_PORT = 5006
DEFAULT_ADDRESS = "127.0.0.1"
#: `AppState` parameters mirrored in the served page's URL query
URL_PARAMETERS = {p: p for p in ("model_name", "backend", "device", "batch_size")}


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``workbench`` command line."""
    p = sub.add_parser("serve", help="serve the dashboard (localhost only unless --address)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
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
    p.add_argument("--show", action="store_true", help="open a browser tab")
    p.add_argument("--store", default=None, help="results store file (default: the user's)")
    p.add_argument("--budget", type=float, default=0.5, help="timing budget per measurement (s)")
    p.set_defaults(func=_serve_command)


def _serve_command(args: argparse.Namespace) -> int:
    serve(
        model=args.model,
        port=args.port,
        address=args.address,
        allow_websocket_origin=args.allow_websocket_origin,
        show=args.show,
        store=args.store,
        budget_s=args.budget,
    )
    return 0


def app_factory(model: Any = None, **options: Any) -> Callable[[], Any]:
    """A function building one session's served layout (called once per browser session).

    Args:
        model: a sample name, a model file (loaded once, here, and shared by every
            session: models are never mutated), a `Model`, or None.
        **options: `App` options (``store``, ``budget_s``).
    """
    model = _initial_model(model)

    def session() -> Any:
        import panel as pn

        from workbench.dashboards.app import EXTENSIONS, App

        pn.extension(*EXTENSIONS, notifications=True)
        app = App(model, start=False, **options)
        # the pickers live in the URL (?model_name=…&batch_size=…): a view can be shared
        if pn.state.location is not None:  # None only outside a served session
            pn.state.location.sync(app.state, URL_PARAMETERS)
        # profile once the page is up, so the first result never races the first render
        pn.state.onload(lambda: app.state.request_profile())
        pn.state.on_session_destroyed(lambda context: app.close())
        return app.template()

    return session


def _initial_model(model: Any) -> Any:
    from workbench.dashboards.work import sample_names

    if model is None or not isinstance(model, str) or model in sample_names():
        return model
    from workbench.loaders import load

    return load(model)  # fail at start-up, not in every session


def websocket_origins(port: int, address: str, extra: Sequence[str] = ()) -> list[str]:
    """Origins browsers may connect from: localhost on ``port``, plus ``extra``."""
    origins = [f"localhost:{port}", f"127.0.0.1:{port}"]
    if address not in ("127.0.0.1", "localhost", "0.0.0.0", "::"):
        origins.append(f"{address}:{port}")
    return [*origins, *extra]


def serve(
    model: str | None = None,
    *,
    port: int = DEFAULT_PORT,
    address: str = DEFAULT_ADDRESS,
    allow_websocket_origin: Sequence[str] = (),
    show: bool = False,
    store: str | None = None,
    budget_s: float = 0.5,
) -> None:
    """Serve the dashboard until interrupted (blocks).

    Args:
        model: sample name or model file opened first (checked before serving).
        port: TCP port.
        address: interface to bind; the default serves this machine only.
        allow_websocket_origin: extra ``host:port`` origins (a public name, a proxy).
        show: open a browser tab.
        store: results store file (None: ``$WORKBENCH_STORE`` or the user's default).
        budget_s: timing budget of each end-to-end measurement, in seconds.

    Raises:
        WorkbenchError: the model cannot be loaded.
    """
    import panel as pn

    factory = app_factory(model, store=store, budget_s=budget_s)  # loads a file once, now
    origins = websocket_origins(port, address, allow_websocket_origin)
    print(f"workbench dashboard: http://localhost:{port}/ (bound to {address}; Ctrl+C stops)")
    pn.serve(
        {"/": factory},
        port=port,
        address=address,
        websocket_origin=origins,
        show=show,
        title="workbench",
        verbose=False,
        admin=False,
    )


if __name__.startswith("bokeh"):  # `panel serve workbench/dashboards/serve.py`
    app_factory(os.environ.get("WORKBENCH_MODEL"))().servable()
