"""Every runtime's threads default to the CPUs free here, and hold only while it runs."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.backends import cpus


@pytest.fixture
def one_free_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with a busy neighbour per core: one CPU free whatever the machine is doing."""
    monkeypatch.setattr(cpus, "free_cpus", lambda root="/", **_: 1)
    monkeypatch.setattr(cpus, "_reused", {})


def test_torch_runs_on_the_free_cpus_and_restores_its_count(one_free_cpu) -> None:
    import torch

    model = wb.samples.load("digits-mlp")
    before = torch.get_num_threads()
    session = wb.backend("torch").compile(model, "cpu")
    assert session.threads == 1
    seen = []
    with session.settings():
        seen.append(torch.get_num_threads())
    assert seen == [1] and torch.get_num_threads() == before
    assert wb.backend("torch").compile(model, "cpu", threads=2).threads == 2  # the user's


def test_onnxruntime_is_capped_by_the_free_cpus(one_free_cpu) -> None:
    from workbench.backends.onnxruntime.options import ort_default_threads

    if ort_default_threads() < 2:
        pytest.skip("ORT's own default is one thread here: nothing to cap")
    session = wb.backend("onnxruntime").compile(wb.samples.load("digits-mlp"), "cpu")
    assert session.threads == 1
    assert session.session.get_session_options().intra_op_num_threads == 1


def test_numba_runs_its_loops_on_the_free_cpus_only_while_running(one_free_cpu) -> None:
    import numba

    model = wb.samples.load("digits-mlp")
    session = wb.backend("numba").compile(model, "cpu")
    assert session.threads == 1
    before = numba.get_num_threads()
    with session.settings():
        inside = numba.get_num_threads()
    assert inside == 1 and numba.get_num_threads() == before
    assert session.run(model.example_inputs(4))[0].shape == (4, 10)


def test_openvino_cpu_threads_are_capped_by_the_free_cpus(one_free_cpu) -> None:
    pytest.importorskip("openvino")
    if "openvino" not in wb.backend_names():
        pytest.skip("the openvino plugin is not installed")
    import psutil

    if (psutil.cpu_count(logical=False) or 1) < 2:
        pytest.skip("OpenVINO's own default is one thread here: nothing to cap")
    session = wb.backend("openvino").compile(wb.samples.load("digits-mlp"), "cpu")
    assert session.threads == 1
