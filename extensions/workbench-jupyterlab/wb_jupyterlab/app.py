"""The workbench dashboard on one model file, run by Panel's Jupyter server extension.

Panel's ``panel-preview/render/<this file>`` runs this script in a fresh kernel of the
Jupyter server, one per browser session, and relays the page through the server. The
query names the model (``?path=`` relative to the Jupyter root, ``&trust=1`` for a
``.pt2`` the user trusted); the path is checked again here, since the kernel loads it.
"""

from __future__ import annotations

import os

import panel as pn

from wb_jupyterlab.paths import ROOT_ENV, model_path
from workbench.dashboards.serve import app_factory


def _argument(name: str) -> str:
    values = pn.state.session_args.get(name) or [b""]
    return values[0].decode()


trusted = _argument("trust") == "1"
path = model_path(os.environ.get(ROOT_ENV, os.getcwd()), _argument("path"), trusted)
app_factory(str(path), trust=trusted)().servable(title=f"workbench: {path.name}")
