"""Notebook HTML export of result objects: ``profile.to_html()``, ``table.to_html()``.

The report itself is built by `workbench.reports` (the same file ``workbench report``
writes), which sits above the result objects in the layer order: it draws them with
`workbench.viz`. The result objects reach it through this one hook, named by its module
path and loaded on first use (the way ``workbench/__init__`` loads the public API), so
profiling never imports the drawing code and ``import workbench`` stays light.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

#: the function that renders a result object as one self-contained HTML document
REPORT_HTML = "workbench.reports:report_html"


def to_html(obj: Any, path: str | Path | None = None) -> str:
    """The self-contained report HTML of ``obj`` (a `Profile` or a `TradeoffTable`).

    Args:
        obj: the result object; it is not changed.
        path: also write the HTML there (UTF-8) when given.

    Returns:
        The HTML document: plotly.js and styles inline, nothing fetched from the network.
    """
    module, name = REPORT_HTML.split(":")
    render = getattr(importlib.import_module(module), name)
    return str(render(obj, path))
