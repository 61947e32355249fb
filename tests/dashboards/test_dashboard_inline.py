"""`wb.dashboard(m)` in a notebook kernel loads nothing from a CDN (nbclient, no browser).

The outputs a notebook receives are what JupyterLab runs: Panel's loader script (its lists
of JavaScript and CSS URLs to fetch), the rendered HTML, and our notyf definition.
"""

from __future__ import annotations

import json
import re

import pytest

from workbench.dashboards.inline import LOAD_MIME, notyf_script

# the arrays Bokeh's loader fetches: inline resources leave them without remote URLs
LOADER_LISTS = re.compile(r"const (css_urls|js_urls|js_modules) = (\[.*?\]);", re.S)
REMOTE_TAG = re.compile(r"<(?:script|link)[^>]+(?:src|href)=[\"']https?://", re.I)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """The outputs of a kernel that ran ``wb.dashboard`` and displayed it."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    folder = tmp_path_factory.mktemp("kernel")
    cells = [
        "import workbench as wb\n"
        f"app = wb.dashboard('digits-mlp', store={str(folder / 'runs.sqlite')!r}, start=False)\n"
        "app",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": folder}}
    ).execute()
    return [output for cell in notebook.cells for output in cell.outputs]


def _texts(outputs, mime):
    for output in outputs:
        value = output.get("data", {}).get(mime)
        if value:
            yield value if isinstance(value, str) else "".join(value)


def test_the_loader_fetches_no_remote_javascript_or_css(outputs):
    loaders = [text for text in _texts(outputs, LOAD_MIME) if "js_urls" in text]
    assert loaders, "Panel's loader script was not published"
    lists = {name: json.loads(value.replace("'", '"')) for name, value in _lists(loaders)}
    assert {"css_urls", "js_urls", "js_modules"} <= set(lists)
    assert [url for urls in lists.values() for url in urls if url.startswith("http")] == []


def _lists(loaders):
    for text in loaders:
        yield from LOADER_LISTS.findall(text)


def test_the_rendered_html_links_no_remote_script_or_stylesheet(outputs):
    html = list(_texts(outputs, "text/html"))
    assert any("bk-" in text or "data-root-id" in text for text in html)  # the app rendered
    assert [text for text in html if REMOTE_TAG.search(text)] == []


def test_notyf_is_defined_globally_before_panel_loads(outputs):
    scripts = list(_texts(outputs, LOAD_MIME))
    notyf = [i for i, text in enumerate(scripts) if text.endswith("window.Notyf = Notyf;")]
    panel = [i for i, text in enumerate(scripts) if "js_urls" in text]
    assert notyf and panel and notyf[0] < panel[0]
    assert scripts[notyf[0]] == notyf_script()


def test_outside_a_kernel_nothing_is_published(capsys):
    from workbench.dashboards.inline import define_notyf

    define_notyf()  # pytest is no notebook kernel
    assert capsys.readouterr() == ("", "")


def _linked_stylesheets(root) -> list[str]:
    """URLs of the stylesheets the page would fetch for ``root``'s models."""
    from bokeh.models import ImportedStyleSheet

    return sorted(
        {
            str(sheet.url if isinstance(sheet, ImportedStyleSheet) else sheet)
            for model in root.references()
            for sheet in getattr(model, "stylesheets", None) or []
            if isinstance(sheet, ImportedStyleSheet) or str(sheet).startswith("http")
        }
    )


def test_updates_after_the_first_render_link_no_stylesheet(tmp_path):
    """A profile arriving re-renders Markdown panes in place: their CSS travels as text."""
    import workbench as wb
    from workbench.dashboards.cache import RESULTS

    pytest.importorskip("panel")
    from panel.io.state import state

    RESULTS.clear()
    app = wb.dashboard("digits-mlp", store=tmp_path / "runs.sqlite", budget_s=0.05, start=False)
    try:
        before = set(state._views)
        app._repr_mimebundle_()  # what a notebook's display does: a view over a comm
        (ref,) = set(state._views) - before
        root = state._views[ref][1]
        assert _linked_stylesheets(root) == []
        app.state.batch_size = 16  # a profile on the worker thread updates the pages
        app.state.jobs.wait()
        assert [p.batch_size for p in app.state.history] == [16]
        assert _linked_stylesheets(root) == []
    finally:
        app.close()
