"""Hostile model files run no code: through wb.load, the CLI and a dashboard upload.

Each file (built here, see `workbench.testing.hostile`) writes a marker file if any of its
code runs; every path must refuse it in one line and leave no marker.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch

import workbench as wb
from workbench.cli import main
from workbench.errors import ModelLoadError, UnsafeModelError
from workbench.loaders.trust import _allowed_target, _arithmetic, check_pt2
from workbench.testing.hostile import HOSTILE_FILES, build, pt2_python_call

NAMES = sorted(HOSTILE_FILES)


@pytest.fixture(autouse=True)
def _quiet_torch_logs() -> None:
    # torch logs (not warns) when it falls back; nothing here may fall back, but keep it quiet
    logging.getLogger("torch").setLevel(logging.ERROR)


@pytest.fixture
def hostile(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    folder = tmp_path / "files"
    folder.mkdir()
    return build(request.param, folder, marker), marker


@pytest.mark.parametrize("hostile", NAMES, indirect=True, ids=NAMES)
def test_wb_load_refuses_without_running_code(hostile: tuple[Path, Path]) -> None:
    path, marker = hostile
    with pytest.raises(UnsafeModelError) as error:
        wb.load(path, example_inputs=(torch.rand(1, 8),))
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "trust=True" in message
    assert not marker.exists()


@pytest.mark.parametrize("hostile", NAMES, indirect=True, ids=NAMES)
def test_cli_refuses_with_one_line_and_exit_2(
    hostile: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker = hostile
    assert main(["profile", str(path), "--budget", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("workbench: error: ") and "--trust" in err
    assert "Traceback" not in err and not marker.exists()


@pytest.mark.parametrize("hostile", NAMES, indirect=True, ids=NAMES)
def test_dashboard_upload_refuses_without_running_code(hostile: tuple[Path, Path]) -> None:
    from workbench.dashboards.upload import UploadBuffer, load_upload

    path, marker = hostile
    data = path.read_bytes()
    buffer = UploadBuffer()
    with pytest.raises(ModelLoadError) as error:
        # whichever step refuses it: the type check on the first chunk, or the loader
        done = buffer.add(path.name, 1, 1, data)
        assert done is not None
        load_upload(*done, folder=path.parent.parent)
    message = str(error.value)
    assert "\n" not in message and str(path.parent) not in message
    assert "run code" in message or "trust=True" in message
    assert not marker.exists()


def test_trusted_files_still_load(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    scripted = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(module), str(scripted))
    pickled = tmp_path / "m.pth"
    torch.save(module, pickled)
    for path in (scripted, pickled):
        model = wb.load(path, example_inputs=(torch.rand(1, 3),), trust=True)
        assert model.framework == "torch" and model.inputs[0].shape == ("batch", 3)


def test_a_clean_pt2_loads_untrusted(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()).eval()
    buffer = io.BytesIO()
    shapes = ({0: torch.export.Dim("batch", min=2)},)
    torch.export.save(
        torch.export.export(module, (torch.rand(2, 3),), dynamic_shapes=shapes), buffer
    )
    check_pt2(buffer.getvalue(), "m.pt2")  # a dynamic dimension's expression is arithmetic
    path = tmp_path / "m.pt2"
    path.write_bytes(buffer.getvalue())
    assert wb.load(path).inputs[0].shape == ("batch", 3)


def test_a_graph_calling_python_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeModelError, match=r"calls 'torch.os.system'"):
        check_pt2(pt2_python_call(marker), "evil.pt2")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("torch.ops.aten.linear.default", True),
        ("torch.ops.aten.from_file.default", False),
        ("torch.ops.aten.save.default", False),
        ("torch.ops.higher_order.cond", True),
        ("torch.ops.higher_order.executorch_call_delegate", False),
        ("torch.ops.mylib.anything.default", False),
        ("_operator.getitem", True),
        ("_operator.methodcaller", False),
        ("torch.sym_max", True),
        ("torch.hub.load", False),
    ],
)
def test_graph_targets_are_an_allow_list(target: str, allowed: bool) -> None:
    assert _allowed_target(target) is allowed


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("Symbol('s77', positive=True, integer=True)", True),
        ("s0*s1 + FloorDiv(s2, 2) - 1", True),
        ("Max(2, s0) <= 1024", True),
        ("__import__('os').system('x')", False),
        ("eval('1')", False),
        ("s0.__class__", False),
        ("open('f', 'w')", False),
        ("Symbol('x; import os')", False),
    ],
)
def test_shape_expressions_must_be_arithmetic(expr: str, ok: bool) -> None:
    assert _arithmetic(expr) is ok
