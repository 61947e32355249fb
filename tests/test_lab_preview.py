"""The JupyterLab preview page: a model that cannot open is one plain line, no traceback.

Panel shows a script's exception on the page, with the server's folders in it; the app
script catches it and shows what went wrong in the user's own terms instead.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("wb_jupyterlab", reason="workbench-jupyterlab not installed")

PACKAGE = Path(__file__).parents[1] / "extensions/workbench-jupyterlab"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "models").mkdir(parents=True)
    (tmp_path / "root" / "models" / "m.onnx").write_bytes(b"not a model")
    (tmp_path / "root" / "notes.txt").write_text("hi")
    (tmp_path / "outside.onnx").write_bytes(b"onnx")
    return tmp_path / "root"


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("models/m.onnx", "models/m.onnx is not a valid ONNX model"),
        ("../outside.onnx", "'../outside.onnx' is outside the Jupyter root"),
        ("notes.txt", "'notes.txt' is not an .onnx or .pt2 file"),
    ],
)
def test_the_preview_page_says_one_line_without_server_folders(
    root: Path, relative: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # this checkout's app script and package (the installed extension may be older); run
    # with no query, as Panel would outside a session, the script shows its one line too
    monkeypatch.syspath_prepend(str(PACKAGE))
    for name in [m for m in sys.modules if m.startswith("wb_jupyterlab")]:
        monkeypatch.delitem(sys.modules, name)
    page = runpy.run_path(str(PACKAGE / "wb_jupyterlab/app.py"))["page"]
    text = str(page(str(root), relative, "").object)  # "": not trusted
    assert text.startswith("workbench cannot open ") and message in text and "\n" not in text
    assert str(root) not in text and "Traceback" not in text
