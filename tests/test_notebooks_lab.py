"""notebooks/ as JupyterLab's root: a model to open in workbench, notebooks that open clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_lab_root_holds_a_model_to_open_in_workbench():
    import workbench as wb

    models = sorted((ROOT / "notebooks").glob("*.onnx"))
    assert models, "notebooks/ has no model file for 'Open in workbench'"
    # the digits-cnn sample, exported: kept equal to the sample it names
    example = ROOT / "notebooks/example-digits-cnn.onnx"
    assert example.read_bytes() == (ROOT / "sample_models/digits-cnn/model.onnx").read_bytes()
    model = wb.load(str(example))  # untrusted: an ONNX file is data
    assert model.framework == "onnx" and model.inputs
    paths = pytest.importorskip("wb_jupyterlab.paths", reason="workbench-jupyterlab not installed")
    assert paths.model_path(ROOT / "notebooks", example.name) == example.resolve()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_name_the_kernel_jupyterlab_starts(path):
    """JupyterLab rewrites a kernelspec or language_info that differs (marking it modified)."""
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelspec import get_kernel_dict

    metadata = json.loads(path.read_text())["metadata"]
    kernel = get_kernel_dict()
    expected = {"name": "python3", "display_name": kernel["display_name"], "language": "python"}
    assert metadata["kernelspec"] == expected
    language = dict(IPythonKernel.language_info)
    recorded = dict(metadata["language_info"])
    # the patch version is the running Python's: the notebooks record the project's (Binder's)
    assert recorded.pop("version").rsplit(".", 1)[0] == language.pop("version").rsplit(".", 1)[0]
    runtime = (ROOT / "binder/runtime.txt").read_text().strip().removeprefix("python-")
    assert metadata["language_info"]["version"].startswith(runtime + ".")
    assert recorded == language
