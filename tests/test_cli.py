"""The command line: devices, profile, errors become messages with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    return folder


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
    ("too large", ["{dir}/fixed.pt2", "--max-size", "0.0001"], "over the 104 bytes limit"),
    ("huge batch", ["digits-mlp", "--batch-size", "4000000000"], "out of memory (Unable to"),
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
