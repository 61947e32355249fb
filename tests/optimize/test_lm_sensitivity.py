"""Per-layer sensitivity of a language model (`lm_sensitivity`) and the mixed-precision
plan under a KL budget (`lm_mixed_plan`), on the trained sample with a small sample."""

from __future__ import annotations

import json

import onnx
import pytest

import workbench as wb
from workbench.errors import InvalidArgumentError, TransformError, UnsupportedModelError
from workbench.loaders.language import language_model
from workbench.optimize.base import config_to_dict
from workbench.optimize.lm_quantize import MixedWeightOnly, WeightOnly, lm_config_from_recipe
from workbench.optimize.lm_sensitivity import LMMixedPlan, LMSensitivity, lm_layers

SMALL = {"windows": 6, "window_length": 16}
BLOCKS = ["model.layers.0", "model.layers.1", "model.layers.2", "lm_head"]


@pytest.fixture(scope="module")
def sample():
    return language_model("llama-stdlib")


@pytest.fixture(scope="module")
def blocks(sample):
    return wb.lm_sensitivity(sample, "int4", granularity="block", **SMALL)


def test_layers_are_module_paths_at_either_granularity(sample):
    projections = lm_layers(sample)
    assert len(projections) == 22 and projections[-1] == "lm_head"
    assert projections[0] == "model.layers.0.self_attn.q_proj"
    assert lm_layers(sample, "block") == BLOCKS


def test_each_block_quantized_alone_one_row_each_the_most_kl_first(sample, blocks):
    df = blocks.df
    assert sorted(df["layer"]) == sorted(BLOCKS) and df["error"].isna().all()
    assert list(df["kl"]) == sorted(df["kl"], reverse=True)
    assert set(df["op_type"]) == {"LlamaDecoderLayer", "Linear"}
    assert df["params"].sum() == sum(
        m.weight.numel() for m in sample.modules() if type(m).__name__ == "Linear"
    )
    assert (df["kl"] > 0).all() and (df["kl_ci_low"] <= df["kl"]).all()
    assert (df["kl"] <= df["kl_ci_high"]).all() and (df["positions"] == 6 * 15).all()
    # one layer alone costs less than all of them at once
    assert df["kl"].max() < blocks.full.kl_mean


def test_a_row_is_that_layer_alone_scored_like_lm_accuracy(sample, blocks):
    others = tuple(p for p in lm_layers(sample) if p != "lm_head")
    alone = wb.lm_quantize(sample, WeightOnly(bits=4, exclude=others))
    row = blocks.df.set_index("layer").loc["lm_head"]
    assert wb.lm_accuracy(alone, **SMALL).kl_mean == pytest.approx(row["kl"], rel=1e-9)


def test_sensitivity_round_trips_through_json(blocks, tmp_path):
    back = LMSensitivity.from_json(blocks.to_json(tmp_path / "s.json"))
    assert back == blocks and back.reference is None
    assert back.df.equals(blocks.df)
    assert "lm_head" in str(back) and "KL" in back._repr_html_()


def test_accuracy_is_refused_for_a_random_weight_model():
    with pytest.raises(UnsupportedModelError, match="random-weight model"):
        wb.lm_sensitivity(language_model("llama-tiny"), "int4", **SMALL)


def test_bad_input_is_one_line(sample, blocks):
    with pytest.raises(InvalidArgumentError, match="bf16 has no per-layer control"):
        wb.lm_sensitivity(sample, "bf16", **SMALL)
    with pytest.raises(InvalidArgumentError, match=r"no Linear under 'model\.nope'"):
        wb.lm_sensitivity(sample, layers=["model.nope"], **SMALL)
    with pytest.raises(InvalidArgumentError, match="granularity must be"):
        lm_layers(sample, "head")
    with pytest.raises(wb.errors.ParameterError, match="kl_budget must be greater than 0"):
        wb.lm_mixed_plan(blocks, kl_budget=0)
    back = LMSensitivity.from_json(blocks.to_json())
    with pytest.raises(InvalidArgumentError, match="give model="):
        wb.lm_mixed_plan(back, kl_budget=0.01)


def test_mixed_config_keeps_int8_and_fp32_layers_and_round_trips(sample):
    config = MixedWeightOnly(int8=("model.layers.0",), exclude=("lm_head",))
    assert config.label() == "int4-mixed(block 32, acc 4, 1 int8, 1 fp32)"
    assert lm_config_from_recipe(json.loads(json.dumps(config_to_dict(config)))) == config
    q = wb.lm_quantize(sample, config)
    nodes = onnx.load(str(q.onnx_decoder)).graph.node
    bits = [
        next(a.i for a in n.attribute if a.name == "bits")
        for n in nodes
        if n.op_type == "MatMulNBits"
    ]
    assert sorted(bits) == [4] * 14 + [8] * 7  # two blocks int4, one int8, lm_head fp32
    with pytest.raises(InvalidArgumentError, match="in both int8 and exclude"):
        wb.lm_quantize(sample, MixedWeightOnly(int8=("lm_head",), exclude=("lm_head",)))


def test_plan_keeps_the_fewest_layers_that_measure_within_the_budget(sample, blocks):
    budget = blocks.full.kl_mean / 2
    plan = wb.lm_mixed_plan(blocks, kl_budget=budget)
    assert plan.accuracy.kl_mean <= budget and plan.keep == "int8"
    kept = len(plan.kept)
    assert 1 <= kept < 4 and plan.kept == plan.order[:kept] == plan.config.int8
    # every plan measured with fewer layers kept missed the budget
    assert all(t.kl > budget for t in plan.trials if t.kept < kept)
    # the variant is the plan, measured like any other on the same windows
    assert plan.variant.recipe == plan.recipe
    assert wb.lm_accuracy(plan.variant, **SMALL).kl_mean == pytest.approx(plan.accuracy.kl_mean)
    back = LMMixedPlan.from_json(plan.to_json())
    assert back == plan and back.config == plan.config


def test_a_budget_already_met_is_the_plain_config(blocks):
    plan = wb.lm_mixed_plan(blocks, kl_budget=1.0)
    assert plan.kept == () and plan.recipe["label"] == "int4-mixed(block 32, acc 4)"
    assert plan.accuracy == blocks.full and plan.variant is not None


def test_a_budget_no_plan_meets_says_the_closest(blocks):
    with pytest.raises(
        TransformError,
        match=r"no plan meets kl_budget=1e-12: the closest keeps 4 of 4 layers in int8 and "
        r"measures KL .* nats \[95% CI .*\]; raise the budget or keep='fp32'",
    ):
        wb.lm_mixed_plan(blocks, kl_budget=1e-12)


def test_cli_writes_the_sensitivity_and_the_plan(tmp_path, capsys):
    from workbench.cli import main

    out = tmp_path / "s.json"
    args = ["lm-sensitivity", "llama-stdlib", "--layer", "lm_head", "--windows", "2"]
    assert main([*args, "--window-length", "8", "--budget", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [c["layer"] for c in data["sensitivity"]["layers"]] == ["lm_head"]
    assert LMMixedPlan.from_dict(data["plan"]).kl_budget == 1.0
    assert "plan: int4-mixed(block 32, acc 4)" in capsys.readouterr().out
    assert main(["lm-sensitivity", "llama-tiny"]) == 2
    assert "random-weight model" in capsys.readouterr().err
