"""AlexNet-, ZFNet- and Inception-v1-style graphs (with LRN) on the numba CPU backend,
against ONNX Runtime, in both layouts."""

from __future__ import annotations

import pytest
from classic_cnns import CLASSIC_CNNS
from numba_helpers import ort_outputs

import workbench as wb
from workbench.model import Model
from workbench.testing.tolerances import assert_close


@pytest.fixture(scope="module", params=list(CLASSIC_CNNS))
def classic(request: pytest.FixtureRequest) -> Model:
    return CLASSIC_CNNS[request.param]()


def test_classic_cnns_are_supported_and_use_lrn(classic: Model) -> None:
    ops = {node.op_type for node in classic.to_onnx().proto.graph.node}
    assert {"LRN", "Conv", "MaxPool", "Gemm", "Softmax"} <= ops
    assert wb.backend("numba").supports(classic).ok
    assert wb.backend("numba-cuda").supports(classic).ok


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_classic_cnns_match_onnxruntime(classic: Model, layout: str) -> None:
    session = wb.backend("numba").compile(classic, "cpu", layout=layout)
    for batch in (1, 3):
        inputs = classic.example_inputs(batch_size=batch, seed=batch)
        (got,) = session.run(inputs)
        (expected,) = ort_outputs(classic, inputs)
        assert_close(got, expected, scope="model", what=f"{classic.name} batch {batch}")


def test_lrn_after_a_convolution_runs_channels_last() -> None:
    """In Inception's stem both LRNs follow ungrouped convolutions (or their pool): they
    stay in the NHWC chain, so the only layout changes are at the input and the classifier."""
    session = wb.backend("numba").compile(CLASSIC_CNNS["inception-v1"](), "cpu")
    lrns = [node for node in session.graph.nodes if node.op_type == "LRN"]
    assert len(lrns) == 2 and all(node.channels_last for node in lrns)
    conversions = [node.name for node in session.graph.nodes if node.layer == "(layout)"]
    assert len(conversions) == 2, conversions
