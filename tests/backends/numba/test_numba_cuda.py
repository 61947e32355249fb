"""The numba-cuda backend: without a GPU here, in the CUDA simulator (subprocess), on a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import DeviceUnavailableError

SIMULATOR_TESTS = Path(__file__).with_name("sim_numba_cuda.py")


def _has_gpu() -> bool:
    from numba import cuda

    return os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and bool(cuda.is_available())


def test_without_a_gpu_the_backend_says_why() -> None:
    if _has_gpu() or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("a CUDA device (or the simulator) is available here")
    backend = wb.backend("numba-cuda")
    availability = backend.availability()
    assert not availability.ok and "NUMBA_ENABLE_CUDASIM" in availability.reason
    assert backend.devices() == []
    with pytest.raises(DeviceUnavailableError, match="no usable device"):
        backend.compile(wb.samples.load("digits-mlp"), "cuda:0")


def test_cuda_kernels_in_the_simulator() -> None:
    """Runs sim_numba_cuda.py in a fresh process with NUMBA_ENABLE_CUDASIM=1."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SIMULATOR_TESTS)]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[3]
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


def test_gpu_check_skips_cleanly_without_a_gpu() -> None:
    if _has_gpu():
        pytest.skip("a GPU is here: the check would run for minutes")
    script = Path(__file__).parents[3] / "benchmarks" / "gpu_check.py"
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "skipped, no usable GPU" in result.stdout


@pytest.mark.gpu
@pytest.mark.parametrize(
    "name", ["digits-mlp", "digits-cnn", "digits-transformer", "digits-resnet"]
)
def test_sample_models_on_a_gpu(name: str) -> None:
    if not _has_gpu():
        pytest.skip("no CUDA GPU")
    from numba_helpers import ort_outputs

    from workbench.testing.tolerances import assert_close

    model = wb.samples.load(name)
    inputs = model.example_inputs(batch_size=8)
    got = wb.backend("numba-cuda").compile(model, "cuda:0").run(inputs)
    for ours, reference in zip(got, ort_outputs(model.to_onnx(), inputs), strict=True):
        assert_close(ours, reference, scope="model")
