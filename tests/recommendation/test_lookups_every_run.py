"""Every timed run checks its lookups: one line naming the table and the id on every
runtime, once per input set and never inside the timed calls; tables too large for
memory are refused before anything is allocated."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.backends.base import Session
from workbench.errors import InputError, ParameterError
from workbench.loaders.rec_archs import DLRM, TwoTower
from workbench.profiling import embedding_checks
from workbench.profiling.embedding_checks import LookupChecked
from workbench.profiling.measure import compiled


@pytest.fixture(scope="module")
def dlrm() -> wb.Model:
    return wb.samples.load("dlrm")


def _with(inputs: dict[str, np.ndarray], name: str, at: tuple[int, int], value: int) -> dict:
    bad = {k: v.copy() for k, v in inputs.items()}
    bad[name][at] = value
    return bad


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "numba"])
@pytest.mark.parametrize("value", [-1, 150], ids=["negative", "past-the-end"])
def test_a_bad_id_is_one_line_naming_the_table_on_every_runtime(dlrm, backend, value):
    # ORT's Gather reads -1 from the table's end, torch raises from its kernel: the
    # run path says which table and which id before either sees them
    bad = _with(dlrm.example_inputs(16), "ids_3", (5, 1), value)
    with pytest.raises(
        InputError, match=rf"table tables\.3 \(150 rows\) got id {value} at \[5, 1\]"
    ):
        wb.profile(dlrm, backend=backend, inputs=bad, layers=False, budget_s=0.01, warmup=0)


def test_an_onnx_model_and_a_compressed_table_are_checked_too(dlrm, tmp_path):
    onnx_model = wb.load(dlrm.to_onnx())
    bad = _with(dlrm.example_inputs(4), "ids_7", (0, 0), 20_000)
    said = r"table tables\.7 \(20000 rows\) got id 20000"
    with compiled(onnx_model, "onnxruntime", "cpu") as run, pytest.raises(InputError, match=said):
        run.session.runner(bad)
    # FBGEMM's int8 bag op would be the one to meet the bad id
    int8 = wb.transform(dlrm, "table-int8")
    with compiled(int8, "torch", "cpu") as run, pytest.raises(InputError, match=said):
        run.session.run(bad)


def test_each_input_set_is_checked_once_outside_the_timed_calls(dlrm, monkeypatch):
    passes = []
    forward = embedding_checks._check_torch
    monkeypatch.setattr(
        embedding_checks, "_check_torch", lambda *a: passes.append(1) or forward(*a)
    )
    seen = []
    check_ids = embedding_checks.check_ids
    monkeypatch.setattr(
        embedding_checks, "check_ids", lambda *a: seen.append(a[2]) or check_ids(*a)
    )
    with compiled(dlrm, "onnxruntime", "cpu") as run:
        assert isinstance(run.session, LookupChecked) and isinstance(run.session, Session)
        timed = run.session.runner(dlrm.example_inputs(8))
        checked = len(seen)
        for _ in range(3):
            timed()
        assert len(seen) == checked == 8  # the timed calls check nothing
        # a second input set: its ids read straight from the inputs, no forward pass
        with pytest.raises(InputError, match=r"table tables\.0 \(3 rows\) got id 3"):
            run.session.runner(_with(dlrm.example_inputs(8), "ids_0", (7, 1), 3))
    assert passes == [1]


def test_a_table_over_a_buffer_of_the_model_keeps_the_check_cheap():
    # the two-tower item table reads every item (a buffer): no forward pass after the first
    m = wb.samples.load("two-tower")
    with compiled(m, "torch", "cpu") as run:
        run.session.runner(m.example_inputs(4))
        assert run.session._direct is not None
        bad = _with(m.example_inputs(4), "history", (2, 9), -5)
        with pytest.raises(InputError, match=r"table users\.history \(2000 rows\) got id -5"):
            run.session.runner(bad)


def test_a_model_without_tables_runs_unwrapped():
    m = wb.samples.load("anomaly-autoencoder")
    with compiled(m, "onnxruntime", "cpu") as run:
        assert not isinstance(run.session, LookupChecked)


@pytest.mark.parametrize(
    "build, table",
    [
        (lambda: DLRM(table_rows=(3, 10**12)), "tables.1"),
        (lambda: TwoTower(items=10**12), "users.history"),
    ],
    ids=["dlrm", "two-tower"],
)
def test_a_table_too_large_for_memory_is_refused_before_allocating(build, table):
    # without the check torch tries to allocate terabytes and raises from its allocator
    with pytest.raises(ParameterError, match=rf"table {table} \(1,000,000,000,000 rows x \d+\)"):
        build()


def test_a_check_that_cannot_run_leaves_the_run_to_the_runtime_and_says_why(dlrm, monkeypatch):
    def broken(*_):
        raise RuntimeError("module on another device")

    monkeypatch.setattr(embedding_checks, "_check_torch", broken)
    with compiled(dlrm, "onnxruntime", "cpu") as run:
        run.session.runner(dlrm.example_inputs(4))()
        said = "the ids check's forward pass failed: RuntimeError"
        assert run.session.unchecked == said and said in run.session.notes
