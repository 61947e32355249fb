"""The guided notebooks run top to bottom (nbclient), quietly, and are committed without outputs."""

from __future__ import annotations

import notebook_runs
import pytest
from notebook_runs import NOTEBOOKS

PLOTLY = "application/vnd.plotly.v1+json"
# figures each notebook must render (the plotly JSON is in its outputs)
MIN_FIGURES = {
    "01_quick_start": 4,
    "02_layers_across_backends": 4,
    "03_accuracy_vs_speed": 2,
    "07_generation": 4,
}


def test_the_numbered_notebooks_are_all_here():
    assert [p.stem[:3] for p in NOTEBOOKS] == [f"{n:02d}_" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors_or_stderr(path):
    """Each notebook was queued on the background lane when collection ended (conftest)."""
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    notebook = notebook_runs.queued(path).result()
    outputs = [(i, o) for i, cell in enumerate(notebook.cells) for o in cell.get("outputs", [])]
    errors = [(i, o["ename"], o["evalue"]) for i, o in outputs if o["output_type"] == "error"]
    assert errors == []
    # warnings, tqdm's "IProgress not found", logging: a reader should see none of it
    stderr = [(i, o["text"]) for i, o in outputs if o.get("name") == "stderr"]
    assert stderr == []
    figures = sum(PLOTLY in o.get("data", {}) for _, o in outputs)
    assert figures >= MIN_FIGURES.get(path.stem, 0)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name
