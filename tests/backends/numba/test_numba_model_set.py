"""The Numba path on its model set (`model_set`): which models it runs, which ops it
refuses (pinned, so coverage is visible and a regression cannot hide), and outputs equal
to ONNX Runtime's within the ``model`` tolerances of `workbench.tolerances`."""

from __future__ import annotations

import functools

import pytest
from model_set import Entry, entries, refused_ops

import workbench as wb
from workbench.errors import ModelLoadError
from workbench.testing.tolerances import assert_close

#: The ops numba refuses, per model of the set (docs/numba.md's coverage table); every
#: other model is refused nothing. A model that gains or loses a refusal fails here.
EXPECTED_REFUSALS: dict[str, list[str]] = {}

ENTRIES = {e.name: e for e in entries()}
#: BERT's export takes 7-35 s on 2 cores: built once, for both tests
SLOW = pytest.mark.slow
LIGHT = [
    pytest.param(e, id=e.name, marks=[SLOW] if e.family == "transformers" else [])
    for e in ENTRIES.values()
    if e.family != "torchvision"
]
RUNNABLE = [p for p in LIGHT if not p.values[0].heavy and p.id not in EXPECTED_REFUSALS]


@functools.cache
def _build(name: str) -> wb.Model:
    entry = ENTRIES[name]
    if entry.family == "transformers":
        pytest.importorskip("transformers")
    try:
        return entry.make()
    except (ModelLoadError, ImportError) as exc:  # torchvision outside its overlay,
        pytest.skip(str(exc))  # transformers inside it (its lazy import fails there)


def _matches_onnxruntime(model: wb.Model, batch_size: int, *, spec: bool = False) -> None:
    """numba's outputs equal ONNX Runtime's within the ``model`` tolerances; ``spec``:
    ORT with its graph optimisations off, each op run as the ONNX spec words it."""
    x = model.example_inputs(batch_size)
    options = {"optimization": "disabled"} if spec else {}
    expected = wb.backend("onnxruntime").compile(model, "cpu", **options).run(x)
    got = wb.backend("numba").compile(model, "cpu").run(x)
    assert len(got) == len(expected)
    for i, (ours, reference) in enumerate(zip(got, expected, strict=True)):
        assert ours.dtype == reference.dtype and ours.shape == reference.shape
        assert_close(ours, reference, scope="model", what=f"{model.name} output {i}")


def test_the_set_has_every_family() -> None:
    families = {e.family for e in ENTRIES.values()}
    assert families == {"sample", "int8", "zoo", "transformers", "torchvision"}
    assert set(EXPECTED_REFUSALS) <= set(ENTRIES) and "trees-anomaly" in ENTRIES


@pytest.mark.parametrize("entry", LIGHT)
def test_refused_ops_are_the_pinned_ones(entry: Entry) -> None:
    model = _build(entry.name)
    assert refused_ops(model) == EXPECTED_REFUSALS.get(entry.name, [])
    assert wb.backend("numba").supports(model).ok == (entry.name not in EXPECTED_REFUSALS)


@pytest.mark.parametrize("entry", RUNNABLE)
def test_runs_and_matches_onnxruntime(entry: Entry) -> None:
    # INT8 against the spec's QDQ (dequantize, the op in float, quantize): ORT's fused
    # u8s8 kernels on a CPU with AVX2 but no VNNI sum pairs of products in saturating
    # int16 (vpmaddubsw): digits-cnn int8-static's logits then differ by up to 1.1 from
    # the spec's, which numba's integer kernels give exactly (0.0 apart)
    _matches_onnxruntime(_build(entry.name), batch_size=2, spec=entry.family == "int8")


@pytest.mark.torchvision
@pytest.mark.slow  # each ONNX export takes a minute or more on 2 busy cores
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "resnet18"])
def test_torchvision_models_run_and_match_onnxruntime(name: str) -> None:
    model = _build(name)
    assert refused_ops(model) == []
    _matches_onnxruntime(model, batch_size=1)
