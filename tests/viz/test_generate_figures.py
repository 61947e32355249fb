"""Figures of generation profiles, checked on their data (no pixels, no model run)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from workbench import viz
from workbench.profiling.generate import GenerationProfile
from workbench.profiling.table import UNATTRIBUTED
from workbench.profiling.timer import Measurement
from workbench.viz import generate as figures
from workbench.viz.reprs import generation_svg

pytest.importorskip("plotly")

RUNS = ((10.0, 1.0, 2.0, 3.0), (12.0, 1.5, 2.5, 3.5))  # per run: TTFT, then three steps


def _profile(runs: tuple[tuple[float, ...], ...] = RUNS, **fields: object) -> GenerationProfile:
    n = len(runs[0])
    decode = n > 1
    g = GenerationProfile(
        model="Tiny",
        backend="onnxruntime",
        device="cpu",
        batch_size=1,
        prompt_length=8,
        output_length=n,
        depth=0,
        tokens=(tuple(range(n)),),
        ttft=Measurement(tuple(r[0] for r in runs)),
        inter_token=Measurement(tuple(s for r in runs for s in r[1:])) if decode else None,
        tpot=Measurement(tuple(sum(r[1:]) / (n - 1) for r in runs)) if decode else None,
        e2e=Measurement(tuple(sum(r) for r in runs)),
        kv_bytes_per_token=256,
        kv_cache_bytes=256 * (8 + n - 1),
        kv_cache_bytes_measured=256 * (8 + n - 1),
        weights_bytes=1000,
        step_weights_bytes=900,
    )
    return dataclasses.replace(g, **fields)  # type: ignore[arg-type]


def _table(rows: dict[str, float], phase_ms: float) -> pd.DataFrame:
    layers = [
        {"layer": name, "op_type": op, "latency_ms": ms, "share": ms / phase_ms}
        for name, (op, ms) in {
            n: ("Linear" if "proj" in n or n == "lm_head" else "Other", ms)
            for n, ms in rows.items()
        }.items()
    ]
    gap = phase_ms - sum(rows.values())
    layers.append(
        {"layer": UNATTRIBUTED, "op_type": None, "latency_ms": gap, "share": gap / phase_ms}
    )
    return pd.DataFrame(layers)


def test_token_latency_draws_every_run_the_median_the_prefill_and_the_decode_quantiles() -> None:
    g = _profile()
    fig = viz.token_latency(g)
    runs = [t for t in fig.data if t.legendgroup == "runs"]
    assert [list(t.y) for t in runs] == [list(r) for r in RUNS]
    assert [t.showlegend for t in runs] == [True, False]
    decode = next(t for t in fig.data if t.name.startswith("decode step"))
    assert list(decode.x) == [2, 3, 4]
    assert list(decode.y) == pytest.approx([1.25, 2.25, 3.25])
    prefill = next(t for t in fig.data if t.name == "prefill (TTFT)")
    assert list(prefill.x) == [1] and list(prefill.y) == [pytest.approx(11.0)]
    lines = sorted(s.y0 for s in fig.layout.shapes if s.type == "line")
    assert g.inter_token is not None
    assert lines == pytest.approx(sorted([g.inter_token.median, g.inter_token.p90]))
    assert fig.layout.yaxis.type != "log"  # 12 ms against 1 ms: linear


def test_a_prefill_far_above_the_steps_gets_a_log_axis_and_one_token_no_decode() -> None:
    slow = viz.token_latency(_profile(((100.0, 1.0, 1.2),)))
    assert slow.layout.yaxis.type == "log"
    # the decode p50 and p90 lines sit at their ms, their labels beside them (plotly puts
    # an annotation on a log axis in log10 units, a line in the axis' own)
    lines = sorted(s.y0 for s in slow.layout.shapes if s.type == "line")
    labels = sorted(a.y for a in slow.layout.annotations if a.text.startswith("decode p"))
    assert lines == pytest.approx([1.1, 1.18]) and [10**y for y in labels] == pytest.approx(lines)
    single = viz.token_latency(_profile(((5.0,), (6.0,))))
    assert [t.name for t in single.data if "decode" in t.name] == []
    assert not [s for s in single.layout.shapes if s.type == "line"]


def test_phase_layer_latency_puts_the_slowest_first_in_each_phase_scale() -> None:
    prefill = _table({"lm_head": 4.0, "model.layers.0.mlp.up_proj": 3.0, "norm": 0.5}, 11.0)
    decode = _table({"lm_head": 1.0, "model.layers.0.mlp.up_proj": 0.2, "norm": 0.6}, 2.25)
    g = _profile(prefill_layers=prefill, decode_layers=decode)
    fig = viz.phase_layer_latency(g, top=2)
    assert [t.name for t in fig.data] == ["prefill", "decode step"]
    # the two largest shares in either phase: lm_head (44% of a step), up_proj (27% of
    # the prefill; norm's 27% of a step is less); plotly draws the first category lowest
    order = [UNATTRIBUTED, "model.layers.0.mlp.up_proj", "lm_head"]
    for trace, table in zip(fig.data, (prefill, decode), strict=True):
        assert list(trace.y) == order
        expected = table.set_index("layer").loc[order, "latency_ms"].tolist()
        assert list(trace.x) == pytest.approx(expected)
    assert "median 11 ms" in fig.layout.annotations[0].text


def test_phase_layer_latency_without_tables_says_why() -> None:
    g = _profile(notes=("per-layer tables on onnxruntime are not done yet",))
    fig = viz.phase_layer_latency(g)
    assert not fig.data and "not done yet" in fig.layout.annotations[0].text


def test_context_depth_draws_ttft_and_tpot_per_backend_and_the_kv_bytes() -> None:
    sweep = [
        _profile(depth=d, backend=b, kv_cache_bytes=100 * (d + 1), ttft=Measurement((5.0 + d,)))
        for b in ("torch", "onnxruntime")
        for d in (0, 16)
    ]
    fig = viz.context_depth(sweep)
    kv = next(t for t in fig.data if t.name == "KV cache")
    assert list(kv.x) == [0, 16] and list(kv.y) == [100, 1700]
    ttft = next(t for t in fig.data if t.name == "torch TTFT")
    assert list(ttft.x) == [0, 16] and list(ttft.y) == [5.0, 21.0]
    assert {t.name for t in fig.data} >= {"onnxruntime TTFT", "onnxruntime TPOT"}
    assert "No generation profiles" in viz.context_depth([]).layout.annotations[0].text


def test_the_notebook_view_draws_one_bar_per_token_cut_at_sixteen() -> None:
    g = _profile()
    svg = generation_svg(g)
    assert svg.count("class='bar'") == 4 and "token 1 (prefill)" in svg
    assert "<svg" in g._repr_html_()
    long = _profile((tuple(float(i + 1) for i in range(20)),))
    assert generation_svg(long).count("class='bar'") == 16 and "first 16 of 20" in generation_svg(
        long
    )


def test_the_figures_are_reached_through_the_lazy_names() -> None:
    assert viz.token_latency is figures.token_latency
    assert viz.phase_layer_latency is figures.phase_layer_latency
    assert viz.context_depth is figures.context_depth
    assert np.array_equal(_profile().token_times(), np.array(RUNS))


def test_decode_roofline_puts_each_attained_traffic_under_the_measured_bound() -> None:
    torch_g = _profile(backend="torch", bandwidth_bytes_per_s=4e9)
    ort_g = _profile(bandwidth_bytes_per_s=4e9)
    unmeasured = _profile(backend="numba")  # no roofline=True: left out
    fig = viz.decode_roofline([torch_g, ort_g, unmeasured])
    (bars,) = fig.data
    assert list(bars.y) == ["Tiny torch b1", "Tiny onnxruntime b1"]
    expected = [g.decode_bytes_per_s / 1e9 for g in (torch_g, ort_g)]  # type: ignore[operator]
    assert list(bars.x) == pytest.approx(expected)
    assert list(bars.text) == [f"{torch_g.bandwidth_fraction:.0%}"] * 2
    (bound,) = [s for s in fig.layout.shapes if s.type == "line"]
    assert bound.x0 == pytest.approx(4.0)
    assert "roofline=True" in viz.decode_roofline([unmeasured]).layout.annotations[0].text
