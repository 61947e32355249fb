"""The server side of "Open in workbench": checks the file, then hands over to Panel."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

import tornado.web
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join

from wb_jupyterlab.paths import model_path
from workbench.errors import ModelLoadError, WorkbenchError

#: the Panel script that builds the dashboard (run by Panel's server extension)
APP_FILE = Path(__file__).with_name("app.py")


class OpenHandler(JupyterHandler):
    """``GET <base>/workbench/open?path=REL[&trust=1]``: redirect to the dashboard on REL.

    A path outside the Jupyter root, a file that is not a model, or an untrusted ``.pt2``
    gets an error status and one line saying why, before any kernel starts.
    """

    @tornado.web.authenticated
    def get(self) -> None:
        relative = self.get_argument("path", "")
        trust = self.get_argument("trust", "0") == "1"
        try:
            model_path(self.settings["server_root_dir"], relative, trust)
        except WorkbenchError as exc:
            self.set_status(404 if type(exc) is ModelLoadError else 403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"workbench: {exc}\n")
            return
        query = urlencode({"path": relative, "trust": "1" if trust else "0"})
        # Panel's handler takes an absolute script path as is ("render//abs/app.py");
        # url_path_join would fold the double slash and make it relative to the root
        render = url_path_join(self.base_url, "panel-preview/render/") + quote(str(APP_FILE))
        self.redirect(f"{render}?{query}")
