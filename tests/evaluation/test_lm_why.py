"""`why_not_faster`: reasons named from the profiles' numbers, per phase and layer.

Built on hand-made generation profiles (exact numbers, no timing), so each rule is
checked on the data that triggers it and on the data that must not.
"""

from __future__ import annotations

import pandas as pd

from workbench.evaluation.lm_why import WhyNotFaster, why_not_faster
from workbench.profiling.generate import GenerationProfile
from workbench.profiling.timer import Measurement

MB = 1_000_000


def _layers(rows: list[tuple[str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"layer": n, "op_type": k.split(",")[0], "latency_ms": ms, "kernels": k}
            for n, ms, k in rows
        ]
    )


def _profile(
    *,
    tpot: float,
    ttft: float,
    step_bytes: int,
    bandwidth: float | None = None,
    decode: list[tuple[str, float, str]] | None = None,
    backend: str = "onnxruntime",
) -> GenerationProfile:
    steps = (tpot,) * 4
    return GenerationProfile(
        model="m",
        backend=backend,
        device="cpu",
        batch_size=1,
        prompt_length=16,
        output_length=5,
        depth=0,
        tokens=((1, 2, 3, 4, 5),),
        ttft=Measurement((ttft, ttft, ttft), (), "ttft"),
        inter_token=Measurement(steps, (), "itl"),
        tpot=Measurement((tpot, tpot, tpot), (), "tpot"),
        e2e=Measurement((ttft + 4 * tpot,) * 3, (), "e2e"),
        kv_bytes_per_token=0,
        kv_cache_bytes=0,
        kv_cache_bytes_measured=0,
        weights_bytes=step_bytes,
        step_weights_bytes=step_bytes,
        bandwidth_bytes_per_s=bandwidth,
        decode_layers=None if decode is None else _layers(decode),
    )


FP32 = [("q_proj", 1.0, "MatMul"), ("norm", 0.1, "SimplifiedLayerNormalization")]
INT8 = {"name": "weight-only", "label": "int8", "config": {"bits": 8, "accuracy_level": 4}}


def test_a_quantized_projection_no_faster_than_fp32_is_named_a_missing_kernel():
    base = _profile(tpot=10.0, ttft=5.0, step_bytes=400 * MB, decode=FP32)
    slow = _profile(
        tpot=9.5,
        ttft=5.0,
        step_bytes=100 * MB,
        decode=[("q_proj", 1.0, "MatMulNBits"), ("norm", 0.1, "SimplifiedLayerNormalization")],
    )
    why = why_not_faster(slow, base, INT8, flags=["avx512_vnni"])
    kernel = [r for r in why.reasons if r.kind == "kernel"]
    assert len(kernel) == 1 and kernel[0].layers == ("q_proj",)
    assert "MatMulNBits" in kernel[0].text and kernel[0].phase == "decode"
    assert why.layers["layer"].tolist() == ["q_proj"]
    assert round(why.decode_speedup, 3) == round(10 / 9.5, 3) and why.bytes_ratio == 4.0
    # a projection that did get faster is not blamed
    fast = _profile(
        tpot=3.0,
        ttft=5.0,
        step_bytes=100 * MB,
        decode=[("q_proj", 0.3, "MatMulNBits"), ("norm", 0.1, "SimplifiedLayerNormalization")],
    )
    assert not [
        r
        for r in why_not_faster(fast, base, INT8, flags=["avx512_vnni"]).reasons
        if r.kind == "kernel"
    ]


def test_int8_dot_products_and_half_precision_are_read_from_the_cpu_flags():
    base = _profile(tpot=10.0, ttft=5.0, step_bytes=400 * MB)
    variant = _profile(tpot=4.0, ttft=5.0, step_bytes=100 * MB)
    without = why_not_faster(variant, base, INT8, flags=["avx2"])
    assert any("int8 dot products" in r.text for r in without.reasons)
    assert not any(
        r.kind == "kernel"
        for r in why_not_faster(variant, base, INT8, flags=["avx512_vnni"]).reasons
    )
    bf16 = {"name": "cast", "label": "bf16", "config": {"dtype": "bf16"}}
    torch_variant = _profile(tpot=9.0, ttft=5.0, step_bytes=200 * MB, backend="torch")
    torch_base = _profile(tpot=10.0, ttft=5.0, step_bytes=400 * MB, backend="torch")
    emulated = why_not_faster(torch_variant, torch_base, bf16, flags=["avx2"])
    assert any(r.kind == "kernel" and "bfloat16" in r.text for r in emulated.reasons)
    native = why_not_faster(torch_variant, torch_base, bf16, flags=["avx512_bf16"])
    assert not any(r.kind == "kernel" for r in native.reasons)


def test_the_decode_bound_comes_from_the_roofline_and_prefill_from_ttft():
    base = _profile(tpot=10.0, ttft=5.0, step_bytes=400 * MB, bandwidth=50e9)
    # 100 MB in 2.5 ms = 40 GB/s = 80% of the 50 GB/s measured: memory-bound
    bound = why_not_faster(_profile(tpot=2.5, ttft=5.0, step_bytes=100 * MB, bandwidth=50e9), base)
    assert [r.kind for r in bound.reasons] == ["bandwidth"] and "80%" in bound.reasons[0].text
    # 100 MB in 8 ms = 25% of it, and a slower prefill: compute in both phases
    held = why_not_faster(_profile(tpot=8.0, ttft=9.0, step_bytes=100 * MB, bandwidth=50e9), base)
    assert [(r.phase, r.kind) for r in held.reasons] == [
        ("decode", "compute"),
        ("prefill", "compute"),
    ]
    assert "25%" in held.reasons[0].text and "16 tokens per pass" in held.reasons[1].text
    assert held.prefill_speedup == 5.0 / 9.0


def test_activation_quantization_time_is_named_against_the_same_layers_in_fp32():
    base = _profile(tpot=2.0, ttft=5.0, step_bytes=400 * MB, decode=FP32)
    dynamic = _profile(
        tpot=2.0,
        ttft=5.0,
        step_bytes=100 * MB,
        decode=[
            ("q_proj", 0.3, "MatMulIntegerToFloat"),
            ("norm", 0.5, "SimplifiedLayerNormalization, DynamicQuantizeLinear"),
        ],
    )
    why = why_not_faster(dynamic, base, {"name": "int8-dynamic", "label": "int8-dynamic"})
    [dq] = [r for r in why.reasons if r.kind == "dequantization"]
    assert dq.layers == ("norm",) and "DynamicQuantizeLinear" in dq.text
    assert "0.5 ms of a 2 ms step (25%)" in dq.text and "+0.4 ms" in dq.text
    assert WhyNotFaster.from_dict(why.to_dict()).to_dict() == why.to_dict()


def test_without_a_baseline_on_the_same_runtime_only_the_variant_speaks():
    base = _profile(tpot=10.0, ttft=5.0, step_bytes=400 * MB, backend="torch")
    why = why_not_faster(_profile(tpot=8.0, ttft=9.0, step_bytes=100 * MB), base)
    assert why.decode_speedup is None and why.bytes_ratio is None and why.reasons == ()
    assert "no baseline on this runtime" in why.text()
