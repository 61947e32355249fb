"""The command line: devices, profile, errors become messages with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workbench.cli import main
from workbench.testing import toy_cnn


def test_devices_lists_cpu_backends(capsys) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "torch" in out and "SIMD" in out


def test_profile_writes_json(tmp_path: Path, capsys) -> None:
    model_path = tmp_path / "toy.onnx"
    toy_cnn().to_onnx(model_path)
    out_path = tmp_path / "p.json"
    code = main(
        [
            "profile",
            str(model_path),
            "--backend",
            "onnxruntime",
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--budget",
            "0.2",
            "--no-layers",
            "--json",
            str(out_path),
        ]
    )
    assert code == 0
    data = json.loads(out_path.read_text())
    assert data["batch_size"] == 4 and data["backend"] == "onnxruntime"
    assert data["latency_ms"]["n"] >= 10 and isinstance(data["layers"], list)
    assert "median" in capsys.readouterr().out


def test_bad_input_exits_non_zero_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    for args in (
        ["profile", str(bad)],
        ["profile", str(tmp_path / "missing.onnx")],
        ["profile", str(bad), "--backend", "nope"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "workbench.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("workbench: error:")
        assert "Traceback" not in done.stderr


def test_unknown_device_exits_non_zero(tmp_path: Path, capsys) -> None:
    model_path = tmp_path / "toy.onnx"
    toy_cnn().to_onnx(model_path)
    assert main(["profile", str(model_path), "--device", "cuda:3", "--no-layers"]) == 2
    assert "cuda:3" in capsys.readouterr().err


def test_profile_layer_view_containers(tmp_path: Path) -> None:
    out_path = tmp_path / "p.json"
    code = main(
        [
            "profile",
            "digits-cnn",
            "--backend",
            "torch",
            "--batch-size",
            "2",
            "--budget",
            "0.1",
            "--layer-view",
            "containers",
            "--json",
            str(out_path),
        ]
    )
    assert code == 0
    layers = {row["layer"] for row in json.loads(out_path.read_text())["layers"]}
    assert {"features", "features.0", "classifier.1"} <= layers  # containers and leaves


# ---- the bad-input catalogue: one line each, exit status 2, no traceback ----------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model files that are fine, but wrong for what the cases below ask of them."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    folder = tmp_path_factory.mktemp("bad")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "symbolic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, folder / "symbolic.onnx")
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], [1.0] * 12)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, folder / "matmul.onnx")
    module = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    torch.export.save(torch.export.export(module, (torch.rand(2, 3),)), folder / "fixed.pt2")
    torch.jit.save(torch.jit.script(module), str(folder / "scripted.pt"))
    for name, shape in (("negative", [-1, 4]), ("wide", ["batch", 1000, 1000])):
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"], name="relu")],
            name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(model, folder / f"{name}.onnx")
    onnx.save(_subgraph_external_data(), folder / "subgraph.onnx")
    return folder


def _subgraph_external_data() -> Any:
    """An ``If`` whose branch holds a weight stored in an external file (that is absent)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones(4, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="w.bin")
    row = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "xte"]
    then = helper.make_graph([helper.make_node("Add", ["x", "w"], ["t"])], "then", [], [row[1]])
    then.initializer.append(weight)
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [row[2]])
    flag = numpy_helper.from_array(np.array(True), "c")
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([node], "subgraph", [row[0]], [output], [flag])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


