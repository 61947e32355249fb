"""The numba-cuda backend: without a GPU here, in the CUDA simulator (subprocess), on a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from numba_conformance import CUDA_EXPECTED_SKIPS, EXPECTED_SKIPS, expected_skip

import workbench as wb
from workbench.errors import DeviceUnavailableError

#: The simulator tests that may skip, by test-id pattern (``*`` is any run of characters),
#: with a phrase of the reason: the conformance cases both backends or numba-cuda decline.
#: Any other skip in the child run fails `test_cuda_kernels_in_the_simulator`.
SIMULATOR_EXPECTED_SKIPS = {
    f"test_conformance_cuda_simulator[{case}]": reason
    for case, reason in {**EXPECTED_SKIPS, **CUDA_EXPECTED_SKIPS}.items()
}


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


def test_cuda_kernels_in_the_simulator(simulator_run, capsys: pytest.CaptureFixture[str]) -> None:
    """sim_numba_cuda.py in a fresh process with NUMBA_ENABLE_CUDASIM=1 (queued on the
    background lane by conftest when collection ends); its skips must all be in
    `SIMULATOR_EXPECTED_SKIPS`, and the counts are printed here."""
    run, report = simulator_run
    returncode, output = run.result()
    assert returncode == 0, output
    passed, skipped = _outcomes(report)
    unexpected = _unexpected_skips(skipped)
    assert not unexpected, "unexpected skips in the simulator run:\n" + "\n".join(unexpected)
    assert passed
    with capsys.disabled():  # shown in the main run's output, not only on failure
        print(f"\nCUDA simulator: {passed} passed, {len(skipped)} skipped (all expected)")


def test_unlisted_or_misexplained_simulator_skips_are_reported(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(
        "<testsuites><testsuite>"
        '<testcase name="test_ok"/>'
        '<testcase name="test_conformance_cuda_simulator[test_training_dropout]">'
        '<skipped message="expected: training_mode=True (random)"/></testcase>'
        '<testcase name="test_conformance_cuda_simulator[test_maxpool_3d_default]">'
        '<skipped message="expected: a new reason"/></testcase>'
        '<testcase name="test_tiny_ops_match_the_reference[erf]"><skipped message="x"/>'
        '</testcase><testcase name="test_broken"><failure message="boom"/></testcase>'
        "</testsuite></testsuites>"
    )
    passed, skipped = _outcomes(report)
    assert passed == 1 and len(skipped) == 3
    assert _unexpected_skips(skipped) == [
        "test_conformance_cuda_simulator[test_maxpool_3d_default]: expected: a new reason",
        "test_tiny_ops_match_the_reference[erf]: x",
    ]


def _unexpected_skips(skipped: dict[str, str]) -> list[str]:
    """``test: reason`` of each skip that `SIMULATOR_EXPECTED_SKIPS` does not pin (no
    pattern matches, or its phrase is not in the reason)."""
    return [
        f"{test}: {reason}"
        for test, reason in skipped.items()
        if (pinned := expected_skip(test, SIMULATOR_EXPECTED_SKIPS)) is None or pinned not in reason
    ]


def _outcomes(report: Path) -> tuple[int, dict[str, str]]:
    """The number of passed tests in a JUnit XML report and each skipped test's reason."""
    passed, skipped = 0, {}
    for case in ElementTree.parse(report).iter("testcase"):
        skip = case.find("skipped")
        if skip is not None:
            skipped[case.get("name", "")] = skip.get("message", "")
        elif case.find("failure") is None and case.find("error") is None:
            passed += 1
    return passed, skipped


def test_gpu_check_skips_cleanly_without_a_gpu() -> None:
    if _has_gpu():
        pytest.skip("a GPU is here: the check would run for minutes")
    script = Path(__file__).parents[3] / "benchmarks" / "gpu_check.py"
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "skipped, no usable GPU" in result.stdout


