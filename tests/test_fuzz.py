"""Property-based fuzzing of the loaders and of `Session.run`'s input checking (bounded).

Mutated bytes of real sample files, random archives and random inputs must end in a
result or a `WorkbenchError`, never another exception; `benchmarks/fuzz_long.py` runs the
same targets for longer. Crashes found here are kept as explicit regression cases below.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.testing import fuzz

#: multiplies every example count (benchmarks/fuzz_long.py raises it; the test command keeps 1)
SCALE = int(os.environ.get("WORKBENCH_FUZZ_SCALE", "1"))


def bounded(examples: int) -> settings:
    """``examples`` cases (times SCALE), no example database, no per-case deadline.

    No database: nothing is written into the checkout. No deadline: the first torch load
    is slow. The counts keep this file to about a minute in the test command.
    """
    return settings(
        max_examples=examples * SCALE,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


edits = st.lists(
    st.tuples(st.integers(0, 1 << 20), st.integers(0, 64), st.binary(max_size=16)),
    min_size=1,
    max_size=6,
)
entries = st.lists(
    st.tuples(
        st.sampled_from(fuzz.PT2_NAMES) | st.text("abcdefghij/._", min_size=1, max_size=20),
        st.sampled_from([b"pt2", b"0", b"{}", b'{"config": {}}', b"\x80\x04N."]) | st.binary(),
    ),
    max_size=8,
)


@pytest.fixture(autouse=True)
def _quiet_torch() -> None:
    logging.getLogger("torch").setLevel(logging.CRITICAL)


@pytest.fixture(autouse=True, scope="module")
def _report_cases() -> Iterator[None]:
    """Write the cases run per target where benchmarks/fuzz_long.py asks for them."""
    yield
    report = os.environ.get("WORKBENCH_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(fuzz.CASES)))


@bounded(150)
@given(edits=edits)
def test_mutated_onnx_files_load_or_are_refused(tmp_path: Path, edits: Any) -> None:
    model = fuzz.load_bytes(fuzz.mutate(fuzz.sample_onnx(), edits), ".onnx", tmp_path)
    assert model is None or model.framework == "onnx"


@bounded(40)
@given(edits=edits)
def test_mutated_pt2_archives_load_or_are_refused(tmp_path: Path, edits: Any) -> None:
    model = fuzz.load_bytes(fuzz.mutate(fuzz.sample_pt2(), edits), ".pt2", tmp_path)
    assert model is None or model.framework == "torch"


@bounded(80)
@given(entries=entries, suffix=st.sampled_from([".pt2", ".pt", ".ts", ".pth"]))
def test_random_archives_are_refused(tmp_path: Path, entries: Any, suffix: str) -> None:
    marker = tmp_path / "marker"
    assert fuzz.load_bytes(fuzz.archive(entries), suffix, tmp_path) is None
    assert not marker.exists()


# ---- structure-aware .pt2 archives ----------------------------------------------------

# Shape expressions from a small grammar: symbols, numbers small and huge, arithmetic and
# powers, the calls torch writes (sympy's srepr) and a few it never does.
ATOMS = "s0 s31 u0 2 64 10 10**10 (1/2) oo -1 Integer(2) true Float('0.5',precision=53)"
CALLS = "Max Pow Mul Add PowByNatural LShift FloorDiv Equality Integer S eval Symbol"
atoms = st.sampled_from([*ATOMS.split(), "Symbol('s0', positive=True, integer=True)"])
expressions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "*", "**", "//", "%", "<=", "&"]), inner).map(
            lambda t: f"({t[0]}){t[1]}({t[2]})"
        ),
        st.tuples(
            st.sampled_from(CALLS.split()),
            st.lists(inner, min_size=1, max_size=3),
        ).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    ),
    max_leaves=12,
)
pt2_edits = st.lists(
    st.one_of(
        st.tuples(
            st.just("item"),
            st.integers(0, 7),
            st.one_of(
                st.tuples(st.just("path_name"), st.sampled_from(fuzz.PT2_PATHS)),
                st.tuples(st.just("use_pickle"), st.booleans()),
                st.tuples(
                    st.sampled_from(["sizes", "strides"]),
                    st.lists(st.builds(dict, as_int=st.sampled_from([0, 1, 4, 2**40])), max_size=3),
                ),
                st.tuples(st.just("dtype"), st.integers(0, 30)),
            ),
        ),
        st.tuples(
            st.just("add_item"),
            st.integers(0, 7),
            st.tuples(st.sampled_from(fuzz.PT2_PATHS), st.sampled_from(["raw", "pickled", "both"])),
        ),
        st.tuples(
            st.just("payload"),
            st.integers(0, 7),
            st.tuples(
                st.sampled_from(fuzz.PT2_PATHS),
                st.sampled_from([fuzz.MARKER_PICKLE, b"", b"\x80\x04N."]) | st.binary(max_size=64),
            ),
        ),
        st.tuples(st.just("expr"), st.integers(0, 7), expressions),
        st.tuples(
            st.just("target"),
            st.integers(0, 7),
            st.sampled_from(["torch.ops.aten.add.Tensor", "torch.os.system", "builtins.eval"]),
        ),
        st.tuples(
            st.just("range"), st.integers(0, 7), st.sampled_from(["s0", "u7", "u99999999999"])
        ),
        st.tuples(
            st.just("rename"),
            st.integers(0, 7),
            st.tuples(
                st.sampled_from(["0.bias", "0.weight", "input", "linear", "relu"]),
                st.sampled_from(['0.training"); {open}; ("', "x={open}", "a b", "ok_2", "0.x.y"]),
            ),
        ),
        st.tuples(st.sampled_from(["deflate", "drop", "repeat"]), st.integers(0, 15), st.none()),
        st.tuples(st.just("inflate"), st.integers(0, 15), st.sampled_from([2**20 + 1, 2**22])),
    ),
    min_size=1,
    max_size=4,
)


@settings(bounded(30), derandomize=SCALE == 1)  # the test command runs the same slice
@given(edits=pt2_edits, dynamic=st.booleans())
def test_structured_pt2_archives_load_or_are_refused(
    tmp_path: Path, edits: Any, dynamic: bool
) -> None:
    marker = tmp_path / "marker"
    data = fuzz.mutate_pt2(fuzz.sample_pt2(dynamic), edits, marker)
    model = fuzz.load_bytes(data, ".pt2", tmp_path)
    assert model is None or model.framework == "torch"
    assert not marker.exists()


@pytest.fixture(scope="module")
def session() -> Any:
    return wb.backend("onnxruntime").compile(wb.samples.load("digits-cnn"))


dtypes = st.sampled_from(["float32", "float64", "float16", "int64", "int8", "bool", "complex64"])
shapes = st.lists(st.integers(0, 9), max_size=5)


@bounded(150)
@given(shape=shapes, dtype=dtypes, name=st.sampled_from(["x", "y", ""]), wrap=st.integers(0, 2))
def test_session_run_checks_names_shapes_and_dtypes(
    session: Any, shape: list[int], dtype: str, name: str, wrap: int
) -> None:
    array = np.zeros(shape, dtype=dtype)
    inputs = [{name: array}, [array], array][wrap]
    outputs = fuzz.run_inputs(session, inputs)
    if outputs is not None:  # accepted only when it really is a batch of digits images
        assert name in ("x", "") and len(shape) == 4 and shape[1:] == [1, 8, 8]
        assert outputs[0].shape == (shape[0], 10)


# ---- regression cases: crashes the fuzzer found, kept ------------------------------------

#: mutations of `fuzz.sample_pt2` that once escaped as a bare exception from zipfile
FOUND = {
    # a file name in the zip directory that is not UTF-8 though flagged so: UnicodeDecodeError
    "non-utf8-entry-name": [
        (524614, 1, b"@\x9er \xbb\xdf|A{LH"),
        (174164, 35, b"o\x8a\xa2\xcchkB\x1bS\xf8"),
        (125624, 54, b"BU\xcb:K\xed\x99\x0f\x12\x9a\xb3"),
        (532473, 21, b"\xfc\x1d4q\xfe\xb9w\xa2\xdc6\x9e"),
        (597538, 61, b"Gx\x15\x18\x8d"),
        (966088, 19, b"\xbc\xa4\x8f(8\xc4\xff\x84\xec"),
    ],
    # an end-of-directory record that `is_zipfile` accepts but `ZipFile` rejects: BadZipFile
    "broken-directory": [
        (1039279, 5, b"6\x96\xd3\xed7\xda\xd2\r\x86\x1f\x95\x84"),
        (682222, 3, b"\x1co\xa11"),
        (343731, 38, b"I(\xfd \xda\xbbL\xeb\xcf\xa7\x90\xff'"),
        (283343, 2, b"i\xba"),
        (1006496, 18, b"C\xd9\x17&\xb6"),
    ],
}


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
@pytest.mark.parametrize("case", sorted(FOUND))
def test_fuzz_regressions(tmp_path: Path, case: str, suffix: str) -> None:
    data = fuzz.mutate(fuzz.sample_pt2(), FOUND[case])
    assert fuzz.load_bytes(data, suffix, tmp_path) is None


def test_a_zip_needing_an_unknown_version_is_refused(tmp_path: Path) -> None:
    # found by atheris: zipfile raises NotImplementedError("zip file version 25.5")
    data = bytearray(fuzz.archive([("archive_format", b"pt2")]))
    directory = data.find(b"PK\x01\x02")
    data[directory + 6 : directory + 8] = b"\xff\x00"  # "version needed to extract"
    for suffix in (".pt2", ".pt"):
        assert fuzz.load_bytes(bytes(data), suffix, tmp_path) is None


def test_an_entry_torch_cannot_read_is_refused(tmp_path: Path) -> None:
    # found by atheris: a damaged local header that only torch's own zip reader reads
    data = bytearray(fuzz.sample_pt2())
    name = data.find(b"/models/model.json")  # first found in the entry's local header
    header = data.rfind(b"PK\x03\x04", 0, name)
    data[header + 3] = 0x05  # not a local header signature: torch's reader fails on it
    assert fuzz.load_bytes(bytes(data), ".pt2", tmp_path) is None
