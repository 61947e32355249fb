"""`lm_sweep`: the generative trade-off measured into the store, resumable like `sweep`."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import workbench.evaluation.lm_sweep as lm_sweep_module
from workbench.errors import InvalidArgumentError
from workbench.evaluation.lm_sweep import lm_sweep
from workbench.evaluation.sweep import load_sweep
from workbench.loaders.language import language_model
from workbench.optimize.lm_quantize import LM_METHODS
from workbench.store import Store

pytest.importorskip("transformers")

QUICK = {"prompt_length": 4, "output_length": 3, "runs": 1, "roofline": False, "layers": False}


def test_random_weights_sweep_stores_speed_only_rows_and_a_rerun_measures_nothing(
    tmp_path, monkeypatch
):
    store = Store(tmp_path / "runs.sqlite")
    tiny = language_model("llama-tiny")
    variants = ["baseline", "bf16", "int8-dynamic"]
    t = lm_sweep(tiny, variants, ["torch"], name="llama-tiny", store=store, **QUICK)
    rows = t.df.set_index(["variant", "backend"])
    # int8-dynamic runs on onnxruntime only: a failed row says where, not a silent gap
    assert list(rows.index) == [
        ("baseline", "torch"),
        ("bf16", "torch"),
        ("int8-dynamic", "onnxruntime"),
    ]
    error = rows.loc[("int8-dynamic", "onnxruntime"), "error"]
    assert "runs on onnxruntime; add it to the sweep's backends" in error
    bf16 = rows.loc[("bf16", "torch")]
    why_not = LM_METHODS["bf16"].unavailable()
    if why_not is not None:  # this CPU would emulate bf16: the row says so, no number
        assert why_not in bf16["error"] and math.isnan(bf16["throughput_per_s"])
    else:
        assert bf16["throughput_per_s"] > 0 and bf16["ttft_ms"] > 0
        assert bf16["memory_bytes"] == bf16["weights_bytes"] + bf16["kv_cache_bytes"]
        assert bf16["weights_bytes"] < rows.loc[("baseline", "torch"), "weights_bytes"]
        # accuracy is never shown for random weights, and such a row is never on the front
        assert bf16["accuracy_unavailable"] == "random weights"
        assert bf16["metric_value"] != bf16["metric_value"] and not bf16["pareto"]
        assert "no KL for bf16: random weights" in t.notes
        # why it is not faster, against the torch baseline of the same sweep
        assert bf16["why"]["backend"] == "torch" and bf16["why"]["decode_speedup"] > 0
        assert bf16["why"]["bytes_ratio"] > 1.5 and isinstance(bf16["why_text"], str)
    assert rows.loc[("baseline", "torch"), "generation"]["kind"] == "generation"

    def measured_again(*args, **kwargs):
        raise AssertionError("a stored point was measured again")

    monkeypatch.setattr(lm_sweep_module, "_profile", measured_again)
    again = lm_sweep(tiny, variants, ["torch"], name="llama-tiny", store=store, **QUICK)
    assert again.sweep_id == t.sweep_id and any("3 of 3 points" in n for n in again.notes)
    pd.testing.assert_series_equal(again.df["throughput_per_s"], t.df["throughput_per_s"])
    stored = load_sweep(t.sweep_id, store)
    assert stored.metric == "kl" and len(stored) == 3


def test_a_changed_setting_starts_a_new_sweep_and_says_why(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    tiny = language_model("llama-tiny")
    first = lm_sweep(tiny, ["baseline"], ["torch"], name="llama-tiny", store=store, **QUICK)
    changed = {**QUICK, "output_length": 4}
    second = lm_sweep(tiny, ["baseline"], ["torch"], name="llama-tiny", store=store, **changed)
    assert second.sweep_id != first.sweep_id
    assert any("output_length" in n and "not resumed" in n for n in second.notes)


def test_a_trained_model_gets_its_kl_and_the_pareto_front(tmp_path):
    sample = language_model("llama-stdlib")
    t = lm_sweep(
        sample,
        ["baseline", "int8-dynamic"],
        ["onnxruntime"],
        name="llama-stdlib",
        store=tmp_path / "runs.sqlite",
        windows=4,
        **QUICK,
    )
    rows = t.df.set_index("variant")
    assert rows.loc["baseline", "metric_value"] == 0.0
    kl = rows.loc["int8-dynamic", "metric_value"]
    assert 0 < kl < 0.05 and rows.loc["int8-dynamic", "kl_ci_low"] <= kl
    assert rows.loc["int8-dynamic", "accuracy_unavailable"] is None
    assert rows["pareto"].any() and t.higher_is_better is False


def test_an_unknown_variant_or_runtime_is_refused_before_measuring(tmp_path):
    tiny = language_model("llama-tiny")
    with pytest.raises(InvalidArgumentError, match="no language-model variant named 'int3'"):
        lm_sweep(tiny, ["int3"], ["torch"], store=tmp_path / "s.sqlite", **QUICK)
    with pytest.raises(Exception, match="nope"):
        lm_sweep(tiny, ["baseline"], ["nope"], store=tmp_path / "s.sqlite", **QUICK)