def test_cuda_kernels_compile_to_ptx_for_hopper(monkeypatch) -> None:
    """The simulator runs kernels as Python and checks no CUDA typing: NVVM does."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("PTX needs the real CUDA target")
    import types

    from numba import cuda
    from numba import types as nt

    from workbench.backends.numba import cuda as kernels

    try:
        cuda.compile_ptx(lambda a: None, (nt.float32[:],), cc=(9, 0))
    except Exception as exc:  # no libNVVM here
        pytest.skip(f"NVVM unavailable: {exc}")
    # device functions are compiled for the current device's capability: fake one
    fake = types.SimpleNamespace(compute_capability=(9, 0))
    monkeypatch.setattr("numba.cuda.dispatcher.get_current_device", lambda: fake)
    f32, i64, f64, flag = nt.float32, nt.int64, nt.float64, nt.boolean
    arr = {n: nt.Array(f32, n, "C") for n in (1, 2, 3, 4)}
    idx = nt.Array(i64, 1, "C")
    gemm_args = (i64, i64, i64, idx, arr[1], i64, i64, f64, f64, i64, i64)
    signatures = {
        kernels.gemm_kernel(kernels.LARGE, False): (arr[3], arr[3], arr[1], *gemm_args),
        kernels.gemm_kernel(kernels.SMALL, True): (arr[3], arr[4], arr[1], *gemm_args),
        kernels.conv_direct: (arr[4], arr[4], arr[1], idx, i64, i64, arr[4]),
        kernels.elementwise_nd: (arr[1], arr[1], arr[1], idx, idx, idx, i64, i64, f64, f64),
        kernels.compare_nd: (arr[1], arr[1], nt.Array(flag, 1, "C"), idx, idx, idx, i64),
        kernels.copy_nd: (arr[1], arr[1], idx, idx, i64, idx, i64),
        kernels.pool2d: (arr[4], idx, flag, flag, arr[4]),
        kernels.reduce_rows: (arr[2], arr[1], i64, f32),
        kernels.arg_rows: (arr[2], idx, flag, flag),
        kernels.softmax: (arr[3], arr[3]),
        kernels.layer_norm: (arr[2], arr[1], arr[1], f64, arr[2], arr[1], arr[1]),
        kernels.channel_affine: (arr[3], arr[1], arr[1], arr[3]),
        kernels.batch_norm_affine: (arr[1], arr[1], arr[1], arr[1], f64, arr[2]),
        kernels.gather4: (arr[4], idx, idx, idx, idx, f32, arr[4]),
        kernels.lrn: (arr[3], i64, f64, f64, f64, arr[3]),
        kernels.where_nd: (nt.Array(flag, 1, "C"), arr[1], arr[1], arr[1], idx, idx, idx, idx),
        kernels.gather_axis: (arr[3], idx, arr[3]),
        kernels.fill: (arr[1], f32),
        **_index_and_qdq_signatures(),
    }
    for kernel, signature in signatures.items():
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
        assert ".entry" in ptx
    large = cuda.compile_ptx(
        kernels.gemm_kernel(kernels.LARGE, False).py_func,
        signatures[kernels.gemm_kernel(kernels.LARGE, False)],
        cc=(9, 0),
    )[0]
    assert "ld.local" not in large  # the register tile really is in registers


def _index_and_qdq_signatures() -> dict[object, tuple[object, ...]]:
    """The `index_cuda` kernels with their int8/uint8/int32 operands (issue 27)."""
    from numba import types as nt

    from workbench.backends.numba import index_cuda as k

    def a(dtype: object, ndim: int) -> object:
        return nt.Array(dtype, ndim, "C")

    f32, i64, u8, i8 = nt.float32, nt.int64, nt.uint8, nt.int8
    idx, flag = a(i64, 1), nt.boolean
    return {
        k.gather_elements: (a(f32, 1), idx, a(f32, 1), idx, idx, i64, i64),
        k.scatter_elements: (a(f32, 1), idx, a(f32, 1), idx, idx, i64, i64, i64),
        k.gather_nd: (a(f32, 3), a(i64, 3), a(f32, 3), idx, idx),
        k.scatter_nd: (a(f32, 2), a(i64, 2), a(f32, 2), idx, idx, i64),
        k.cumsum: (a(f32, 3), a(f32, 3), flag, flag),
        k.norm_rows: (a(f32, 2), a(f32, 1), i64),
        k.quantize: (a(f32, 3), a(f32, 1), a(i8, 1), idx, nt.float64, nt.float64, a(i8, 3)),
        k.dequantize: (a(u8, 3), a(f32, 1), a(u8, 1), idx, a(f32, 3)),
        k.dynamic_parameters: (a(f32, 1), a(f32, 1), a(u8, 1), a(f32, 1)),
        k.matmul_integer: (a(u8, 3), a(i8, 3), a(u8, 1), a(i8, 1), a(nt.int32, 3)),
    }


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


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["alexnet", "zfnet", "inception-v1"])
def test_classic_cnns_on_a_gpu(name: str) -> None:
    if not _has_gpu():
        pytest.skip("no CUDA GPU")
    from classic_cnns import CLASSIC_CNNS
    from numba_helpers import ort_outputs

    from workbench.testing.tolerances import assert_close

    model = CLASSIC_CNNS[name]()
    inputs = model.example_inputs(batch_size=4)
    (got,) = wb.backend("numba-cuda").compile(model, "cuda:0").run(inputs)
    assert_close(got, ort_outputs(model, inputs)[0], scope="model")
