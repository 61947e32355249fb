"""The ONNX conformance cases for the ops the Numba backends implement.

The ``onnx`` package's node tests (``onnx/backend/test/data/node/test_*``: one
model.onnx plus input/output protobufs each) are read from disk when the installed
wheel ships them, else regenerated in memory from ``onnx.backend.test.case.node``,
the generator those files come from.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: Op types under test: the issue's list plus what the sample models need.
OPS = frozenset(
    [
        "Conv",
        "Gemm",
        "MatMul",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Relu",
        "Sigmoid",
        "Tanh",
        "Gelu",
        "Erf",
        "Softmax",
        "LayerNormalization",
        "BatchNormalization",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Flatten",
        "Reshape",
        "Transpose",
        "Concat",
        "Identity",
        "Dropout",
        "Constant",
        "ConstantOfShape",
        "Sum",
        "Resize",
        "Shape",
        "Gather",
        "Squeeze",
        "Unsqueeze",
        "Cast",
        "CastLike",
        "Pow",
        "Sqrt",
        "ReduceMean",
        "Slice",
        "Expand",
        "Exp",
        "LRN",
        "Pad",
        "Where",
        "Clip",
        "Max",
        "Min",
        "Neg",
        "Abs",
        "Reciprocal",
        "Log",
        "Floor",
        "Ceil",
        "LeakyRelu",
        "HardSigmoid",
        "HardSwish",
        "Equal",
        "Less",
        "Greater",
        "LessOrEqual",
        "GreaterOrEqual",
        "And",
        "Or",
        "Xor",
        "Not",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "Split",
        "Tile",
        "Range",
        "ArgMax",
        "ArgMin",
        "GatherND",
        "GatherElements",
        "ScatterND",
        "ScatterElements",
        "CumSum",
        "IsNaN",
        "IsInf",
        "ReduceL1",
        "ReduceL2",
        "ReduceSumSquare",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
    ]
)


#: Conformance cases both backends decline at run time, by case-name pattern (``*`` is
#: the only wildcard), with a phrase of the `UnsupportedModelError` they raise: the limits
#: in docs/numba.md. Any other declined case fails, and so does a listed one that runs.
EXPECTED_SKIPS = {
    "test_averagepool_3d_*": "only 1-D and 2-D supported",
    "test_maxpool_3d_*": "only 1-D and 2-D supported",
    "test_maxpool_with_argmax_*": "the Indices output is not supported",
    "test_batchnorm_*_training_mode": "training_mode",
    "test_training_dropout*": "training_mode=True (random)",
    "test_resize_*_cubic*": "only mode='nearest'",
    "test_resize_*_linear*": "only mode='nearest'",
    "test_resize_tf_crop_and_resize*": "only mode='nearest'",
    "test_resize_*_nearest_not_larger": "keep_aspect_ratio_policy='stretch'",
    "test_resize_*_nearest_not_smaller": "keep_aspect_ratio_policy='stretch'",
}
#: What numba-cuda declines on top of `EXPECTED_SKIPS` (the simulator runs it).
CUDA_EXPECTED_SKIPS: dict[str, str] = {}

#: Cases whose stored outputs are rounded to 4 decimals: checked against ONNX Runtime.
ROUNDED_REFERENCE = {"test_averagepool_2d_ceil_last_window_starts_on_pad"}


def matches(pattern: str, name: str) -> bool:
    """Whether ``name`` is ``pattern``, where ``*`` stands for any run of characters."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), name) is not None


def expected_skip(name: str, table: Mapping[str, str]) -> str | None:
    """The reason ``table`` gives for skipping ``name`` (its first matching pattern), if any."""
    return next((reason for pattern, reason in table.items() if matches(pattern, name)), None)


@dataclass(frozen=True)
class Case:
    """One conformance case: a single-node model and its input/output data sets."""

    name: str
    op_type: str
    model: Any
    data_sets: tuple[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]], ...]


@functools.cache
def cases() -> tuple[Case, ...]:
    """Every single-node conformance case whose op is in `OPS`, sorted by name."""
    import onnx

    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    found = _from_files(folder) if folder.is_dir() else _generated()
    kept = (c for c in found if c.op_type in OPS and _plain_tensors(c))
    return tuple(sorted(kept, key=lambda c: c.name))


