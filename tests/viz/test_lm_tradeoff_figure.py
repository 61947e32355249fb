"""The generative trade-off figure: `tradeoff`'s Pareto plot, extended for KL and rows
without one (random weights: speed only, in a strip under the plot)."""

from __future__ import annotations

from workbench import viz
from workbench.evaluation.lm_accuracy import lm_table


def _row(variant: str, backend: str, tpot: float, kl: float | None, **extra: object) -> dict:
    return {
        "variant": variant,
        "backend": backend,
        "device": "cpu",
        "batch_size": 1,
        "latency_ms": tpot,
        "latency_p90_ms": tpot * 1.1,
        "throughput_per_s": 1000 / tpot,
        "metric": "kl",
        "metric_value": kl,
        "memory_bytes": 100e6 if variant == "baseline" else 30e6,
        "error": None,
        **extra,
    }


def test_kl_against_tpot_with_the_front_and_unscored_rows_in_a_strip():
    table = lm_table(
        [
            _row("baseline", "torch", 40.0, 0.0),
            _row("int4(block 32, acc 4)", "onnxruntime", 6.0, 0.003),
            _row("int8-dynamic", "onnxruntime", 8.0, 0.0004),
            _row("bf16", "torch", 30.0, None, accuracy_unavailable="random weights"),
        ]
    )
    fig = viz.lm_tradeoff_figure(table)
    assert fig.layout.title.text.startswith("Generative trade-off")
    assert "time per output token" in fig.layout.xaxis.title.text
    strip = [t for t in fig.data if t.yaxis == "y2"]
    assert len(strip) == 1 and list(strip[0].x) == [30.0]
    assert strip[0].name == "no KL vs fp32 (nats): random weights"
    scored = {
        v
        for t in fig.data
        if t.yaxis != "y2" and t.customdata is not None
        for v in t.customdata[:, 0]
    }
    assert scored == {"baseline", "int4(block 32, acc 4)", "int8-dynamic"}
    front = next(t for t in fig.data if t.name == "Pareto front")
    # lower KL is better: the fastest (int4) and the exact (baseline) ends, int8-dynamic between
    assert list(front.x) == [6.0, 8.0, 40.0]
    # the marker grows with weights + KV memory
    sizes = {
        v: s
        for t in fig.data
        if t.yaxis != "y2" and t.customdata is not None
        for v, s in zip(t.customdata[:, 0], t.marker.size, strict=True)
    }
    assert sizes["baseline"] > sizes["int4(block 32, acc 4)"]


def test_random_weights_alone_draw_speed_only_and_say_why():
    table = lm_table(
        [
            _row("baseline", "torch", 40.0, 0.0),
            _row("bf16", "torch", 30.0, None, accuracy_unavailable="random weights"),
        ]
    )
    only = lm_table([table.df.iloc[1].to_dict()])
    fig = viz.lm_tradeoff_figure(only)
    assert [t.yaxis for t in fig.data if t.name != "Pareto front"] == ["y2"]
    assert any("unavailable: random weights" in a.text for a in fig.layout.annotations)
    # the plain trade-off plot keeps leaving such rows out
    assert all(t.yaxis != "y2" for t in viz.tradeoff(table).data)
