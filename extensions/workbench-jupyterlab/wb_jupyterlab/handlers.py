"""The server side of "Open in workbench": checks the file, grants trust, hands over to Panel."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, urlencode

import tornado.web
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join

from wb_jupyterlab.paths import grant_trust, granted, model_path
from workbench.errors import ModelLoadError, WorkbenchError

#: the Panel script that builds the dashboard (run by Panel's server extension)
APP_FILE = Path(__file__).with_name("app.py")


def _refuse(handler: JupyterHandler, exc: WorkbenchError) -> None:
    handler.set_status(404 if type(exc) is ModelLoadError else 403)
    handler.set_header("Content-Type", "text/plain; charset=utf-8")
    handler.finish(f"workbench: {exc}\n")


class TrustHandler(APIHandler):
    """``POST <base>/workbench/trust`` with ``{"path": REL}``: the user trusts REL.

    Answers ``{"grant": NAME}``, a single-use grant for that file. Jupyter refuses the
    POST without its XSRF token (or the server's token), so no page on another site can
    obtain one; the frontend sends it only after the user confirmed in a dialog.
    """

    @tornado.web.authenticated
    def post(self) -> None:
        try:
            relative = str(json.loads(self.request.body or b"{}").get("path", ""))
        except (ValueError, AttributeError):
            raise tornado.web.HTTPError(400, "expected a JSON object with a path") from None
        try:
            path = model_path(self.settings["server_root_dir"], relative)
        except WorkbenchError as exc:
            _refuse(self, exc)
            return
        grant = grant_trust(self.settings["workbench_grants"], path)
        self.finish(json.dumps({"grant": grant}))


class OpenHandler(JupyterHandler):
    """``GET <base>/workbench/open?path=REL[&grant=NAME]``: redirect to the dashboard on REL.

    Without a grant the file is opened untrusted (a ``.pt2`` is inspected before torch
    reads it, and refused if it could run code). A ``trust=`` argument means nothing: a
    GET can be forged by any page. A path outside the Jupyter root, a file that is not a
    model, or an unknown or expired grant gets an error status and one line saying why,
    before any kernel starts.
    """

    @tornado.web.authenticated
    def get(self) -> None:
        relative = self.get_argument("path", "")
        grant = self.get_argument("grant", "")
        try:
            path = model_path(self.settings["server_root_dir"], relative)
        except WorkbenchError as exc:
            _refuse(self, exc)
            return
        if grant and not granted(self.settings["workbench_grants"], grant, path):
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(
                f"workbench: trust in {relative!r} was not granted here or has expired; "
                "open it again from the file browser\n"
            )
            return
        query = urlencode({"path": relative, "grant": grant})
        # Panel's handler takes an absolute script path as is ("render//abs/app.py");
        # url_path_join would fold the double slash and make it relative to the root
        render = url_path_join(self.base_url, "panel-preview/render/") + quote(str(APP_FILE))
        self.redirect(f"{render}?{query}")
