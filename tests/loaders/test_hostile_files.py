"""Hostile model files run no code: through wb.load, the CLI and a dashboard upload.

Each file (built here, see `workbench.testing.hostile`) writes a marker file if any of its
code runs, or would keep the loader busy for good; every path must refuse it in one line
and leave no marker.
"""

from __future__ import annotations

import io
import json
import logging
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch

import workbench as wb
from workbench.cli import main
from workbench.errors import ModelLoadError, UnsafeModelError
from workbench.loaders.pt2 import load_program
from workbench.loaders.trust import _allowed_target, check_program, expression_problem
from workbench.testing.hostile import (
    HOSTILE_FILES,
    build,
    marker_pickle,
    payload_item,
    pt2_python_call,
)

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


def _saved(module: torch.nn.Module, example: torch.Tensor, dynamic: bool = False) -> bytes:
    shapes = ({0: torch.export.Dim("batch", min=2)},) if dynamic else None
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(module, (example,), dynamic_shapes=shapes), buffer)
    return buffer.getvalue()


class _TiedWithConstant(torch.nn.Module):
    """Two layers sharing one weight (one raw payload, two items) and a lifted constant."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3)
        self.b.weight = self.a.weight
        self.register_buffer("steps", torch.tensor(7))  # an integer buffer
        self.offset = torch.tensor([0.5, -1.0, 2.0])  # a constant, not a buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.offset + self.steps


def test_a_clean_pt2_loads_untrusted_as_torch_loads_it(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()).eval()
    data = _saved(module, torch.rand(2, 3), dynamic=True)
    program, reference = load_program(data, "m.pt2", None), torch.export.load(io.BytesIO(data))
    x = torch.rand(5, 3)
    assert torch.equal(program.module()(x), reference.module()(x))
    assert str(program.graph) == str(reference.graph)
    assert program.range_constraints == reference.range_constraints
    path = tmp_path / "m.pt2"
    path.write_bytes(data)
    assert wb.load(path).inputs[0].shape == ("batch", 3)


class _SizeArithmetic(torch.nn.Module):
    """Sizes that torch writes as powers, ratios, floats and maxima of symbols."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        sizes = (n * n, n * n * n, max(n, y.shape[0]), (n + 1) // 2)
        total = sum(torch.ones(size).sum() for size in sizes)
        return total + x.mean() * (n / 3) + x.mean() * n**0.5


def test_torchs_own_shape_expressions_pass_the_grammar() -> None:
    dims = ({0: torch.export.Dim("b", min=3, max=99)}, {0: torch.export.Dim("c", min=2)})
    program = torch.export.export(
        _SizeArithmetic(), (torch.rand(5, 4), torch.rand(6, 4)), dynamic_shapes=dims
    )
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    assert "Pow(Symbol(" in buffer.getvalue().decode("latin-1")  # the forms checked here
    loaded = load_program(buffer.getvalue(), "m.pt2", None)
    x, y = torch.rand(7, 4), torch.rand(3, 4)
    assert torch.allclose(loaded.module()(x, y), program.module()(x, y))


class _KeywordsAndBranches(torch.nn.Module):
    """Keyword inputs (named in the input spec) and a cond (subgraphs read as attributes)."""

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda y: y * mask, lambda y: y - mask, (x,))


def test_keyword_inputs_and_subgraphs_load_untrusted() -> None:
    x, mask = torch.rand(3), torch.ones(3)
    program = torch.export.export(_KeywordsAndBranches(), (x,), {"mask": mask})
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    loaded = load_program(buffer.getvalue(), "m.pt2", None)
    assert torch.equal(loaded.module()(x, mask=mask), program.module()(x, mask=mask))


def test_tied_weights_and_constants_load_as_torch_loads_them() -> None:
    data = _saved(_TiedWithConstant().eval(), torch.rand(2, 3))
    program, reference = load_program(data, "m.pt2", None), torch.export.load(io.BytesIO(data))
    x = torch.rand(2, 3)
    assert torch.equal(program.module()(x), reference.module()(x))
    assert program.state_dict.keys() == reference.state_dict.keys()
    for loaded in (program, reference):  # one payload: the two weights share their storage
        tied = loaded.state_dict["a.weight"], loaded.state_dict["b.weight"]
        assert tied[0].data_ptr() == tied[1].data_ptr()
    assert torch.equal(program.constants["offset"], reference.constants["offset"])
    assert program.state_dict["steps"].dtype == torch.int64


