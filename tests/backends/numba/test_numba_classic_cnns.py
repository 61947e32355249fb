"""AlexNet-, ZFNet- and Inception-v1-style graphs (with LRN), and torch-built MobileNet v3
/ SqueezeNet blocks and a masked encoder, on the numba CPU backend against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from classic_cnns import CLASSIC_CNNS
from numba_helpers import ort_outputs
from torch_models import masked_encoder, mobilenet_v3_block

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
    stay in the NHWC chain, so the only layout change is at the classifier (the stem
    convolution reads the 3-channel image as it is)."""
    session = wb.backend("numba").compile(CLASSIC_CNNS["inception-v1"](), "cpu")
    lrns = [node for node in session.graph.nodes if node.op_type == "LRN"]
    assert len(lrns) == 2 and all(node.channels_last for node in lrns)
    conversions = [node.name for node in session.graph.nodes if node.layer == "(layout)"]
    assert len(conversions) == 1 and conversions[0].endswith("::to_nchw"), conversions


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_torch_mobilenet_and_squeezenet_blocks_match_onnxruntime(layout: str) -> None:
    """Hardswish, ReLU6 (Clip), a depthwise conv, squeeze-excite (HardSigmoid) and a fire
    module, as torch exports them."""
    model = mobilenet_v3_block()
    ops = {node.op_type for node in model.to_onnx().proto.graph.node}
    assert {"HardSwish", "HardSigmoid", "Clip", "Concat"} <= ops
    inputs = model.example_inputs(batch_size=3)
    (got,) = wb.backend("numba").compile(model, "cpu", layout=layout).run(inputs)
    assert_close(got, ort_outputs(model.to_onnx(), inputs)[0], scope="model")


def test_torch_encoder_with_a_padding_mask_matches_onnxruntime() -> None:
    model = masked_encoder()
    assert {"Equal", "Where"} <= {node.op_type for node in model.to_onnx().proto.graph.node}
    ids = np.array([[3, 5, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6], [9, 0, 0, 0, 0, 0]], np.int64)
    (got,) = wb.backend("numba").compile(model, "cpu").run({"ids": ids})
    assert_close(got, ort_outputs(model.to_onnx(), {"ids": ids})[0], scope="model")
