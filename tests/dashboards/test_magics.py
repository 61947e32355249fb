"""``%load_ext workbench`` and its magics, in a real IPython kernel (nbclient) and in-process."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from workbench.dashboards.magics import profile_magic, run_profile
from workbench.errors import WorkbenchError


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A notebook that loads the extension and uses each magic, executed."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    folder = tmp_path_factory.mktemp("magics")
    cells = [
        "%load_ext workbench",
        "%wbdevices",
        "p = %wbprofile digits-mlp --backend onnxruntime --batch-size 4 --budget 0.05\n"
        "type(p).__name__, p.backend, p.batch_size",
        "%%wbprofile --backend torch --compare onnxruntime --budget 0.05\n"
        "import workbench as wb\n"
        "wb.samples.load('digits-mlp')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": folder}}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_STORE", str(folder / "runs.sqlite"))
        client.execute()
    return notebook


def _plain(cell):
    """The cell's outputs as text, less the progress bars (widgets, with a text fallback)."""
    data = [o.get("data", {}) for o in cell.outputs]
    widget = "application/vnd.jupyter.widget-view+json"
    return "".join(d.get("text/plain", "") for d in data if widget not in d)


def test_wbdevices_shows_the_devices_table(executed):
    assert "onnxruntime" in _plain(executed.cells[1]) and "cpu" in _plain(executed.cells[1])


def test_line_magic_returns_a_profile(executed):
    assert _plain(executed.cells[2]) == "('Profile', 'onnxruntime', 4)"


def test_cell_magic_profiles_the_cells_model_on_both_backends(executed):
    text = _plain(executed.cells[3])
    assert text.startswith("Comparison(['torch', 'onnxruntime']")
    streams = [o for c in executed.cells for o in c.outputs if o.get("name") == "stderr"]
    assert streams == []


def test_bad_options_say_what_is_wrong():
    with pytest.raises(WorkbenchError, match="--batch-size"):
        run_profile("digits-mlp", "--batch-size many")


def test_compare_needs_layers():
    with pytest.raises(WorkbenchError, match="drop --no-layers"):
        run_profile("digits-mlp", "--compare torch --no-layers")


def test_a_line_magic_needs_a_model():
    with pytest.raises(WorkbenchError, match="name a sample"):
        profile_magic("--backend torch")


def test_a_cell_without_a_final_expression_is_refused():
    shell = SimpleNamespace(user_ns={})
    with pytest.raises(WorkbenchError, match="last line"):
        profile_magic("", "x = 1", shell)
    assert shell.user_ns["x"] == 1  # the cell itself ran
