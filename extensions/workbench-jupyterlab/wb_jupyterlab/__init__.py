"""workbench-jupyterlab: "Open in workbench" for model files in JupyterLab's file browser.

The frontend (prebuilt, in ``labextension/``) adds the context-menu entry and opens
``<base>/workbench/open?path=…`` in a tab; this server extension checks the path and
redirects to Panel's Jupyter server extension, which runs the dashboard in a kernel of
the same Jupyter server and relays it (so no other port is opened and Jupyter's own
authentication guards it). Trust in a file is granted only by ``POST
<base>/workbench/trust``, which Jupyter checks for its XSRF token (see ``paths``).
"""

from __future__ import annotations

import os
from typing import Any

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "workbench-jupyterlab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "wb_jupyterlab"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from jupyter_server.utils import url_path_join

    from wb_jupyterlab.handlers import OpenHandler, TrustHandler
    from wb_jupyterlab.paths import GRANTS_ENV, ROOT_ENV, grants_folder

    grants = grants_folder(server_app.runtime_dir)
    # kernels inherit the server's environment: the app re-checks paths against this root
    # and takes trust only from a grant in this folder
    os.environ[ROOT_ENV] = str(server_app.root_dir)
    os.environ[GRANTS_ENV] = str(grants)
    web_app = server_app.web_app
    web_app.settings["workbench_grants"] = str(grants)
    base = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "workbench/open"), OpenHandler),
            (url_path_join(base, "workbench/trust"), TrustHandler),
        ],
    )
