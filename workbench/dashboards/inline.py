"""Panel's inline resources in a notebook, completed for notifications and later updates.

``pn.extension(inline=True)`` inlines BokehJS, Panel and the extensions in the outputs, but
two things still reach for the internet (Panel 1.9):

- notyf (the notifications) is bundled inside a function, so its global is never defined
  and the notification area fails with "Notyf is not defined". `define_notyf` defines it.
- Panel inlines its own stylesheets only when a view is first rendered (and when a layout's
  children change). A pane that re-renders in place after that, such as a Markdown pane
  whose text changes when a profile arrives, sends its stylesheets again as links to
  Panel's CDN (``loading.css``, ``markdown.css``, the theme's ``default.css`` and
  ``native.css``). `inline_stylesheets` makes every such update carry the CSS text of the
  file Panel ships instead.
"""

from __future__ import annotations

import base64
import functools
import mimetypes
import re
from pathlib import Path
from typing import Any

__all__ = ["LOAD_MIME", "define_notyf", "inline_stylesheets", "notyf_script"]

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


# a relative url(...) in a stylesheet: the files it names (loading spinners) travel with it
RELATIVE_URL = re.compile(r"""url\((['"]?)(?!data:|https?:|/)([^'")]+)\1\)""")


@functools.cache
def _shipped_css(relative: str) -> str | None:
    """The text of a stylesheet in Panel's ``dist`` folder, or None when it is not there.

    Its relative ``url(...)`` references become data URLs: as CSS text in the page, they
    would resolve against the notebook's address and miss.
    """
    from panel.io.resources import DIST_DIR

    path = DIST_DIR / relative
    if not path.is_file():
        return None

    def embed(match: re.Match[str]) -> str:
        target = (path.parent / match.group(2)).resolve()
        if not target.is_file():
            return match.group(0)
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        data = base64.b64encode(target.read_bytes()).decode("ascii")
        return f"url('data:{kind};base64,{data}')"

    return RELATIVE_URL.sub(embed, path.read_text(encoding="utf-8"))


def _as_text(stylesheet: Any) -> Any:
    """A stylesheet that links Panel's files, as the CSS text Panel ships; anything else as is.

    Panel links its files on its CDN, or under ``static/extensions/panel/`` where a Panel
    server would serve them (and later rewrites those links to the CDN outside a server).
    """
    from panel.io.resources import CDN_DIST, LOCAL_DIST

    url = getattr(stylesheet, "url", stylesheet)  # an ImportedStyleSheet or a plain URL
    prefix = next((p for p in (CDN_DIST, LOCAL_DIST) if str(url).startswith(p)), None)
    if not isinstance(url, str) or prefix is None:
        return stylesheet
    text = _shipped_css(url.removeprefix(prefix).split("?")[0])  # ?v=<version> suffixes
    # Bokeh takes a plain string in ``stylesheets`` as CSS text (an inline stylesheet)
    return stylesheet if text is None else text


def inline_stylesheets() -> None:
    """Send Panel's own stylesheets as CSS text on every update while ``pn.config.inline``.

    Wraps the one method that builds every component's ``stylesheets`` property (Panel's
    ``Syncable._process_param_change``), so the first render and every later update alike
    carry the CSS instead of links to Panel's CDN. Idempotent; with ``pn.config.inline``
    off, Panel's own behaviour is unchanged.

    ``pn.config.inline`` is global to the process, so a server started after a notebook
    view (or beside one) sees it too. A served session's document is left to Panel: it
    links the server's own ``static/`` folder, and only if Panel builds those links can it
    point the stylesheets it caches per document (and hands out again on later updates)
    at that folder; made into text here, the cached copies kept their CDN links.
    """
    from panel.config import config
    from panel.io.state import state
    from panel.reactive import Syncable

    original = Syncable._process_param_change
    if getattr(original, "workbench_inline", False):
        return

    @functools.wraps(original)
    def process(self: Any, params: dict[str, Any]) -> dict[str, Any]:
        properties = original(self, params)
        served = state.curdoc is not None and state.curdoc.session_context is not None
        if config.inline and not served and "stylesheets" in properties:
            properties["stylesheets"] = [_as_text(s) for s in properties["stylesheets"]]
        return properties

    process.workbench_inline = True  # type: ignore[attr-defined]
    Syncable._process_param_change = process  # type: ignore[method-assign]
