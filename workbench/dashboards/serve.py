"""``workbench serve``: the dashboard served by Panel, bound to localhost by default.

Each browser session gets its own `App` (state, worker threads, upload folder), so two
sessions never share picks or block each other. Every request passes an `AccessPolicy`
first: its Host must be one the server answers to, a websocket must carry an Origin, and
when the server is bound beyond loopback without a named origin, an access token is
required (printed as a URL, as Jupyter does). See docs/security.md.

``panel serve`` of this file serves no dashboard, only a line saying to use
``workbench serve``: Panel's own server would apply none of the policy.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from workbench.errors import WorkbenchError

DEFAULT_PORT = 5006
DEFAULT_ADDRESS = "127.0.0.1"
#: cookie that carries the access token after the first tokenized request
TOKEN_COOKIE = "workbench_token"
#: largest websocket message accepted, in bytes (an upload chunk is 2 MiB)
MAX_MESSAGE_BYTES = 8 * 2**20
#: `AppState` parameters mirrored in the served page's URL query
URL_PARAMETERS = {p: p for p in ("model_name", "backend", "device", "batch_size")}


def app_factory(
    model: Any = None,
    *,
    live: set[Any] | None = None,
    trust: bool = False,
    local_resources: bool = False,
    **options: Any,
) -> Callable[[], Any]:
    """A function building one session's served layout (called once per browser session).

    Args:
        model: a sample name, a model file (loaded once, here, and shared by every
            session: models are never mutated), a `Model`, or None.
        live: a set that holds each session's `App` while the session lives, so that a
            server shutting down can close them all (and delete their upload folders).
        trust: the model file is trusted (it may run code when loaded).
        local_resources: the session's stylesheets link this server's ``static/`` folder,
            never Panel's CDN (a server of its own; Panel's Jupyter preview has its own).
        **options: `App` options (``store``, ``budget_s``).
    """
    model = _initial_model(model, trust)

    def session() -> Any:
        import panel as pn

        from workbench.dashboards.app import EXTENSIONS, App

        if local_resources:
            _resources_from_this_server()
        pn.extension(*EXTENSIONS, notifications=True)
        app = App(model, start=False, **options)
        if live is not None:
            live.add(app)
        # the pickers live in the URL (?model_name=…&batch_size=…): a view can be shared
        if pn.state.location is not None:  # None only outside a served session
            pn.state.location.sync(app.state, URL_PARAMETERS)
        # profile once the page is up, so the first result never races the first render
        pn.state.onload(lambda: app.state.request_profile())
        pn.state.on_session_destroyed(lambda context: _close(app, live))
        return app.template()

    return session


def _resources_from_this_server() -> None:
    """Make every stylesheet of this session link this server's copy, never Panel's CDN.

    Panel links its stylesheets on its CDN while a document is built and rewrites the
    links to the server's ``static/`` only when it writes the page; a stylesheet object
    made during the build and sent later (``loading.css`` when a pane re-renders after a
    profile arrives) kept its CDN link, so the page asked the internet for it. Naming the
    server's folder (as Panel does when it writes the page) before building means no link
    is ever made to the CDN.
    """
    import panel as pn
    from panel.io.resources import LOCAL_DIST

    doc = pn.state.curdoc
    if doc is not None:
        rel_path = pn.state.rel_path
        dist_url = f"{rel_path}/{LOCAL_DIST}" if rel_path else LOCAL_DIST
        doc._template_variables.setdefault("dist_url", dist_url)


def _close(app: Any, live: set[Any] | None) -> None:
    app.close()
    if live is not None:
        live.discard(app)


def _initial_model(model: Any, trust: bool = False) -> Any:
    from workbench.dashboards.actions import sample_names

    if model is None or not isinstance(model, str) or model in sample_names():
        return model
    from workbench.loaders import load

    return load(model, trust=trust)  # fail at start-up, not in every session


def websocket_origins(port: int, address: str, extra: Sequence[str] = ()) -> list[str]:
    """Origins browsers may connect from: localhost on ``port``, plus ``extra``."""
    origins = [f"localhost:{port}", f"127.0.0.1:{port}"]
    if not is_loopback(address) and address not in ("0.0.0.0", "::"):
        origins.append(f"{address}:{port}")
    return [*origins, *extra]


def is_loopback(address: str) -> bool:
    """True when ``address`` only reaches this machine (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """Which requests the server answers: checked before any handler (or websocket) runs.

    Args:
        hosts: host names the Host header may carry (None: any, when a token guards).
        token: the access token a request must carry (``?token=`` or the cookie), or None.
    """

    hosts: frozenset[str] | None
    token: str | None = None

    def refusal(self, host: str, headers: Any, query_token: str | None, cookie: str | None) -> str:
        """Why a request is refused, or ``""`` when it may pass.

        Args:
            host: the request's Host header.
            headers: the request headers (``Upgrade``, ``Origin``).
            query_token: the ``token`` query argument, if any.
            cookie: the token cookie, if any.
        """
        name = _host_name(host)
        if self.hosts is not None and name not in self.hosts:
            return f"host {host!r} is not served here"
        if headers.get("Upgrade", "").lower() == "websocket" and not headers.get("Origin"):
            return "a websocket without an Origin header"
        if self.token is not None:
            given = query_token or cookie or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return "no valid access token"
        return ""


def access_policy(
    address: str, origins: Sequence[str], extra_origins: Sequence[str], token: str | None
) -> AccessPolicy:
    """The policy for a server bound to ``address``.

    Raises:
        WorkbenchError: the token is too short to guard anything.
    """
    if token is not None and len(token) < 16:
        raise WorkbenchError("--token must be at least 16 characters; or omit it for a new one")
    exposed = not is_loopback(address)
    if exposed and not extra_origins and token is None:
        token = secrets.token_urlsafe(24)  # no named origin: only a token guards this server
    if token is not None and exposed and not extra_origins:
        return AccessPolicy(hosts=None, token=token)
    return AccessPolicy(hosts=frozenset(_host_name(o) for o in origins), token=token)


def _host_name(host: str) -> str:
    host = host.strip().lower().removeprefix("http://").removeprefix("https://")
    if host.startswith("["):  # [::1]:5006
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def install_policy(server: Any, policy: AccessPolicy) -> None:
    """Put ``policy`` in front of every request of a Bokeh ``server`` (this server only).

    A refused request gets 403 before any handler runs (a websocket is never upgraded);
    a request carrying the right ``?token=`` is redirected to the same page without it,
    with the token kept in an HTTP-only, same-site cookie.
    """
    import tornado.web

    application = server._tornado
    find_handler = application.find_handler

    class TokenCookie(tornado.web.RequestHandler):
        def initialize(self, token: str, target: str) -> None:
            self.token, self.target = token, target

        def get(self) -> None:
            self.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
            self.redirect(self.target)

    def guarded(request: Any, **kwargs: Any) -> Any:
        query_token = request.query_arguments.get("token", [b""])[0].decode(errors="replace")
        cookie = request.cookies.get(TOKEN_COOKIE)
        reason = policy.refusal(
            request.host or "", request.headers, query_token or None, cookie and cookie.value
        )
        if reason:
            return application.get_handler_delegate(
                request, tornado.web.ErrorHandler, {"status_code": 403}
            )
        if policy.token is not None and query_token and request.method == "GET":
            rest = [(k, v) for k, v in parse_qsl(request.query) if k != "token"]
            target = request.path + (f"?{urlencode(rest)}" if rest else "")
            return application.get_handler_delegate(
                request, TokenCookie, {"token": policy.token, "target": target}
            )
        return find_handler(request, **kwargs)

    application.find_handler = guarded


def serve(
    model: str | None = None,
    *,
    port: int = DEFAULT_PORT,
    address: str = DEFAULT_ADDRESS,
    allow_websocket_origin: Sequence[str] = (),
    show: bool = False,
    store: str | None = None,
    budget_s: float = 0.5,
    token: str | None = None,
    trust: bool = False,
) -> None:
    """Serve the dashboard until interrupted (Ctrl+C or SIGTERM; blocks).

    Every session is closed on the way out, so no upload folder is left behind.

    Args:
        model: sample name or model file opened first (checked before serving).
        port: TCP port.
        address: interface to bind; the default serves this machine only.
        allow_websocket_origin: extra ``host:port`` origins (a public name, a proxy).
        show: open a browser tab.
        store: results store file (None: ``$WORKBENCH_STORE`` or the user's default).
        budget_s: timing budget of each end-to-end measurement, in seconds.
        token: access token browsers must present; generated when ``address`` is not
            loopback and no origin is named.
        trust: the model file is trusted (it may run code when loaded).

    Raises:
        WorkbenchError: the model cannot be loaded, or the token is too short.
    """
    import panel as pn

    live: set[Any] = set()
    factory = app_factory(
        model, live=live, trust=trust, local_resources=True, store=store, budget_s=budget_s
    )
    origins = websocket_origins(port, address, allow_websocket_origin)
    policy = access_policy(address, origins, allow_websocket_origin, token)
    server = pn.serve(
        {"/": factory},
        port=port,
        address=address,
        # a token-only server is reached under names we cannot know; the token guards it
        websocket_origin=["*"] if policy.hosts is None else origins,
        show=False,
        start=False,
        title="workbench",
        verbose=False,
        admin=False,
        websocket_max_message_size=MAX_MESSAGE_BYTES,
        # a page view whose websocket never connects (a crawler, a link preview) holds a
        # whole session: drop it after 10 s, looking every 5 s (Bokeh: 15 s, every 17 s)
        unused_session_lifetime_milliseconds=10_000,
        check_unused_sessions_milliseconds=5_000,
    )
    install_policy(server, policy)
    print(f"workbench dashboard: {_url(address, port, policy)} (bound to {address}; Ctrl+C stops)")
    loop = server.io_loop
    # SIGTERM stops the loop like Ctrl+C does, so the sessions below are closed either way
    signal.signal(signal.SIGTERM, lambda *_: loop.asyncio_loop.call_soon_threadsafe(loop.stop))
    try:
        server.start()
        if show:
            loop.add_callback(lambda: server.show("/"))
        loop.start()
    finally:
        for app in list(live):
            _close(app, live)
        server.stop()


def _url(address: str, port: int, policy: AccessPolicy) -> str:
    host = "localhost" if is_loopback(address) else socket.gethostname()
    if address not in ("0.0.0.0", "::") and not is_loopback(address):
        host = address
    query = f"?token={policy.token}" if policy.token else ""
    return f"http://{host}:{port}/{query}"


#: what ``panel serve`` of this file shows instead of the dashboard
PANEL_SERVE_REFUSAL = (
    "The workbench dashboard is served by `workbench serve`, not `panel serve`: only "
    "`workbench serve` binds loopback by default, checks the Host and Origin of every "
    "request and asks for a token beyond loopback (docs/security.md)."
)

if __name__.startswith("bokeh"):  # `panel serve workbench/dashboards/serve.py`
    # Panel's own server has none of the access policy above, so this file serves no
    # dashboard there (it once did, open to every interface without a Host check or token)
    import panel as pn

    print(f"workbench: {PANEL_SERVE_REFUSAL}", file=sys.stderr)
    pn.pane.Markdown(PANEL_SERVE_REFUSAL).servable(title="workbench")