def _legacy_weights(data: bytes, weights: bytes) -> bytes:
    """``data`` in the older layout: one pickled state dict instead of a payload table."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if "/data/weights/" not in info.filename:
                dst.writestr(info, src.read(info))
        dst.writestr("archive/data/weights/model.pt", weights)
    return out.getvalue()


def test_legacy_weights_are_read_weights_only(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    buffer = io.BytesIO()
    torch.save(dict(module.named_parameters()), buffer)
    data = _legacy_weights(_saved(module, torch.rand(2, 3)), buffer.getvalue())
    program = load_program(data, "m.pt2", None)
    x = torch.rand(2, 3)
    assert torch.equal(program.module()(x), torch.export.load(io.BytesIO(data)).module()(x))
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeModelError, match=r"more than weights \(data/weights/model.pt\)"):
        load_program(_legacy_weights(data, marker_pickle(marker)), "m.pt2", None)
    assert not marker.exists()


def test_a_graph_calling_python_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeModelError, match=r"calls 'torch.os.system'"):
        load_program(pt2_python_call(marker), "evil.pt2", None)
    assert not marker.exists()


def test_an_operator_argument_is_checked_like_a_target() -> None:
    # higher-order ops (auto_functionalized, ...) take the op they call as an argument
    node = {"target": "torch.ops.higher_order.auto_functionalized", "inputs": []}
    node["inputs"].append({"name": "_mutable_op", "arg": {"as_operator": "torch.os.system"}})
    with pytest.raises(UnsafeModelError, match=r"calls 'torch.os.system'"):
        check_program(json.dumps({"graph": {"nodes": [node]}}).encode(), "m.pt2")


def test_an_inflating_entry_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    path = build("inflating.pt2", tmp_path, tmp_path / "marker")
    assert path.stat().st_size < 2**17  # 64 MiB of zeros in under 128 KiB
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeModelError, match=r"expands 1,0[0-9]{2} times"):
            wb.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**22  # nothing near the 64 MiB it would inflate to was allocated


def _deflated(data: bytes) -> bytes:
    """``data`` (a zip archive) with every entry deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), zipfile.ZIP_DEFLATED)
    return out.getvalue()


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_the_size_limit_counts_unpacked_bytes(tmp_path: Path, suffix: str) -> None:
    # 256 KiB of zero weights: deflated, the file is far below the limit, unpacked far above
    module = torch.nn.Linear(256, 256, bias=False)
    torch.nn.init.zeros_(module.weight)
    if suffix == ".pt2":
        data = _saved(module.eval(), torch.rand(2, 256))
    else:
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        data = buffer.getvalue()
    path = tmp_path / f"m{suffix}"
    path.write_bytes(_deflated(data))
    assert path.stat().st_size < 2**16
    for trust in (False, True):
        with pytest.raises(ModelLoadError, match=r"expands to more than the 131,072 bytes limit"):
            wb.load(path, max_bytes=2**17, trust=trust)


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
        ("s0**2 + PowByNatural(s1, 3) + s2**(-3/2) + 2**64", True),
        ("Piecewise((s0, Eq(s1, 2)), (s1, True))", True),
        ("IsNonOverlappingAndDenseIndicator(s0, 3, 1, 1)", True),
        # as torch writes them (sympy's srepr)
        ("Pow(Symbol('s0', positive=True, integer=True), Integer(-1))", True),
        ("Pow(Symbol('s0', positive=True, integer=True), Rational(3, 2))", True),
        ("FloatPow(ToFloat(Symbol('s7', positive=True)), Float('0.5', precision=53))", True),
        (
            "Piecewise(ExprCondPair(Symbol('s0'), Equality(Symbol('s0'), Integer(2))), "
            "ExprCondPair(Integer(1), true))",
            True,
        ),
        ("And(StrictGreaterThan(Symbol('s0'), Integer(2)), Unequality(Symbol('s0'), 5))", True),
        ("Pow(Integer(10), Pow(Integer(10), Integer(10)))", False),
        ("Float('1e99999', precision=53)", False),
        ("Float('0.5', precision=10**10)", False),
        ("Symbol('s0', positive='yes')", False),
        ("__import__('os').system('x')", False),
        ("eval('1')", False),
        ("s0.__class__", False),
        ("open('f', 'w')", False),
        ("Symbol('x; import os')", False),
        ("S('10**10**10')", False),  # S parses its string argument again
        ("Integer('10**10**10')", False),
        ("10**10**10", False),  # sympy computes it exactly and never returns
        ("(10**10)**(10**10)", False),
        ("((2**64)**64)**64", False),  # each exponent small, the number not
        ("2**s0", False),  # a symbol's hint can be any number
        ("LShift(1, 10**10)", False),
        ("Max(" + ", ".join(f"s{i}" for i in range(40)) + ")", False),  # sympy compares pairs
        ("s0 + " * 1100 + "1", False),
        ("Abs(" * 80 + "s0" + ")" * 80, False),
        ("10^10^10", False),  # sympify reads ^ as **
        ("lambda: 1", False),
        ("[s0][0]", False),
        ("s0 if s1 else s2", False),
        ("not s0", False),
        (42, False),
    ],
)
def test_shape_expressions_are_parsed_against_a_grammar(expr: object, ok: bool) -> None:
    assert (expression_problem(expr) is None) is ok


