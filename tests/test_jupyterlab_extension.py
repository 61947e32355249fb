"""workbench-jupyterlab's path check: only model files under the Jupyter root open.

The browser half (right-click, "Open in workbench", the dashboard in a tab) is in
tests/test_notebooks_browser.py, which shares its JupyterLab.
"""

from __future__ import annotations

import json
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
