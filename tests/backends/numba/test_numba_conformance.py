"""The numba (CPU) backend on the ONNX conformance cases of every op it implements."""

from __future__ import annotations

import pytest
from numba_conformance import Case, cases
from numba_helpers import ort_outputs

from workbench.backends.base import get_backend
from workbench.errors import UnsupportedModelError
from workbench.loaders.onnx import model_from_proto
from workbench.testing.tolerances import assert_close

#: Cases whose stored outputs are rounded to 4 decimals: checked against ONNX Runtime.
ROUNDED_REFERENCE = {"test_averagepool_2d_ceil_last_window_starts_on_pad"}

CASES = cases()


def run_case(case: Case, backend: str, device: str) -> None:
    """Compile ``case`` on ``backend`` and compare every data set's outputs."""
    model = model_from_proto(case.model, name=case.name)
    try:
        session = get_backend(backend).compile(model, device)
        for inputs, expected in case.data_sets:
            got = session.run(list(inputs))
            if case.name in ROUNDED_REFERENCE:
                feeds = {spec.name: value for spec, value in zip(model.inputs, inputs, strict=True)}
                expected = tuple(ort_outputs(model, feeds))
            assert len(got) == len(expected)
            for i, (ours, reference) in enumerate(zip(got, expected, strict=True)):
                assert_close(ours, reference, what=f"{case.name} output {i}")
    except UnsupportedModelError as exc:
        pytest.skip(f"declared unsupported: {exc}")


def test_conformance_cases_are_found() -> None:
    assert len(CASES) > 200, "the onnx package's node test cases could not be loaded"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_cpu(case: Case) -> None:
    run_case(case, "numba", "cpu")