BAD_INPUTS = [
    # (case, arguments after "profile" ({dir} is the folder of bad files), message)
    ("symbolic dims", ["{dir}/symbolic.onnx"], "symbolic dimensions beyond the batch in x"),
    ("bad --shape", ["{dir}/symbolic.onnx", "--shape", "x=2by5"], "is not NAME=DIMxDIM"),
    ("unknown --shape", ["{dir}/symbolic.onnx", "--shape", "z=1x2x4"], "unknown input(s) ['z']"),
    (
        "runtime error",
        ["{dir}/matmul.onnx", "--shape", "x=1x5"],
        "onnxruntime failed ([ONNXRuntimeError]",
    ),
    ("fixed batch", ["{dir}/fixed.pt2", "--batch-size", "4"], "runs only batch 2"),
    (
        "fixed batch, torch",
        ["{dir}/fixed.pt2", "--batch-size", "4", "--backend", "torch"],
        "runs only batch 2",
    ),
    ("fractional batch", ["digits-mlp", "--batch-size", "2.5"], "'2.5' is not a whole number"),
    ("negative budget", ["digits-mlp", "--budget", "-1"], "--budget: must be greater than 0"),
    ("negative threads", ["digits-mlp", "--threads", "-2"], "--threads: must be at least 1"),
    ("100,000 threads", ["digits-mlp", "--threads", "100000"], "--threads: must be at most 1,024"),
    ("too large", ["{dir}/fixed.pt2", "--max-size", "0.0001"], "over the 104 bytes limit"),
    ("huge batch", ["digits-mlp", "--batch-size", "4000000000"], "must be at most 16,777,216"),
    ("nan budget", ["digits-mlp", "--budget", "nan"], "--budget: must be a finite number"),
    ("day-long budget", ["digits-mlp", "--budget", "1e9"], "must be at most 86,400"),
    ("negative dims", ["{dir}/negative.onnx"], "'x' of negative has a negative dimension"),
    (
        "inputs too large",  # 5000 x 1000 x 1000 float32: refused before allocating
        ["{dir}/wide.onnx", "--batch-size", "5000"],
        "need 18.6 GiB, over the ",
    ),
    ("subgraph external data", ["{dir}/subgraph.onnx"], "fails the ONNX checker"),
    (
        "inputs too large, the advice",
        ["{dir}/wide.onnx", "--batch-size", "5000"],
        "GiB limit for generated inputs; use a smaller batch size, or set WORKBENCH_MAX_INPUT_MB",
    ),
    ("code", ["{dir}/scripted.pt"], "is TorchScript, which is code"),
    (
        "unknown backend option",
        # the reference plugin (installed by the set-up) takes no options at all
        ["digits-mlp", "--backend", "onnx-reference", "--threads", "1"],
        "onnx-reference takes no options, got ['threads']",
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_each_bad_input_gets_one_line_and_exit_2(bad_files, capsys, args, message) -> None:
    argv = ["profile", *(a.format(dir=bad_files) for a in args), "--no-layers"]
    if "--budget" not in args:
        argv += ["--budget", "0.05"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("workbench: error: "), err
    assert message in err and "Traceback" not in err


@pytest.fixture(scope="module")
def bad_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files other commands are pointed at: another application's database, a corrupt
    one, and Profile JSON of the wrong types."""
    import sqlite3

    folder = tmp_path_factory.mktemp("stores")
    db = sqlite3.connect(folder / "app.sqlite")
    db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    db.commit()
    db.close()
    (folder / "corrupt.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    wrong = {"model": 3, "backend": [], "device": "cpu", "batch_size": "x", "latency_ms": 5}
    (folder / "wrong.json").write_text(json.dumps(wrong))
    (folder / "other.json").write_text(json.dumps({"hello": "world"}))
    return folder


OTHER_COMMANDS = [
    # (case, full arguments ({dir}: the bad stores), message)
    ("cluster address", ["devices", "--cluster", "not-an-address"], "is not a Dask scheduler"),
    (
        "foreign store",
        ["report", "x", "--store", "{dir}/app.sqlite", "--out", "{dir}/r.html"],
        "app.sqlite is not a workbench results store (it holds tables users)",
    ),
    (
        "corrupt store",
        ["report", "x", "--store", "{dir}/corrupt.sqlite", "--out", "{dir}/r.html"],
        "file is not a database",
    ),
    (
        "profile JSON of wrong types",
        ["report", "{dir}/wrong.json", "--out", "{dir}/r.html"],
        "not a workbench Profile: model (int, not str); backend (list, not str)",
    ),
    (
        "JSON that is neither",
        ["report", "{dir}/other.json", "--out", "{dir}/r.html"],
        "is not a Profile JSON (workbench profile --json) or a sweep table",
    ),
    (
        "minimum duration of years",
        ["scenario", "digits-mlp", "--min-duration", "1e9"],
        "--min-duration: must be at most 86,400",
    ),
    ("negative rate", ["scenario", "digits-mlp", "--rate", "-1"], "--rate: must be greater"),
    ("port past 65535", ["serve", "--port", "99999"], "--port: must be at most 65,535"),
    (
        "data that is not an .npz",
        ["sweep", "digits-mlp", "--data", "{dir}/wrong.json", "--store", "{dir}/s.sqlite"],
        "wrong.json is not an .npz file of arrays x and y",
    ),
    (
        "unknown layer method",
        ["profile", "digits-mlp", "--layer-method", "nsight", "--budget", "0.05"],
        "unknown layer method 'nsight' for backend 'onnxruntime'",
    ),
    (
        "missing data file",
        ["sweep", "digits-mlp", "--data", "{dir}/none.npz", "--store", "{dir}/s.sqlite"],
        "No such file or directory: {dir}/none.npz",
    ),
    (
        "misspelt backend",
        ["sweep", "digits-mlp", "--backends", "torhc", "--store", "{dir}/s.sqlite"],
        "unknown backend 'torhc'; did you mean 'torch'?",
    ),
    (
        "unknown calibration method",
        ["sweep", "digits-mlp", "--variants", "int8-static:method=median"],
        "method must be minmax, entropy or percentile, got 'median'",
    ),
    (
        "sparsity past 1",
        ["sweep", "digits-mlp", "--variants", "prune-magnitude:sparsity=2"],
        "sparsity must be in [0, 1), got 2",
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in OTHER_COMMANDS], ids=[c[0] for c in OTHER_COMMANDS]
)
def test_other_commands_bad_input_one_line(bad_stores, capsys, args, message) -> None:
    code = main([a.format(dir=bad_stores) for a in args])
    err = capsys.readouterr().err.rsplit("\r", 1)[-1]  # after any progress bar's last redraw
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("workbench: error: "), err
    assert message.format(dir=bad_stores) in err and "Traceback" not in err


def test_foreign_store_is_left_untouched(bad_stores) -> None:
    import sqlite3

    path = bad_stores / "app.sqlite"
    main(["report", "x", "--store", str(path), "--out", str(bad_stores / "r.html")])
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["users"]


# ---- names from a model file never drive the terminal ------------------------------------


def test_control_characters_in_names_are_escaped(tmp_path: Path, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper

    evil = "\x1b]0;pwned\x07relu\x1b[2J\rFAKE: all good"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x\x1b[31m"], ["y"], name=evil)],
        "g",
        [helper.make_tensor_value_info("x\x1b[31m", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    path = tmp_path / "evil\x1b[5m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["profile", str(path), "--budget", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "evil\\x1b[5m" in out and "pwned" in out and "FAKE: all good" in out  # shown
    # errors too: the model's own name reaches stderr escaped
    assert main(["profile", str(path), "--batch-size", "8", "--shape", "x\x1b[31m=1"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "x\\x1b[31m" in err


def test_printable_stream_keeps_a_progress_bar_redraw(capsys) -> None:
    from workbench.cli import _Printable

    stream = _Printable(sys.stdout)
    stream.write("\rbar 50%\x1b[2K")
    stream.write("a\rb\r")
    assert capsys.readouterr().out == "\rbar 50%\\x1b[2K" + "a\\x0db\r"


# ---- sweep, report, scenario and slo say what happened --------------------------------------

SWEEP = ["sweep", "digits-mlp", "--variants", "baseline", "--backends", "onnxruntime"]


def test_sweep_says_it_resumed_and_fresh_measures_again(tmp_path: Path, caplog) -> None:
    argv = [*SWEEP, "--budget-s", "0.02", "--store", str(tmp_path / "s.sqlite")]
    argv += ["--json", str(tmp_path / "sweep.json")]
    assert main(argv) == 0 and "resumed" not in caplog.text
    assert main(argv) == 0
    assert "resumed sweep digits-mlp-" in caplog.text and "1 of 1 points" in caplog.text
    assert "workbench sweep --fresh) measures every point again" in caplog.text
    caplog.clear()
    assert main([*argv, "--fresh"]) == 0
    assert "resumed" not in caplog.text and "started fresh" in caplog.text
    # the JSON `workbench sweep --json` writes is a report's input
    out = tmp_path / "sweep.html"
    assert main(["report", str(tmp_path / "sweep.json"), "--out", str(out)]) == 0
    assert "digits-mlp" in out.read_text()


def test_scenario_invalid_run_says_why_and_what_to_try(capsys) -> None:
    argv = ["scenario", "digits-mlp", "--kind", "server", "--rate", "200", "--target-ms"]
    argv += ["0.0001", "--min-queries", "20", "--min-duration", "0.1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "workbench: the run is INVALID (p99 latency" in err
    assert "for a valid run try a lower --rate, a larger --target-ms" in err


def test_slo_keeps_the_variants_and_backends_that_run(capsys) -> None:
    argv = ["slo", "digits-mlp", "--p99-ms", "50", "--variants", "baseline", "nope"]
    argv += ["--steps", "1", "--min-queries", "20", "--min-duration", "0.1"]
    assert main([*argv, "--backends", "onnxruntime", "torhc"]) == 0
    captured = capsys.readouterr()
    assert "failed: variant nope: unknown transform 'nope'" in captured.err
    assert "highest sustained server rate" in captured.out
    assert "failed: baseline on torhc/cpu: unknown backend 'torhc'; did you mean" in captured.out
    assert main([*argv, "--backends", "torhc"]) == 1  # nothing ran


def test_a_command_whose_extra_is_missing_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import workbench.dashboards.serve as served

    def no_panel(**_: object) -> None:
        raise ModuleNotFoundError("No module named 'panel'", name="panel")

    monkeypatch.setattr(served, "serve", no_panel)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "needs panel" in err and "inference-workbench[dashboard]" in err


def test_help_lists_every_command_from_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import COMMANDS

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name in ("devices", "profile", "sweep", "scenario", "slo", "generate", "report"):
        assert name in listed
    assert all(hasattr(command, "add_command") for command in COMMANDS)
