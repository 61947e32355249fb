"""The embedding figures: the cache sweep's curves, caches, cliffs and bandwidth line, and
the per-table bytes held vs touched (from `embedding_tables` or a profile's layers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.profiling.cache_sweep import CacheSweep, cliffs_table
from workbench.viz.embeddings import cache_cliffs, table_bytes

CACHES = {"L2": 1 << 20, "L3": 32 << 20}


def _sweep(bandwidth: float | None = 30e9) -> CacheSweep:
    sizes = [1 << e for e in range(17, 29)]
    rows = []
    for runtime, scale in (("torch", 1.0), ("numba", 1.3)):
        for batch in (256, 2048):
            for size in sizes:
                rate = scale * (40.0 if size <= 1 << 20 else 20.0 if size <= 32 << 20 else 6.0)
                rows.append(
                    {"runtime": runtime, "batch": batch, "table_bytes": size, "gb_per_s": rate,
                     "latency_ms": 1.0 / rate, "samples": 20}
                )  # fmt: skip
    points = pd.DataFrame(rows)
    return CacheSweep(points, cliffs_table(points, CACHES, 0.2), CACHES, bandwidth, 32, 8)


def test_cache_cliffs_draws_each_curve_the_caches_cliffs_and_bandwidth() -> None:
    sweep = _sweep()
    fig = cache_cliffs(sweep)
    curves = [t for t in fig.data if t.name != "cliff found"]
    assert sorted(t.name for t in curves) == [
        "numba, batch 2,048", "numba, batch 256", "torch, batch 2,048", "torch, batch 256"
    ]  # fmt: skip
    (cliffs,) = [t for t in fig.data if t.name == "cliff found"]
    np.testing.assert_allclose(cliffs.x, sweep.cliffs["detected_bytes"])
    assert len(cliffs.x) == 8  # an L2 and an L3 cliff on each of the 4 curves
    texts = [a.text for a in fig.layout.annotations]
    assert "L2 1 MiB" in texts and "L3 32 MiB" in texts
    assert "measured memory bandwidth" in texts
    assert [s.y0 for s in fig.layout.shapes if s.y0 == s.y1] == [30.0]
    no_bandwidth = cache_cliffs(_sweep(bandwidth=None))
    assert "measured memory bandwidth" not in [a.text for a in no_bandwidth.layout.annotations]


def test_an_empty_sweep_says_how_to_get_one() -> None:
    sweep = _sweep()
    empty = CacheSweep(sweep.points.iloc[:0], sweep.cliffs.iloc[:0], CACHES, None, 32, 8)
    assert "wb.cache_sweep" in cache_cliffs(empty).layout.annotations[0].text


def test_table_bytes_of_the_dlrm_sample_has_one_row_per_table() -> None:
    import workbench as wb
    from workbench.profiling.embeddings import embedding_tables

    model = wb.samples.load("dlrm")
    tables = embedding_tables(model, model.example_inputs(256, ids="zipf"))
    fig = table_bytes(tables)
    held, touched = fig.data
    assert len(held.y) == len(tables) == 8
    assert held.y[-1].startswith("tables.7 (20,000 x 64)")  # the largest table last
    np.testing.assert_array_equal(held.x, np.sort(tables["table_bytes"].to_numpy()))
    by_label = dict(zip(touched.y, touched.x, strict=True))
    assert by_label[held.y[-1]] == tables.set_index("layer").loc["tables.7", "bytes_touched"]


def test_table_bytes_reads_a_profiles_layer_table_and_skips_other_layers() -> None:
    layers = pd.DataFrame(
        {
            "layer": ["bottom.0", "tables.0"],
            "table_rows": [np.nan, 40.0],
            "table_width": [np.nan, 8.0],
            "params_bytes": [1664.0, 1280.0],
            "lookups": [np.nan, 512.0],
            "bytes_touched": [np.nan, 1024.0],
        }
    )
    fig = table_bytes(layers)
    assert list(fig.data[0].y) == ["tables.0 (40 x 8)"]
    assert list(fig.data[1].x) == [1024]
    assert "No embedding tables" in table_bytes(layers.iloc[:1]).layout.annotations[0].text


@pytest.mark.parametrize("name", ["cache_cliffs", "table_bytes"])
def test_figures_are_public_in_viz(name: str) -> None:
    from workbench import viz

    assert getattr(viz, name) is globals()[name]
