"""The one entry point: wb.transform and its aliases, field overrides, data=, chained recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from optimize_helpers import model_state, run

import workbench as wb
from workbench.errors import TransformError
from workbench.model import recipe_label
from workbench.optimize.base import (
    chain_from_dict,
    chain_to_dict,
    config_from_dict,
    config_to_dict,
    recipe_steps,
)
from workbench.optimize.prune import ChannelPrune, MagnitudePrune
from workbench.optimize.quantize import Int8Dynamic, Int8Static
from workbench.testing import toy_mlp


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.rand(16, 8, generator=generator), torch.zeros(16)) for _ in range(2)]


def test_keyword_fields_always_override_the_config() -> None:
    model = toy_mlp(hidden=32)
    by_name = wb.prune(model, "prune-channels", sparsity=0.3)
    assert by_name.recipe["config"]["sparsity"] == 0.3
    assert by_name.recipe["label"] == "prune-channels(30%)"
    by_config = wb.prune(model, ChannelPrune(sparsity=0.5, norm="l2"), sparsity=0.25)
    assert by_config.recipe["config"]["sparsity"] == 0.25
    assert by_config.recipe["config"]["norm"] == "l2"  # fields not given keep the config's
    assert wb.prune(model, sparsity=0.3).recipe["config"]["sparsity"] == 0.3
    assert wb.prune(model).recipe["config"]["sparsity"] == 0.5  # the config's default
    quantized = wb.quantize(model, Int8Dynamic(per_channel=False), per_channel=True)
    assert quantized.recipe["config"]["per_channel"] is True
    assert wb.transform(model, "prune-magnitude", sparsity=0.7).recipe["label"] == (
        "prune-magnitude(70%)"
    )


def test_structured_must_agree_with_a_given_config() -> None:
    model = toy_mlp()
    assert wb.prune(model, "prune-channels", structured=True).recipe["name"] == "prune-channels"
    with pytest.raises(TransformError, match="structured=False contradicts"):
        wb.prune(model, ChannelPrune(), structured=False)
    recipe = config_to_dict(MagnitudePrune(sparsity=0.2))
    assert wb.prune(model, recipe, structured=False).recipe["config"]["sparsity"] == 0.2


def test_data_goes_in_data_and_method_names_the_method() -> None:
    model = toy_mlp()
    q = wb.quantize(model, "int8-static", data=_batches(), method="minmax")
    assert q.recipe["config"]["method"] == "minmax" and "calibration" not in q.recipe["config"]
    positional = wb.quantize(model, Int8Static(method="percentile"), _batches())
    assert positional.recipe["label"] == "int8-static(percentile)"
    refused = r"goes in data=, not calibration=; .* is method=$"
    for scheme in ("int8-static", "int8-dynamic"):
        with pytest.raises(TransformError, match=refused):
            wb.quantize(model, scheme, calibration=_batches())
    with pytest.raises(TransformError, match="goes in data="):
        wb.transform(model, "int8-static", calibration=wb.Dataset.from_batches(_batches()))


def test_a_derived_model_records_the_chain_and_it_rebuilds_from_json() -> None:
    model = toy_mlp(hidden=32)
    before = model_state(model)
    sparse = wb.prune(model, sparsity=0.5)
    small = wb.prune(sparse, "prune-channels", sparsity=0.25)
    q = wb.quantize(small, "int8-static", _batches(), method="minmax")
    assert model_state(model) == before
    assert q.parent is small and small.parent is sparse
    assert q.recipe_name == "prune-magnitude(50%) → prune-channels(25%) → int8-static(minmax)"
    assert q.recipe["name"] == "int8-static"  # the last step stays at the top level
    stored = json.loads(json.dumps(q.recipe))
    assert [step["name"] for step in recipe_steps(stored)] == [
        "prune-magnitude", "prune-channels", "int8-static"
    ]  # fmt: skip
    assert all("chain" not in step for step in recipe_steps(stored))  # flat, not nested
    assert chain_from_dict(stored) == [
        MagnitudePrune(sparsity=0.5),
        ChannelPrune(sparsity=0.25),
        Int8Static(method="minmax"),
    ]
    rebuilt = wb.transform(model, stored, data=_batches())
    assert rebuilt.recipe == q.recipe
    x = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    np.testing.assert_array_equal(run(rebuilt, x), run(q, x))


def test_chain_to_dict_is_what_transform_records() -> None:
    model = toy_mlp()
    configs = [MagnitudePrune(sparsity=0.4), Int8Dynamic()]
    applied = wb.transform(model, configs)
    planned = chain_to_dict(configs)
    assert recipe_label(planned) == applied.recipe_name == "prune-magnitude(40%) → int8-dynamic"
    assert chain_from_dict(planned) == chain_from_dict(applied.recipe) == configs
    assert chain_to_dict(configs[1:]) == config_to_dict(Int8Dynamic())  # one step, no chain
    with pytest.raises(TransformError, match="at least one config"):
        chain_to_dict([])


def test_chains_refuse_what_would_be_ambiguous() -> None:
    recipe = chain_to_dict([MagnitudePrune(), Int8Dynamic()])
    with pytest.raises(TransformError, match=r"field overrides .* not a chain"):
        wb.transform(toy_mlp(), recipe, per_channel=True)
    with pytest.raises(TransformError, match="chain of 2 steps; read it with chain_from_dict"):
        config_from_dict(recipe)
    assert recipe_steps(None) == [] and recipe_label(None) == "baseline"
