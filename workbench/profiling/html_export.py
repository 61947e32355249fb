"""Notebook HTML export of result objects: ``profile.to_html()``, ``table.to_html()``.

The report itself is built by `workbench.reports` (the same file ``workbench report``
writes), which sits above the result objects in the layer order: it draws them with
`workbench.viz`. So the renderer is injected from above: `workbench/__init__` (the top
of the package, allowed to reach every layer) registers it with `register_renderer`,
and profiling never imports the drawing code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

#: renders a result object (and writes it to a path when given) as one HTML document
Renderer = Callable[[Any, "str | Path | None"], str]
_renderer: Renderer | None = None


def register_renderer(render: Renderer) -> None:
    """Set the function `to_html` renders with (``workbench/__init__`` sets the report's)."""
    global _renderer
    _renderer = render


def to_html(obj: Any, path: str | Path | None = None) -> str:
    """The self-contained report HTML of ``obj`` (a `Profile` or a `TradeoffTable`).

    Args:
        obj: the result object; it is not changed.
        path: also write the HTML there (UTF-8) when given.

    Returns:
        The HTML document: plotly.js and styles inline, nothing fetched from the network.

    Raises:
        WorkbenchError: no renderer registered (``workbench`` itself was not imported).
    """
    if _renderer is None:
        raise WorkbenchError("no HTML renderer registered: import workbench first")
    return str(_renderer(obj, path))