#: Element types the backends compute in; float16/bfloat16/float8/int4 are out of scope.
DTYPES = frozenset({"float32", "float64", "int32", "int64", "bool", "uint8", "int8"})


def _plain_tensors(case: Case) -> bool:
    """Only dense tensors of supported dtypes (no sequences, optionals, strings, float8)."""
    for ins, outs in case.data_sets:
        for value in (*ins, *outs):
            if not isinstance(value, np.ndarray) or value.dtype.name not in DTYPES:
                return False
    return _tensor_io(case.model)


def _tensor_io(model: Any) -> bool:
    graph = model.graph
    return all(v.type.HasField("tensor_type") for v in (*graph.input, *graph.output))


def _from_files(folder: Path) -> list[Case]:
    import onnx
    from onnx import numpy_helper

    found = []
    for case_dir in folder.glob("test_*"):
        model = onnx.load(str(case_dir / "model.onnx"))
        if len(model.graph.node) != 1:
            continue
        sets = []
        for data_dir in sorted(case_dir.glob("test_data_set_*")):
            ins = tuple(_read(numpy_helper, p) for p in sorted(data_dir.glob("input_*.pb")))
            outs = tuple(_read(numpy_helper, p) for p in sorted(data_dir.glob("output_*.pb")))
            sets.append((ins, outs))
        found.append(Case(case_dir.name, model.graph.node[0].op_type, model, tuple(sets)))
    return found


def _read(numpy_helper: Any, path: Path) -> np.ndarray:
    import onnx

    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _array(numpy_helper: Any, value: Any) -> Any:
    if hasattr(value, "HasField"):  # a TensorProto (types NumPy cannot hold, like bfloat16)
        return numpy_helper.to_array(value)
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def _generated() -> list[Case]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators use deprecated helpers
        from onnx.backend.test.case import node

        generated = node.collect_testcases(None)
    from onnx import numpy_helper

    found = []
    for case in generated:
        if case.model is None or len(case.model.graph.node) != 1 or not _tensor_io(case.model):
            continue
        sets = tuple(
            (tuple(_array(numpy_helper, v) for v in i), tuple(_array(numpy_helper, v) for v in o))
            for i, o in case.data_sets or ()
        )
        found.append(Case(case.name, case.model.graph.node[0].op_type, case.model, sets))
    return found


def run_case(case: Case, backend: str, device: str, expected_skips: Mapping[str, str]) -> None:
    """Compile ``case`` on ``backend`` and compare every data set's outputs.

    The backend must declare the case's op supported. An `UnsupportedModelError` from
    compiling or running then skips the case only if ``expected_skips`` pins it with a
    phrase of that error; any other one fails, and so does a pinned case that runs.
    """
    from numba_helpers import ort_outputs

    from workbench.backends.base import get_backend
    from workbench.errors import UnsupportedModelError
    from workbench.loaders.onnx import model_from_proto
    from workbench.testing.tolerances import assert_close

    model = model_from_proto(case.model, name=case.name)
    target = get_backend(backend)
    support = target.supports(model)
    assert support.ok, f"{backend} does not declare {case.op_type} supported: {support.reasons}"
    reason = expected_skip(case.name, expected_skips)
    try:
        session = target.compile(model, device)
        for inputs, expected in case.data_sets:
            got = session.run(list(inputs))
            if case.name in ROUNDED_REFERENCE:
                feeds = {spec.name: value for spec, value in zip(model.inputs, inputs, strict=True)}
                expected = tuple(ort_outputs(model, feeds))
            assert len(got) == len(expected)
            for i, (ours, reference) in enumerate(zip(got, expected, strict=True)):
                assert_close(ours, reference, what=f"{case.name} output {i}")
    except UnsupportedModelError as exc:
        if reason is None or reason not in str(exc):
            pinned = f"pinned with {reason!r}" if reason else "not in EXPECTED_SKIPS"
            pytest.fail(f"{backend} declined {case.name} ({pinned}): {exc}")
        pytest.skip(f"expected: {exc}")
    if reason is not None:
        pytest.fail(f"{case.name} runs on {backend} now: remove its skip ({reason!r})")
