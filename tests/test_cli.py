"""The command line: devices, profile, errors become messages with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
