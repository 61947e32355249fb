"""Ceilings: stability rule, cache staleness, theoretical peak, and the roofline's re-measure.

Every rate here is injected (fake probes, canned /proc/cpuinfo), so nothing depends on how
fast or busy the machine is.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from workbench.profiling import ceilings as ceilings_module
from workbench.profiling import cost
from workbench.profiling.ceilings import (
    Ceilings,
    machine_ceilings,
    measure_ceilings,
    stable_best,
    theoretical_peak,
)
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement

XEON_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
cpu MHz\t\t: 2494.140
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512dq

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: something else entirely
"""
ZEN4_CPUINFO = """vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC
cpu MHz\t\t: 2596.150
flags\t\t: sse avx fma avx2 avx512f
"""
LSCPU = "Thread(s) per core:  2\nCPU max MHz:         3900.0000\n"


def sequence(values: list[float]) -> Callable[[], float]:
    """A probe returning the given rates in turn (the first is the discarded warm-up)."""
    it: Iterator[float] = iter(values)
    return lambda: next(it)


@pytest.fixture
def fake_machine(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, int]:
    """An isolated cache, a quiet load, 2 threads and a counter of measurements."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ceilings_module, "_load_average", lambda: (0.1, 0.2, 0.3))
    monkeypatch.setattr(ceilings_module, "_threads", lambda: 2)
    calls = {"measured": 0}

    def probes() -> dict[str, dict[str, Callable[[], float]]]:
        calls["measured"] += 1
        return {"compute": {"gemm": lambda: 100e9}, "memory": {"copy": lambda: 10e9}}

    monkeypatch.setattr(ceilings_module, "_cpu_probes", probes)
    return calls


# ---- stability -----------------------------------------------------------------------------
def test_stable_best_stops_once_the_last_runs_no_longer_move_the_best() -> None:
    # warm-up 1.0 is dropped; 5.0 -> 6.0 moves the best by 20%, then three runs within 3%
    best, runs = stable_best(sequence([1.0, 5.0, 6.0, 6.1, 6.0, 6.05, 99.0]))
    assert (best, runs) == (6.1, 5)


def test_stable_best_gives_up_after_max_runs() -> None:
    growing = sequence([1.0] + [1.1**i for i in range(20)])
    best, runs = stable_best(growing, max_runs=6)
    assert runs == 6 and best == pytest.approx(1.1**5)


# ---- measuring and caching -----------------------------------------------------------------
def test_measured_ceilings_take_the_best_probe_and_record_load_and_theory(monkeypatch) -> None:
    monkeypatch.setattr(ceilings_module, "_load_average", lambda: (0.5, 0.4, 0.3))
    probes = {
        "compute": {"gemm numpy": lambda: 50e9, "gemm torch": lambda: 80e9},
        "memory": {"read": lambda: 20e9, "write": lambda: 12e9, "copy": lambda: 18e9},
    }
    c = measure_ceilings("cpu", probes)
    assert c.peak_flops_per_s == 80e9 and c.bandwidth_bytes_per_s == 20e9
    assert c.load_average == (0.5, 0.4, 0.3)
    assert set(c.probes) == {"gemm numpy", "gemm torch", "read", "write", "copy"}
    assert c.probes["write"]["best"] == 12e9
    assert Ceilings.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_a_measurement_above_the_theoretical_peak_is_flagged(monkeypatch) -> None:
    monkeypatch.setattr(ceilings_module, "_load_average", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(
        ceilings_module,
        "theoretical_peak",
        lambda: theoretical_peak(XEON_CPUINFO, "", cores=1),  # 1 x 2.5 GHz x 16 x 2 x 2
    )
    probes = {"compute": {"gemm": lambda: 200e9}, "memory": {"copy": lambda: 1e9}}
    c = measure_ceilings("cpu", probes)
    assert c.theoretical_flops_per_s == pytest.approx(160e9)
    assert any("exceeds the theoretical" in w for w in c.warnings)


def test_ceilings_are_cached_and_measured_again_when_stale(fake_machine, tmp_path) -> None:
    first = machine_ceilings("cpu")
    assert machine_ceilings("cpu") == first and fake_machine["measured"] == 1
    path = tmp_path / "ceilings.json"
    cached = json.loads(path.read_text())
    (key,) = cached
    eight_days = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    cached[key]["measured_at"] = eight_days.isoformat(timespec="seconds")
    path.write_text(json.dumps(cached))
    machine_ceilings("cpu")
    assert fake_machine["measured"] == 2
    assert machine_ceilings("cpu", max_age=dt.timedelta(seconds=-1)) is not None
    assert fake_machine["measured"] == 3


def test_another_thread_count_or_an_old_cache_format_is_measured_again(
    fake_machine, tmp_path, monkeypatch
) -> None:
    machine_ceilings("cpu")
    monkeypatch.setattr(ceilings_module, "_threads", lambda: 1)
    machine_ceilings("cpu")
    assert (
        fake_machine["measured"] == 2
        and len(json.loads((tmp_path / "ceilings.json").read_text())) == 2
    )
    # the first release cached one GEMM, measured once, without probes or load: re-measured
    path = tmp_path / "ceilings.json"
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    first_release = {"device": "cpu", "peak_flops_per_s": 1.0, "bandwidth_bytes_per_s": 1.0}
    path.write_text(
        json.dumps({ceilings_module._key("cpu"): {**first_release, "measured_at": now}})
    )
    assert machine_ceilings("cpu").peak_flops_per_s == 100e9
    assert fake_machine["measured"] == 3


def test_only_cpu_and_cuda_can_be_measured() -> None:
    with pytest.raises(ValueError, match="only cpu and cuda"):
        measure_ceilings("tpu:0")


# ---- theoretical peak ----------------------------------------------------------------------
def test_theoretical_peak_prefers_the_turbo_clock_and_counts_physical_cores() -> None:
    peak = theoretical_peak(XEON_CPUINFO, LSCPU, cores=4)
    assert peak.clock_source == "lscpu max" and peak.fp32_lanes == 16
    assert peak.flops_per_s == pytest.approx(4 * 3.9e9 * 16 * 2 * 2)


def test_theoretical_peak_falls_back_to_the_model_name_then_cpu_mhz() -> None:
    xeon = theoretical_peak(XEON_CPUINFO, "", cores=2)
    assert xeon.clock_hz == pytest.approx(2.5e9) and "base clock" in xeon.clock_source
    zen4 = theoretical_peak(ZEN4_CPUINFO, "", cores=2)
    assert zen4.fp32_lanes == 8  # AVX-512 as two 256-bit halves
    assert zen4.flops_per_s == pytest.approx(2 * 2596.15e6 * 8 * 2 * 2)
    assert "current clock" in zen4.clock_source


def test_theoretical_peak_is_unavailable_without_a_clock() -> None:
    arm = theoretical_peak("Features\t: fp asimd\nCPU part\t: 0xd0c\n", "", cores=8)
    assert arm.flops_per_s is None and arm.fp32_lanes == 4
    assert arm.note.startswith("unavailable")


# ---- roofline: executed FLOPs and the re-measure path --------------------------------------
def profile_with(flops: list[float], latency_ms: list[float], **columns: list[float]) -> Profile:
    layers = pd.DataFrame(
        {
            "layer": [f"l{i}" for i in range(len(flops))],
            "op_type": "Conv",
            "latency_ms": latency_ms,
            "flops": flops,
            "bytes": [1e6] * len(flops),
            **columns,
        }
    )
    return Profile("toy", "numba", "cpu", 1, Measurement((1.0,)), layers=layers)


def ceilings(peak: float) -> Ceilings:
    return Ceilings("cpu", peak_flops_per_s=peak, bandwidth_bytes_per_s=1e12)


def test_a_layer_above_the_roof_makes_the_ceilings_be_measured_again(monkeypatch) -> None:
    calls: list[bool] = []

    def fake(device: str, refresh: bool = False) -> Ceilings:
        calls.append(refresh)
        return ceilings(200e9 if refresh else 100e9)  # the cached value was measured low

    monkeypatch.setattr(cost, "machine_ceilings", fake)
    p = profile_with([150e6], [1.0])  # 150 GFLOP/s, compute bound at 150 FLOP/byte
    p = cost.add_roofline(p)
    assert calls == [False, True]
    assert p.layers.loc[0, "roof_fraction"] == pytest.approx(0.75)
    assert not p.notes and "above_roof" not in p.environment["machine_ceilings"]


def test_a_layer_still_above_the_roof_keeps_its_fraction_and_is_flagged(monkeypatch) -> None:
    calls: list[bool] = []

    def fake(device: str, refresh: bool = False) -> Ceilings:
        calls.append(refresh)
        return ceilings(100e9)

    monkeypatch.setattr(cost, "machine_ceilings", fake)
    p = profile_with([150e6, 10e6], [1.0, 1.0])
    p = cost.add_roofline(p)
    assert calls == [False, True]  # measured again exactly once
    assert p.layers.loc[0, "roof_fraction"] == pytest.approx(1.5)
    assert p.environment["machine_ceilings"]["above_roof"] == {"l0": pytest.approx(1.5)}
    assert "l0 (1.50)" in p.notes[0]


def test_given_ceilings_are_never_replaced(monkeypatch) -> None:
    def fail(device: str, refresh: bool = False) -> Ceilings:
        raise AssertionError("measured although ceilings were given")

    monkeypatch.setattr(cost, "machine_ceilings", fail)
    p = profile_with([150e6], [1.0])
    p = cost.add_roofline(p, ceilings(100e9))
    assert p.layers.loc[0, "roof_fraction"] == pytest.approx(1.5) and p.notes


def test_the_roofline_uses_executed_flops_where_a_backend_reported_them() -> None:
    # a Winograd F(2x2, 3x3) conv executes 4/9 of its nominal multiply-adds
    p = profile_with([90e6, 90e6], [1.0, 1.0], executed_flops=[40e6, np.nan])
    p = cost.add_roofline(p, ceilings(100e9))
    table = p.layers.set_index("layer")
    assert table.loc["l0", "achieved_flops_per_s"] == pytest.approx(40e9)
    assert table.loc["l1", "achieved_flops_per_s"] == pytest.approx(90e9)
    assert table.loc["l0", "roof_fraction"] == pytest.approx(0.4)
    assert "executed" in p.environment["machine_ceilings"]["flops_basis"]


def test_the_roofline_figure_shows_measured_and_theoretical_roofs_and_executed_work() -> None:
    from workbench import viz

    p = profile_with([90e6, 90e6], [1.0, 1.0], executed_flops=[40e6, np.nan])
    c = Ceilings(
        "cpu", 100e9, 1e12, theoretical_flops_per_s=160e9, bandwidth_by_bytes=((1 << 20, 3e12),)
    )
    p = cost.add_roofline(p, c)
    fig = viz.roofline(p, c)
    names = [t.name for t in fig.data]
    assert "roof" in names and "theoretical peak" in names
    (cache,) = [t for t in fig.data if t.name.startswith("cache roof")]
    assert "1 MiB" in cache.name and cache.y[0] == pytest.approx(3e12 * cache.x[0])
    theory = next(t for t in fig.data if t.name == "theoretical peak")
    assert max(theory.y) == pytest.approx(160e9)
    (points,) = [t for t in fig.data if t.name == "Conv"]
    by_layer = dict(zip(points.text, points.x, strict=True))
    assert by_layer["l0"] == pytest.approx(40.0) and by_layer["l1"] == pytest.approx(90.0)
    assert "executed FLOPs" in points.customdata[0][2]


def test_executed_flops_reported_by_a_backend_become_a_column_next_to_flops() -> None:
    from workbench.backends.base import LayerTiming
    from workbench.profiling.table import LAYER_COLUMNS, layer_table

    timings = [
        LayerTiming("conv", "Conv", (1.0, 1.0), {"executed_flops": 40e6}),
        LayerTiming("fc", "Gemm", (0.5, 0.5)),
    ]
    table = layer_table(timings, 1.5, "leaves").set_index("layer")
    assert LAYER_COLUMNS.index("executed_flops") == LAYER_COLUMNS.index("flops") + 1
    assert table.loc["conv", "executed_flops"] == 40e6
    assert np.isnan(table.loc["fc", "executed_flops"])


def test_numba_winograd_convolutions_report_four_ninths_of_their_nominal_work() -> None:
    import workbench as wb
    from workbench.profiling.cost import layer_costs

    model = wb.samples.load("digits-cnn")
    x = model.example_inputs(2)
    # the rules run Winograd here (measuring might pick im2col on this machine)
    session = wb.backend("numba").compile(model, "cpu", conv_strategy="rules")
    try:
        timings = {t.layer: t for t in session.run_layers(x, 1)}
    finally:
        session.close()
    costs, _ = layer_costs(model, x, list(timings))
    reported = {
        k: t.detail["executed_flops"] for k, t in timings.items() if "executed_flops" in t.detail
    }
    assert reported  # the sample's 3x3 convolutions with >= 16 channels run as Winograd
    for layer, executed in reported.items():
        assert executed == pytest.approx(costs.loc[layer, "flops"] * 4 / 9), layer


# ---- cache-level bandwidth roofs -----------------------------------------------------------
def test_cache_probes_give_a_bandwidth_per_working_set_never_below_memory(monkeypatch) -> None:
    monkeypatch.setattr(ceilings_module, "_load_average", lambda: (0.0, 0.0, 0.0))
    probes = {
        "compute": {"gemm": lambda: 100e9},
        "memory": {"copy": lambda: 20e9},
        # an L2-sized set measured slower than the L3-sized one: the larger's rate holds
        "cache": {
            32 << 10: {"copy": lambda: 300e9},
            1 << 20: {"copy": lambda: 90e9},
            16 << 20: {"copy": lambda: 120e9},
        },
    }
    c = measure_ceilings("cpu", probes)
    assert c.bandwidth_by_bytes == ((32 << 10, 300e9), (1 << 20, 90e9), (16 << 20, 120e9))
    assert "copy 1024 KiB" in c.probes
    roofs = c.bandwidth_for(np.array([1e3, 500e3, 10e6, 1e9]))
    assert roofs.tolist() == [300e9, 120e9, 120e9, 20e9]
    assert Ceilings.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_a_layer_whose_bytes_fit_a_cache_is_held_to_that_caches_roof() -> None:
    # 1 MB touched in 0.01 ms = 100 GB/s at 1 FLOP/byte: above memory's 20 GB/s roof,
    # within the 150 GB/s a 16 MiB working set attains
    c = Ceilings("cpu", 1e12, 20e9, bandwidth_by_bytes=((16 << 20, 150e9),))
    p = profile_with([1e6], [0.01])
    p = cost.add_roofline(p, c)
    assert p.layers.loc[0, "roof_fraction"] == pytest.approx(100 / 150)
    assert p.layers.loc[0, "bound"] == "memory" and not p.notes
    p = profile_with([1e6], [0.01])
    p = cost.add_roofline(p, Ceilings("cpu", 1e12, 20e9))  # without cache roofs: 5x the roof
    assert p.layers.loc[0, "roof_fraction"] == pytest.approx(5.0)


def test_the_real_cache_probes_measure_every_working_set() -> None:
    probes = ceilings_module._cache_probes()
    assert sorted(probes) == list(ceilings_module.CACHE_PROBE_BYTES)
    for named in probes.values():
        (probe,) = named.values()
        assert 1e8 < probe() < 1e14  # bytes/s: a real copy, not an eliminated loop


def test_a_gpu_is_checked_against_its_datasheet_peak(monkeypatch) -> None:
    from workbench.profiling.ceilings import gpu_datasheet_peak

    assert gpu_datasheet_peak("NVIDIA H100 PCIe").flops_per_s == pytest.approx(51e12)
    assert gpu_datasheet_peak("NVIDIA H100 80GB HBM3").flops_per_s == pytest.approx(67e12)
    assert gpu_datasheet_peak("NVIDIA L40S").flops_per_s == pytest.approx(91.6e12)
    assert gpu_datasheet_peak("Some Future Accelerator") is None
    monkeypatch.setattr(ceilings_module, "_processor", lambda device: "Tesla T4")
    monkeypatch.setattr(ceilings_module, "_load_average", lambda: (0.0, 0.0, 0.0))
    probes = {"compute": {"sgemm": lambda: 9e12}, "memory": {"copy": lambda: 3e11}}
    c = measure_ceilings("cuda:0", probes)
    assert (
        c.theoretical_flops_per_s == pytest.approx(8.1e12) and "T4 datasheet" in c.theoretical_note
    )
    assert any("exceeds the theoretical" in w for w in c.warnings)
