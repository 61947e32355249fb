"""FLOPs and bytes of a prefill and a decode step, per module, checked by hand against the
Llama formulas (2 FLOPs per multiply-add), and placed on the roofline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.profiling.generate_costs import phase_costs, with_costs
from workbench.testing import tiny_llama

# tiny_llama: hidden 32, MLP 64, 4 heads of 8 over 2 key/value heads, vocabulary 100
D, MLP, H, KV, HD, V = 32, 64, 4, 2, 8, 100


@pytest.fixture(scope="module")
def config():
    return tiny_llama().config


def test_prefill_costs_follow_the_llama_formulas(config) -> None:
    b, p = 2, 8
    costs, notes = phase_costs(config, b, p, 0)
    block = "model.layers.1"
    assert costs.loc[f"{block}.self_attn.q_proj", "flops"] == 2 * b * p * D * H * HD
    assert costs.loc[f"{block}.self_attn.k_proj", "flops"] == 2 * b * p * D * KV * HD
    assert costs.loc[f"{block}.mlp.down_proj", "flops"] == 2 * b * p * MLP * D
    # attention's own code: Q K^T and the weighted sum of V over the whole context
    assert costs.loc[f"{block}.self_attn", "flops"] == 2 * 2 * b * H * p * p * HD
    queries_and_output, keys_and_values = 2 * b * H * p * HD, 2 * b * KV * p * HD
    assert costs.loc[f"{block}.self_attn", "bytes"] == 4 * (queries_and_output + keys_and_values)
    assert costs.loc[f"{block}.self_attn.cache_update", "bytes"] == 4 * 2 * b * KV * p * HD
    # the decoders call lm_head on the last position only
    assert costs.loc["lm_head", "flops"] == 2 * b * 1 * D * V
    q_proj = costs.loc[f"{block}.self_attn.q_proj"]
    assert q_proj["params_bytes"] == 4 * D * H * HD
    assert q_proj["bytes"] == 4 * (b * p * D + D * H * HD + b * p * H * HD)
    assert costs.loc[f"{block}.input_layernorm", "flops"] == 5 * b * p * D  # elementwise rule
    # containers' own code (residual adds) is not counted: NaN bytes keep it off the roof
    assert costs.loc[block, "flops"] == 0 and np.isnan(costs.loc[block, "bytes"])
    embed = costs.loc["model.embed_tokens"]
    assert embed["bytes"] == 8 * b * p + 4 * b * p * D * 2  # ids, rows read, rows written
    assert notes and "FlopCounterMode" in notes[0]
    every, _ = phase_costs(config, b, p, 0, every_logit=True)  # an optimum graph's logits
    assert every.loc["lm_head", "flops"] == 2 * b * p * D * V


def test_a_decode_step_reads_the_whole_cache(config) -> None:
    b, past = 1, 11
    costs, _ = phase_costs(config, b, 1, past)
    attention = costs.loc["model.layers.0.self_attn"]
    assert attention["flops"] == 2 * 2 * b * H * 1 * (past + 1) * HD
    assert attention["bytes"] == 4 * (2 * b * H * HD + 2 * b * KV * (past + 1) * HD)
    assert costs.loc["model.layers.0.mlp.up_proj", "flops"] == 2 * b * D * MLP


def test_with_costs_places_the_phase_on_the_roofline(config) -> None:
    from workbench.profiling.ceilings import Ceilings

    costs, _ = phase_costs(config, 1, 8, 0)
    table = pd.DataFrame(
        {
            "layer": ["model.layers.0.self_attn.q_proj", "model.layers.0", "(unattributed)"],
            "latency_ms": [0.01, 0.02, 0.5],
        }
    )
    ceilings = Ceilings("cpu", peak_flops_per_s=1e11, bandwidth_bytes_per_s=1e10)
    out = with_costs(table, costs, ceilings).set_index("layer")
    q = out.loc["model.layers.0.self_attn.q_proj"]
    assert q["flops"] == 2 * 8 * D * H * HD
    assert q["intensity"] == pytest.approx(q["flops"] / q["bytes"])
    assert q["achieved_flops_per_s"] == pytest.approx(q["flops"] / 1e-5)
    roof = min(1e11, q["intensity"] * 1e10)
    assert q["roof_fraction"] == pytest.approx(q["achieved_flops_per_s"] / roof)
    assert np.isnan(out.loc["(unattributed)", "flops"])
    assert "flops" not in table  # the given table is not changed


def test_generate_profile_puts_costs_in_both_phase_tables(monkeypatch) -> None:
    import workbench as wb
    from workbench import viz
    from workbench.profiling.ceilings import Ceilings
    from workbench.profiling.generate import GenerationProfile

    ceilings = Ceilings("cpu", peak_flops_per_s=1e11, bandwidth_bytes_per_s=1e10)
    monkeypatch.setattr("workbench.profiling.ceilings.machine_ceilings", lambda device: ceilings)
    g = wb.generate_profile(
        tiny_llama(), backend="torch", prompt_length=6, output_length=4, layers=True, roofline=True
    )
    prefill = g.prefill_layers.set_index("layer")
    decode = g.decode_layers.set_index("layer")
    assert prefill.loc["model.layers.0.mlp.up_proj", "flops"] == 2 * 6 * D * MLP
    assert decode.loc["model.layers.0.mlp.up_proj", "flops"] == 2 * 1 * D * MLP
    # the middle decode step of 3 attends to prompt + 1 + 1 tokens
    assert decode.loc["model.layers.0.self_attn", "flops"] == 2 * 2 * H * 1 * (6 + 2) * HD
    placed = prefill["roof_fraction"].notna()
    assert placed.sum() > 10 and (prefill.loc[placed, "achieved_flops_per_s"] > 0).all()
    assert g.machine_ceilings["peak_flops_per_s"] == 1e11
    back = GenerationProfile.from_json(g.to_json())
    assert back.machine_ceilings == g.machine_ceilings
    figure = viz.phase_roofline(back, "prefill")
    assert any(t.name == "roof" for t in figure.data) and len(figure.data) > 2


def test_costs_that_cannot_be_counted_leave_the_times_and_say_why() -> None:
    from types import SimpleNamespace

    from transformers import PretrainedConfig

    from workbench.profiling.generate_costs import costed_phases

    table = pd.DataFrame({"layer": ["lm_head"], "latency_ms": [1.0]})
    shape = (1, 4, 0, 3)
    odd = SimpleNamespace(config=PretrainedConfig())  # no causal LM class for it
    (prefill, decode), notes = costed_phases(odd, (table, None), shape)
    assert prefill is table and decode is None
    assert notes[0].startswith("phase costs unavailable: rebuilding the architecture failed")
    (prefill, _), notes = costed_phases(SimpleNamespace(), (table, None), shape)
    assert prefill is table and "no transformers config" in notes[0]
    variant = SimpleNamespace(recipe={"label": "int4"}, config=tiny_llama().config)
    (prefill, _), notes = costed_phases(variant, (table, None), shape)
    assert prefill is table and "quantized variant" in notes[0]