@pytest.mark.parametrize(
    ("expr", "count"),
    [("s0", 20_001), ("Max(" + ", ".join(f"s{i}*s{i + 1} + {i}" for i in range(8)) + ")", 300)],
    ids=["many", "costly"],
)
def test_shape_expressions_are_bounded_per_program(expr: str, count: int) -> None:
    # torch parses each occurrence again: sympify takes about 1.4 ms for "s0", 150 ms for
    # a Max of eight sums, so their number and cost are bounded together
    nodes = [{"meta": {"as_expr": {"expr_str": expr, "hint": None}}}] * count
    with pytest.raises(UnsafeModelError, match="more shape expressions than torch parses"):
        check_program(json.dumps({"graph": nodes}).encode(), "m.pt2")
    check_program(json.dumps({"graph": nodes[: count // 20]}).encode(), "m.pt2")


def _end_record_count(data: bytes, count: int) -> bytes:
    """``data`` (a zip archive) whose end record claims ``count`` entries."""
    out = bytearray(data)
    end = out.rfind(b"PK\x05\x06")
    out[end + 8 : end + 12] = count.to_bytes(2, "little") * 2
    return bytes(out)


@pytest.mark.parametrize("lie", ["count", "size"])
def test_a_zip_directory_is_bounded_before_it_is_read(tmp_path: Path, lie: str) -> None:
    # zipfile builds an object per entry its directory holds, whatever the end record's
    # count says: both the count and the directory's size are bounded
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(2 if lie == "count" else 5300):
            archive.writestr(f"archive/{i:01250d}", b"")
    path = tmp_path / "m.pt2"
    path.write_bytes(_end_record_count(out.getvalue(), 60_000 if lie == "count" else 1))
    with pytest.raises(ModelLoadError, match="entries or more, over the 50,000"):
        wb.load(path)


def test_pickled_entries_unpack_within_the_limit_together() -> None:
    # two pickled weights, each a torch.save archive of 256 KiB of zeros deflated to ~1 KiB:
    # each alone fits a 320 KiB limit, the two together do not
    buffer = io.BytesIO()
    torch.save(torch.zeros(2**16), buffer)
    nested = _deflated(buffer.getvalue())
    base = _saved(torch.nn.Sequential(torch.nn.Linear(3, 2)).eval(), torch.rand(2, 3))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                for path_name in ("weight_8", "weight_9"):
                    config["config"][path_name] = payload_item(path_name, 0, use_pickle=True)
                data = json.dumps(config).encode()
            dst.writestr(info, data)
        for path_name in ("weight_8", "weight_9"):
            dst.writestr(f"archive/data/weights/{path_name}", nested)
    assert len(out.getvalue()) < 2**15
    with pytest.raises(ModelLoadError, match=r"weight_9\) expands to more than"):
        load_program(out.getvalue(), "m.pt2", 320 * 2**10)
