"""Why a half-precision model is slow on a CPU: the backend words how it computes."""

from __future__ import annotations

import pytest

from workbench.backends import base
from workbench.profiling.reasons import NATIVE_HALF_FLAGS, half_precision_reason
from workbench.testing import FakeBackend


class HalfWordedBackend(FakeBackend):
    name = "half-worded"

    def half_precision_fallback(self) -> str:
        return "widens every half tensor to float32 in its own converter"


@pytest.fixture
def worded_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(base._FACTORIES, HalfWordedBackend.name, HalfWordedBackend)
    yield HalfWordedBackend.name
    base._INSTANCES.pop(HalfWordedBackend.name, None)


def test_each_built_in_backend_gets_its_own_words() -> None:
    ort = half_precision_reason("float16", "onnxruntime", "cpu", [])
    torch = half_precision_reason("float16", "torch", "cpu", [])
    assert ort is not None and "onnxruntime inserts Cast nodes to float32 and back" in ort
    assert torch is not None and "torch falls back to slow reference kernels" in torch
    assert "float16 is slower than float32 here" in torch


def test_a_plugin_backend_says_how_it_computes_half_precision(worded_backend: str) -> None:
    reason = half_precision_reason("bfloat16", worded_backend, "cpu", ["avx2"])
    assert reason is not None
    assert f"{worded_backend} widens every half tensor to float32 in its own converter" in reason


def test_a_backend_unknown_here_gets_the_generic_words() -> None:
    reason = half_precision_reason("float16", "no-such-runtime", "cpu", [])
    assert reason is not None and base.HALF_PRECISION_FALLBACK in reason


def test_no_reason_where_half_precision_is_native_or_not_on_a_cpu() -> None:
    native = list(NATIVE_HALF_FLAGS["float16"][:1])
    assert half_precision_reason("float16", "onnxruntime", "cpu", native) is None
    assert half_precision_reason("float16", "onnxruntime", "cuda:0", []) is None
    assert half_precision_reason("float32", "onnxruntime", "cpu", []) is None
