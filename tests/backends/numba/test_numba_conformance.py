"""The numba (CPU) backend on the ONNX conformance cases of every op it implements."""

from __future__ import annotations

import pytest
from numba_conformance import EXPECTED_SKIPS, Case, cases, matches, run_case

CASES = cases()


def test_conformance_cases_are_found() -> None:
    assert len(CASES) > 200, "the onnx package's node test cases could not be loaded"


def test_every_expected_skip_names_a_case() -> None:
    """A pattern that matches no case would pin nothing (a typo, or a renamed case)."""
    unused = [p for p in EXPECTED_SKIPS if not any(matches(p, c.name) for c in CASES)]
    assert not unused, f"EXPECTED_SKIPS patterns matching no case: {unused}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_cpu(case: Case) -> None:
    run_case(case, "numba", "cpu", EXPECTED_SKIPS)
