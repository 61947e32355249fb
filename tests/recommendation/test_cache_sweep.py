"""The cache sweep: cliff detection on synthetic curves (no timings), naming cliffs after
the reported cache levels, the JSON round trip, and bad input refused before allocating."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import ParameterError
from workbench.profiling.cache_sweep import CacheSweep, cache_sweep, cliffs_table, find_cliffs

CACHES = {"L1d": 32 << 10, "L2": 1 << 20, "L3": 32 << 20}
SIZES = [1 << e for e in range(16, 30)]  # 64 KiB to 512 MiB


def _curve(l2: float, l3: float, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """GB/s over `SIZES` with L2 / L3 / DRAM plateaus (40, 20, 6) and gradual steps
    centred on ``l2`` and ``l3`` bytes, times seeded multiplicative noise."""
    x = np.log2(SIZES)

    def step(centre: float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-2.5 * (x - np.log2(centre))))

    log_rate = np.log(40.0) + np.log(20 / 40) * step(l2) + np.log(6 / 20) * step(l3)
    return np.exp(log_rate) * np.random.default_rng(seed).lognormal(0.0, noise, len(x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def testcliffs_table_a_three_plateau_curve_land_at_the_caches(seed: int) -> None:
    cliffs = find_cliffs(SIZES, _curve(1.5 * (1 << 20), 48 << 20, seed), CACHES)
    assert [c["level"] for c in cliffs] == ["L2", "L3"]
    assert all(c["within_2x"] for c in cliffs)
    for cliff, centre in zip(cliffs, (1.5 * (1 << 20), 48 << 20), strict=True):
        assert abs(np.log2(cliff["detected_bytes"] / centre)) <= 1.0  # within one grid step
    assert cliffs[0]["rate_before"] == pytest.approx(40, rel=0.15)
    assert cliffs[1]["rate_after"] == pytest.approx(6, rel=0.15)


def test_a_cliff_far_from_the_reported_size_is_named_but_not_within_2x() -> None:
    cliffs = find_cliffs(SIZES, _curve(1 << 20, 256 << 20), CACHES)
    l3 = [c for c in cliffs if c["level"] == "L3"]
    assert len(l3) == 1 and not l3[0]["within_2x"] and l3[0]["ratio"] > 4


def test_flat_or_shallow_curves_have_no_cliffs() -> None:
    flat = np.random.default_rng(0).lognormal(np.log(10.0), 0.05, len(SIZES))
    assert find_cliffs(SIZES, flat, CACHES) == []
    shallow = np.where(np.array(SIZES) < (16 << 20), 10.0, 9.0)  # a 10% step: not a cliff
    assert find_cliffs(SIZES, shallow, CACHES) == []
    assert find_cliffs(SIZES, shallow, CACHES, min_drop=0.05)[0]["level"] == "L3"


def test_a_single_clean_step_sits_between_its_two_sizes() -> None:
    (cliff,) = find_cliffs([1, 2, 4, 8], [9, 9, 3, 3], {"L2": 3})
    assert cliff["detected_bytes"] == pytest.approx(np.sqrt(8))
    assert cliff["ratio"] == pytest.approx(np.sqrt(8) / 3)
    assert find_cliffs([1, 2, 4, 8], [9, 9, 3, 3], {})[0]["level"] == ""


def _sweep() -> CacheSweep:
    import pandas as pd

    rates = _curve(1 << 20, 32 << 20)
    points = pd.DataFrame(
        {"runtime": "numba", "batch": 2048, "table_bytes": SIZES, "gb_per_s": rates}
    )
    return CacheSweep(points, cliffs_table(points, CACHES, 0.2), CACHES, 30e9, 32, 8)


def test_sweep_round_trips_json_and_checks_each_level() -> None:
    sweep = _sweep()
    again = CacheSweep.from_json(sweep.to_json())
    assert again.caches == CACHES and again.bandwidth_bytes_per_s == 30e9
    assert again.cliffs.equals(sweep.cliffs) and len(again.points) == len(SIZES)
    check = sweep.level_check().set_index("level")
    assert check.loc["L2", "within_2x"] and check.loc["L3", "within_2x"]
    assert check.loc["L3", "reported_bytes"] == 32 << 20
    assert repr(sweep).startswith(f"CacheSweep: {len(SIZES)} points; L2 1 MiB: cliff at ")


def test_bad_sweeps_are_refused_before_allocating() -> None:
    with pytest.raises(ParameterError, match="runtimes must be some of"):
        cache_sweep([1 << 20], runtimes=["tensorflow"])
    with pytest.raises(ParameterError, match="free memory"):
        cache_sweep([1 << 50], bandwidth_bytes_per_s=1e9)
    with pytest.raises(ParameterError, match="ids must be 'uniform' or 'zipf'"):
        cache_sweep([1 << 20], ids="normal")
    with pytest.raises(ParameterError, match="batches must be positive"):
        cache_sweep([1 << 20], batches=[0], bandwidth_bytes_per_s=1e9)


def test_a_tiny_sweep_has_one_measured_point_per_runtime_batch_and_size() -> None:
    sweep = cache_sweep(
        [64 << 10, 256 << 10], batches=(64,), budget_s=0.01, bandwidth_bytes_per_s=1e9
    )
    points = sweep.points
    assert len(points) == 2 * 1 * 2 and set(points["runtime"]) == {"torch", "numba"}
    assert (points["samples"] > 0).all() and (points["lookups"] == 64 * 8).all()
    np.testing.assert_allclose(
        points["gb_per_s"], points["bytes_read"] / (points["latency_ms"] * 1e-3) / 1e9
    )
    assert set(points["rows"]) == {(64 << 10) // 128, (256 << 10) // 128}


def test_zipf_pools_concentrate_on_scattered_hot_rows() -> None:
    from workbench.profiling.cache_sweep import _ids_pool

    rng = np.random.default_rng(0)
    uniform, zipf = _ids_pool(rng, 10_000, 256, 8), _ids_pool(rng, 10_000, 256, 8, "zipf")
    assert uniform.shape == zipf.shape == (10, 256, 8)  # 2 x rows ids at least
    assert zipf.min() >= 0 and zipf.max() < 10_000

    def top_100_share(pool: np.ndarray) -> float:
        counts = np.sort(np.bincount(pool.ravel(), minlength=10_000))[::-1]
        return float(counts[:100].sum() / pool.size)

    assert top_100_share(zipf) > 0.4 and top_100_share(uniform) < 0.05
    hot = np.argsort(np.bincount(zipf.ravel(), minlength=10_000))[-10:]
    assert hot.max() - hot.min() > 1_000  # the hot rows are spread over the table
