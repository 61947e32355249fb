"""The workbench dashboard on one model file, run by Panel's Jupyter server extension.

Panel's ``panel-preview/render/<this file>`` runs this script in a fresh kernel of the
Jupyter server, one per browser session, and relays the page through the server. The
query names the model (``?path=`` relative to the Jupyter root) and, for a file the user
trusted, ``&grant=``: a single-use grant the server made on the user's confirmed POST.
Trust comes only from consuming that grant, never from the URL itself (anyone can make a
browser open a URL); the path is checked again here, since the kernel loads it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import panel as pn

from wb_jupyterlab.paths import GRANTS_ENV, ROOT_ENV, granted, model_path
from workbench.dashboards.serve import app_factory
from workbench.errors import WorkbenchError


def _argument(name: str) -> str:
    values = pn.state.session_args.get(name) or [b""]
    return values[0].decode()


def page(root: str, relative: str, grant: str) -> Any:
    """The dashboard on ``relative``, or one line saying why it cannot open.

    The page never shows a traceback: it would show the server's folders to the browser.
    The full error goes to the server's log.
    """
    try:
        path = model_path(root, relative)
        trusted = granted(os.environ.get(GRANTS_ENV), grant, path, consume=True)
        return app_factory(str(path), trust=trusted)()
    except Exception as exc:
        logging.getLogger(__name__).exception("workbench could not open %r", relative)
        text = str(exc) if isinstance(exc, WorkbenchError) else type(exc).__name__
        for folder in {str(Path(root).expanduser().resolve()), str(root)}:
            text = text.replace(folder + os.sep, "").replace(folder, ".")
        line = " ".join(text.split())[:500]
        # a plain-text pane: the message may quote the file name, never rendered as HTML
        return pn.pane.Str(f"workbench cannot open {relative}: {line}")


relative = _argument("path")
page(os.environ.get(ROOT_ENV, os.getcwd()), relative, _argument("grant")).servable(
    title=f"workbench: {Path(relative).name}"
)
