"""The workbench dashboard: Profile, Compare, Optimize, Devices and Runs pages in Panel.

Built only from the public API and `workbench.viz`. In a notebook, `dashboard()` returns
an app that renders inline; ``workbench serve`` serves the same app in a template, one
independent app (state, worker threads, uploads) per browser session. Panel is imported
only when the dashboard is built, so the ``workbench`` command stays fast.

Example:
    >>> import workbench as wb
    >>> wb.dashboard("digits-cnn")           # inline in JupyterLab
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.dashboards.app import App
    from workbench.model import Model

__all__ = ["dashboard"]


def dashboard(model: Model | str | None = None, **options: Any) -> App:
    """The workbench dashboard, inline in JupyterLab (a Panel app).

    Loads Panel's extensions (plotly, tabulator) when called, so the first cell that
    calls it also prepares the notebook. Their JavaScript and CSS are inlined in the
    outputs (``pn.config.inline`` is set for this kernel): no CDN is needed.

    Args:
        model: a `Model`, a sample name or path, or None for the ``digits-cnn`` sample.
        **options: see `App` (``store``, ``budget_s``, ``backend``, ``device``,
            ``batch_size``, ``per_layer``).

    Returns:
        The `App`; display it (last expression of a cell) or call ``.servable()``.

    Raises:
        WorkbenchError: the model cannot be loaded.

    Example:
        >>> app = wb.dashboard("digits-mlp", batch_size=16)
        >>> app          # renders the tabs inline
    """
    import panel as pn

    from workbench.dashboards.actions import sample_names
    from workbench.dashboards.app import EXTENSIONS, App
    from workbench.dashboards.inline import define_notyf, inline_stylesheets

    define_notyf()
    inline_stylesheets()
    # Inline resources: BokehJS, Panel and the extensions travel inside the notebook's
    # outputs, so the dashboard renders where public CDNs cannot be reached.
    pn.extension(*EXTENSIONS, notifications=True, inline=True)
    if isinstance(model, str) and model not in sample_names():
        from workbench.loaders import load

        model = load(model)
    return App(model, **options)
