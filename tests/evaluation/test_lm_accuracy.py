"""`lm_accuracy`: a variant's next-token distributions against its fp32 reference's."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import InputError, UnsupportedModelError
from workbench.evaluation.lm_accuracy import LMAccuracy, lm_accuracy
from workbench.loaders.language import language_model
from workbench.optimize.lm_quantize import lm_quantize

SMALL = {"windows": 8, "window_length": 24}


@pytest.fixture(scope="module")
def sample():
    return language_model("llama-stdlib")


def test_fp32_decoder_scored_token_by_token_matches_the_reference(sample):
    # the ORT decoder is teacher-forced one token per call: a position off by one
    # would show here as a large KL
    a = lm_accuracy(lm_quantize(sample, "fp32"), **SMALL)
    assert a.runtime == "onnxruntime" and a.positions == 8 * 23
    assert a.kl_mean < 1e-9 and a.top1_agreement == 1.0
    assert abs(a.delta_perplexity) < 1e-4
    # the trained sample on its held-out text is far better than uniform (256)
    assert a.reference_perplexity < 20


def test_int4_costs_more_than_int8_and_the_interval_holds_the_mean(sample):
    int4 = lm_accuracy(lm_quantize(sample, "int4"), **SMALL)
    int8 = lm_accuracy(lm_quantize(sample, "int8"), **SMALL)
    assert int4.kl_mean > int8.kl_mean > 0
    low, high = int4.kl_ci95
    assert low < int4.kl_mean < high and int4.kl_max >= int4.kl_mean
    assert 0.5 < int4.top1_agreement <= int8.top1_agreement <= 1.0
    assert int4.kl_mean < 0.05  # int4 with block 32 barely moves a trained model


def test_result_round_trips_through_json(sample, tmp_path):
    a = lm_accuracy(lm_quantize(sample, "int8-dynamic"), **SMALL)
    assert LMAccuracy.from_json(a.to_json(tmp_path / "a.json")) == a
    assert "KL" in str(a) and "184 positions" in str(a)


def test_given_token_ids_are_scored(sample):
    ids = np.arange(200) % 97 + 32
    a = lm_accuracy(sample, sample, text=ids, **SMALL)
    assert a.text == "the given token ids" and a.kl_mean == 0.0


def test_accuracy_is_refused_for_a_random_weight_model():
    tiny = language_model("llama-tiny")
    with pytest.raises(UnsupportedModelError, match="accuracy asked for a random-weight model"):
        lm_accuracy(tiny, tiny, **SMALL)


def test_bad_input_is_one_line(sample):
    with pytest.raises(InputError, match="no fp32 reference"):
        lm_accuracy(sample, **SMALL)
    with pytest.raises(InputError, match="fewer than one window"):
        lm_accuracy(sample, sample, text=np.arange(10), **SMALL)
    with pytest.raises(InputError, match="exceeds"):
        lm_accuracy(sample, sample, windows=1, window_length=500)


def test_tradeoff_table_one_row_per_variant_and_runtime(sample):
    import workbench as wb
    from workbench.evaluation.lm_accuracy import lm_tradeoff

    fast = {"prompt_length": 4, "output_length": 3, "runs": 2, "warmup": 0, "check_tokens": False}
    q = lm_quantize(sample, "int4")
    points = [
        (sample, wb.generate_profile(sample, **fast), None),
        (q, wb.generate_profile(q, backend="onnxruntime", **fast), lm_accuracy(q, **SMALL)),
    ]
    t = lm_tradeoff(points)
    assert list(t.df["variant"]) == ["baseline", q.label]
    assert list(t.df["backend"]) == ["torch", "onnxruntime"] and t.metric == "kl"
    row = t.df.iloc[1]
    assert row["metric_value"] == points[1][2].kl_mean and row["size_bytes"] == q.size_bytes
    assert row["memory_bytes"] == points[1][1].weights_bytes + points[1][1].kv_cache_bytes
    assert row["throughput_per_s"] == points[1][1].decode_tokens_per_s
    assert t.df.iloc[0]["metric_value"] == 0.0 and t.df.iloc[0]["speedup_vs_baseline"] == 1.0
    # the baseline has the lowest KL, so it is always on the front; int4 is iff faster
    faster = row["latency_ms"] < t.df.iloc[0]["latency_ms"]
    assert list(t.df["pareto"]) == [True, bool(faster)]


def test_a_variant_of_a_random_weight_model_is_refused_too():
    q = lm_quantize(language_model("llama-tiny"), "int8")
    with pytest.raises(UnsupportedModelError, match="accuracy asked for a random-weight model"):
        lm_accuracy(q, **SMALL)
