"""torch-compile generation: compiled before timing, the same tokens as eager.

Inductor's code generation takes minutes on 2 busy cores, so these tests compile with
Dynamo's ``"eager"`` backend: the same capture, guards and recompiles, no C++ build.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.base import register
from workbench.backends.torch.compiled import CompiledDecoder, RecompileError
from workbench.profiling.generate import generate_profile
from workbench.testing import FakeBackend, tiny_llama

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

PROMPT, OUTPUT = 6, 3


@pytest.fixture(scope="module")
def llama() -> object:
    return tiny_llama(vocab_size=100, context=16)


class _Traced(FakeBackend):
    """torch-compile's decoder with Dynamo's eager backend (no Inductor build)."""

    name = "fake-traced"

    def decoder(
        self, model: object, device: str = "cpu", *, threads: int | None = None
    ) -> CompiledDecoder:
        return CompiledDecoder(model, threads, compiler="eager")


def test_compiled_generation_is_prepared_untimed_and_matches_eager(llama: object) -> None:
    register("fake-traced")(_Traced)
    weights = {k: v.clone() for k, v in llama.state_dict().items()}  # type: ignore[attr-defined]
    g = generate_profile(
        llama,
        backend="fake-traced",
        prompt_length=PROMPT,
        output_length=OUTPUT,
        runs=2,
        warmup=0,
        layers=True,
    )
    # every graph (prefill, first step, the cache length symbolic) compiled in prepare,
    # so the timed runs with no warm-up compiled nothing: else RecompileError
    assert g.compile_s is not None and g.compile_s > 0
    assert "compile" in dict(g.facts())
    assert g.reference_backend == "torch" and g.diverges_at is None
    # the per-layer tables are eager-equivalent, and say so
    assert g.prefill_layers is not None and any("eager-equivalent" in n for n in g.notes)
    assert all(torch.equal(v, llama.state_dict()[k]) for k, v in weights.items())  # type: ignore[attr-defined]


def test_a_compile_after_prepare_is_refused(llama: object) -> None:
    decoder = CompiledDecoder(llama, threads=1, compiler="eager")
    ids = np.arange(PROMPT - 1, dtype=np.int64)[None]  # a prompt length not compiled yet
    decoder.prepare(ids, 2, None)
    # Dynamo shares graphs between copies of one model class: at least this prefill's
    assert decoder.compiles >= 1 and decoder.compile_s > 0
    with decoder.settings():
        decoder.step(decoder.prefill(ids))  # the prepared shapes: no compile
        with pytest.raises(RecompileError, match="after prepare") as caught:
            decoder.prefill(np.repeat(ids, 3, axis=0))  # batch 3: a new graph
    assert "\n" not in str(caught.value)
