"""workbench-jupyterlab's path check: only model files under the Jupyter root open.

The browser half (right-click, "Open in workbench", the dashboard in a tab) is in
tests/test_notebooks_browser.py, which shares its JupyterLab.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from workbench.errors import ModelLoadError, UnsafeModelError

paths = pytest.importorskip("wb_jupyterlab.paths", reason="workbench-jupyterlab not installed")


@pytest.fixture
def root(tmp_path):
    (tmp_path / "root" / "models").mkdir(parents=True)
    (tmp_path / "root" / "models" / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "root" / "m.pt2").write_bytes(b"pt2")
    (tmp_path / "root" / "notes.txt").write_text("hi")
    (tmp_path / "outside.onnx").write_bytes(b"onnx")
    (tmp_path / "root" / "link.onnx").symlink_to(tmp_path / "outside.onnx")
    return tmp_path / "root"


def test_an_onnx_under_the_root_resolves(root):
    assert paths.model_path(root, "models/m.onnx") == (root / "models" / "m.onnx").resolve()
    assert paths.model_path(root, "/models/m.onnx") == (root / "models" / "m.onnx").resolve()


@pytest.mark.parametrize("relative", ["../outside.onnx", "models/../../outside.onnx", "link.onnx"])
def test_paths_leaving_the_root_are_refused(root, relative):
    with pytest.raises(UnsafeModelError, match="outside the Jupyter root"):
        paths.model_path(root, relative)


def test_a_pt2_needs_trust(root):
    with pytest.raises(UnsafeModelError, match="may run code"):
        paths.model_path(root, "m.pt2")
    assert paths.model_path(root, "m.pt2", trust=True).name == "m.pt2"


@pytest.mark.parametrize(
    ("relative", "message"),
    [("notes.txt", "not an .onnx or .pt2"), ("models/none.onnx", "not a file"), ("", "not an")],
)
def test_other_files_are_refused_with_the_reason(root, relative, message):
    with pytest.raises(ModelLoadError, match=message):
        paths.model_path(root, relative)


def test_the_prebuilt_frontend_is_committed_with_what_it_loads():
    """What ``pip install`` ships: the built package.json and the entry point it names."""
    folder = Path(__file__).resolve().parents[1] / "extensions/workbench-jupyterlab"
    built = json.loads((folder / "wb_jupyterlab/labextension/package.json").read_text())
    source = json.loads((folder / "package.json").read_text())
    assert (built["name"], built["version"]) == (source["name"], source["version"])
    assert (folder / "wb_jupyterlab/labextension" / built["jupyterlab"]["_build"]["load"]).is_file()


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("models/m.onnx", "workbench cannot open models/m.onnx: models/m.onnx is not a valid ONNX"),
        ("../outside.onnx", "'../outside.onnx' is outside the Jupyter root"),
        ("m.pt2", "'m.pt2' may run code when loaded; open it as trusted"),
    ],
)
def test_the_preview_page_says_one_line_without_server_folders(root, relative, message):
    # this checkout's app script (the installed extension may be an older copy); run with
    # no query, as Panel would outside a session, it shows its one line too
    script = Path(__file__).parents[1] / "extensions/workbench-jupyterlab/wb_jupyterlab/app.py"
    page = runpy.run_path(str(script))["page"]
    shown = page(str(root), relative, trusted=False)
    text = str(shown.object)
    assert text.startswith("workbench cannot open ") and message in text and "\n" not in text
    assert str(root) not in text and "Traceback" not in text
