"""Panel's inline resources in a notebook, completed for the notifications.

``pn.extension(inline=True)`` inlines BokehJS, Panel and the extensions in the outputs, but
notyf (the notifications) is bundled inside a function, so its global is never defined
and the notification area fails with "Notyf is not defined". `define_notyf` defines it.

Known gap (Panel 1.9): models built after the first render from a worker thread (a page's
content when a profile arrives) still name four small stylesheets on Panel's CDN
(``loading.css``, ``markdown.css``, the theme's ``default.css`` and ``native.css``); offline
they fail to load and those elements lose some styling, nothing else.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["LOAD_MIME", "define_notyf", "notyf_script"]

# the MIME type Panel's JupyterLab extension (pyviz_comms) runs as a loader script
LOAD_MIME = "application/vnd.holoviews_load.v0+json"


def notyf_script() -> str:
    """notyf's bundled JavaScript, assigning ``window.Notyf`` explicitly."""
    import panel as pn

    notyf = Path(pn.__file__).parent / "dist/bundled/notificationarea/notyf@3/notyf.min.js"
    # renderers run a script inside a function: its top-level `var` would stay local
    return f"{notyf.read_text(encoding='utf-8')}\nwindow.Notyf = Notyf;"


def define_notyf() -> None:
    """Define ``window.Notyf`` in the notebook page before Panel's notifications need it.

    Published before ``pn.extension``, this script runs (synchronously, as its output
    renders) before Panel's asynchronous loader draws the notification area. Outside a
    notebook kernel it does nothing.
    """
    try:
        from IPython import get_ipython
        from IPython.display import publish_display_data
    except ImportError:
        return
    if getattr(get_ipython(), "kernel", None) is None:
        return
    script = notyf_script()
    # both MIME types, as Panel publishes its own loader (JupyterLab renders the second)
    publish_display_data({"application/javascript": script, LOAD_MIME: script})
