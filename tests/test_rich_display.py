"""Every result shows readable units in a notebook and a terminal (no raw floats, no NaN).

Each result type is built with awkward numbers on purpose: large counts and rates (which
``.4g`` writes as ``7.55e+07``), fractions with many digits, and missing values (NaN).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from workbench.evaluation.compare_backends import BEST_COLUMNS, BackendComparison
from workbench.evaluation.metrics import Evaluation
from workbench.evaluation.sweep import TradeoffTable
from workbench.optimize.sensitivity import SensitivityReport
from workbench.profiling.compare_runtimes import RoundResult, Runtime, RuntimeComparison
from workbench.profiling.timer import Measurement
from workbench.scenarios.result import MINIMUMS, ScenarioResult, query_frame

# exponent notation, six or more decimals, or a missing value spelled out
RAW = re.compile(r"\d[eE][+-]?\d|\d\.\d{6,}|\bnan\b|\bNaN\b|\binf\b")
# the scoped CSS carries numbers of its own (pixels)
STYLE = re.compile(r"<style>.*?</style>", re.S)

SLOW = Measurement((75_512.3, 75_498.1, 75_530.9, 75_501.2), (), "slow")
FAST = Measurement((0.486653, 0.4912, 0.4833, 0.4871, 0.4899), (), "fast")


def _round(runtime: str, measurement: Measurement | None, index: int) -> RoundResult:
    startup = {"compile_s": 1.234567, "first_inference_ms": 12.345678} if measurement else {}
    return RoundResult(
        runtime, index, index, measurement, (0.123456,), (7.891234,), startup=startup
    )


def _runtime_comparison() -> RuntimeComparison:
    runtimes = (Runtime("onnxruntime"), Runtime("torch"), Runtime("numba"))
    results = tuple(
        _round(name, measurement, i)
        for i, (name, measurement) in enumerate(
            [("onnxruntime", FAST), ("torch", SLOW), ("numba", None)]
        )
    )
    return RuntimeComparison("digits-mlp", 64, runtimes, "onnxruntime", results)


def _tradeoffs() -> TradeoffTable:
    rows = [
        {"variant": "baseline", "backend": "onnxruntime", "device": "cpu", "batch_size": 32,
         "latency_ms": 0.486653, "latency_p90_ms": 0.5123456, "throughput_per_s": 65_754.123,
         "size_bytes": 75_500_000.0, "metric": "accuracy", "metric_value": 0.9712345,
         "delta": 0.0, "speedup": 1.0, "pareto": True, "error": None},
        {"variant": "int8-static", "backend": "torch", "device": "cpu", "batch_size": 32,
         "latency_ms": np.nan, "latency_p90_ms": np.nan, "throughput_per_s": np.nan,
         "size_bytes": np.nan, "metric": "accuracy", "metric_value": np.nan,
         "delta": np.nan, "speedup": np.nan, "pareto": False, "error": "RuntimeError: no kernel"},
    ]  # fmt: skip
    return TradeoffTable(pd.DataFrame(rows), sweep_id="s1")


def _sensitivity() -> SensitivityReport:
    rows = [
        {"layer": "fc1", "op_type": "Gemm", "metric_value": 0.9654321, "metric_delta": -0.0058024,
         "sqnr_db": 31.234567, "latency_ms": 0.4123456, "latency_delta_ms": -0.0743074,
         "speedup": 1.18020202, "error": None},
        {"layer": "fc2", "op_type": "Gemm", "metric_value": 0.9712345, "metric_delta": 0.0,
         "sqnr_db": float("inf"), "latency_ms": np.nan, "latency_delta_ms": np.nan,
         "speedup": np.nan, "error": "ValueError: failed"},
    ]  # fmt: skip
    report = SensitivityReport(pd.DataFrame(rows))
    report.attrs.update(metric="accuracy", baseline=0.9712345, baseline_latency_ms=0.486653)
    return report


def _scenario() -> ScenarioResult:
    schedule = np.arange(400) * 0.001
    frame = query_frame(0.0, schedule, schedule, schedule, schedule + 0.0004866, samples=1, batch=1)
    return ScenarioResult("server", "m", "b", "cpu", {}, MINIMUMS["server"], frame, 0.4)


def _results() -> dict[str, object]:
    import workbench as wb

    comparison = _runtime_comparison()
    model = wb.samples.load("digits-mlp")
    profiles = [
        wb.profile(model, backend=b, batch_size=8, budget_s=0.05, layer_repeats=3)
        for b in ("onnxruntime", "torch")
    ]
    return {
        "Model": model,
        "Profile": profiles[0],
        "Comparison": wb.compare(profiles),
        "Measurement": SLOW,
        "Measurement (fast)": FAST,
        "RuntimeComparison": comparison,
        "BackendComparison": BackendComparison("digits-mlp", (64,), {64: comparison}),
        "TradeoffTable": _tradeoffs(),
        "Evaluation": Evaluation("accuracy", 0.486653, True, "m", "baseline", "ort", "cpu", 1797),
        "Evaluation (mse)": Evaluation(
            "mse", 75_500_000.0, False, "m", "baseline", "ort", "cpu", 9
        ),
        "Sensitivity": _sensitivity(),
        "ScenarioResult": _scenario(),
    }


NAMES = [
    "Model", "Profile", "Comparison", "Measurement", "Measurement (fast)", "RuntimeComparison",
    "BackendComparison", "TradeoffTable", "Evaluation", "Evaluation (mse)", "Sensitivity",
    "ScenarioResult",
]  # fmt: skip


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    """One of each result type (two short real profiles among them)."""
    built = _results()
    assert sorted(built) == sorted(NAMES)
    return built


@pytest.mark.parametrize("name", NAMES)
def test_the_notebook_view_has_units_and_no_raw_floats(results, name):
    page = STYLE.sub("", results[name]._repr_html_())
    assert RAW.findall(page) == []
    assert re.search(r"\d( |&nbsp;)?(µs|ms|s|KiB|MiB|GiB|%|×)\b|\d%|\d×|\d,\d{3}", page)


@pytest.mark.parametrize("name", NAMES)
def test_the_terminal_view_has_no_raw_floats(results, name):
    assert RAW.findall(repr(results[name])) == []


def test_the_compact_summary_comes_first(results):
    page = STYLE.sub("", results["TradeoffTable"]._repr_html_())
    # the summary (points, Pareto front) precedes the per-point table
    assert page.index("Pareto front") < page.index("int8-static")
    assert "75.5 MB" not in page and "72 MiB" in page  # binary units for sizes
    assert "97.1%" in page and "487 µs" in page and "65,754" in page


def test_missing_values_show_as_a_dash_and_infinite_sqnr_as_identical(results):
    page = STYLE.sub("", results["Sensitivity"]._repr_html_())
    assert "—" in page and "∞ dB" in page and "1.18×" in page and "31.2 dB" in page
    assert "<td class=text>fc1</td>" in page  # words are left-aligned, numbers right


def test_a_fraction_metric_is_a_percentage_and_others_keep_their_units(results):
    assert "accuracy=48.7%" in repr(results["Evaluation"])
    assert "mse=75,500,000" in repr(results["Evaluation (mse)"])


def test_the_best_runtime_is_starred_in_its_unit(results):
    text = repr(results["BackendComparison"])
    assert "487 µs *" in text and "75.5 s" in text
    assert set(BEST_COLUMNS) == {"latency_ms", "throughput_per_s", "cold_start_s", "memory_mib"}


# ---- the key figure inline (inline SVG, #13) ---------------------------------------------
FIGURE_KB = 20  # a figure stays small: the notebook stores it with every output
SVG = re.compile(r"<svg.*?</svg>", re.S)
BARS = "class='bar'"


def _figure(result: object) -> str:
    page = result._repr_html_()  # type: ignore[attr-defined]
    assert page.count("<svg") == 1
    assert "<script" not in page.lower() and "http" not in page.lower()
    (svg,) = SVG.findall(page)
    assert len(svg.encode()) < FIGURE_KB * 1024
    # the figure comes after the compact summary's facts and before the table
    assert page.index("</table>") < page.index("<svg") < page.rindex("<table>")
    return svg


@pytest.mark.parametrize(
    "name", ["Profile", "Comparison", "RuntimeComparison", "BackendComparison", "TradeoffTable"]
)
def test_each_main_result_shows_one_small_self_contained_figure(results, name):
    svg = _figure(results[name])
    assert re.search(r"\d (µs|ms|s)<", svg)  # axis and bars in time units
    assert "<svg" not in repr(results[name])  # the terminal view keeps to text


def test_a_profile_draws_its_slowest_timed_layers(results):
    profile = results["Profile"]
    svg = _figure(profile)
    layers = profile.layers
    unfused = layers["fused_into"].fillna("") == ""
    timed = layers[(layers["layer"] != "(unattributed)") & unfused]
    slowest = timed.sort_values("latency_ms", ascending=False)["layer"].head(8).tolist()
    assert svg.count(BARS) == len(slowest) > 0
    labels = re.findall(r"text-anchor='end'[^>]*>([^<]+)</text>", svg)
    assert labels == slowest  # slowest first, one bar each
    assert "(unattributed)" not in svg
    assert all(op in svg for op in timed.set_index("layer").loc[slowest, "op_type"])  # legend


def test_comparisons_draw_a_bar_per_measured_runtime_with_its_range(results):
    assert _figure(results["Comparison"]).count(BARS) == 2
    svg = _figure(results["RuntimeComparison"])
    assert svg.count(BARS) == 2  # numba failed: its row says "—" with no bar
    assert ">numba</text>" in svg and ">—</text>" in svg
    assert svg.count("<path d='M") == 2  # one whisker per measured runtime
    assert "range 75.5 s – 75.5 s" in svg  # the whisker's tooltip, in units


def test_a_backend_comparison_draws_small_multiples_per_batch_size():
    at_64 = _runtime_comparison()
    at_1 = dataclasses.replace(at_64, batch_size=1)
    svg = _figure(BackendComparison("digits-mlp", (64, 1), {64: at_64, 1: at_1}))
    assert svg.count(BARS) == 4
    assert svg.index(">batch 1<") < svg.index(">batch 64<")


def _sweep(points: list[tuple[str, float, float, bool]]) -> TradeoffTable:
    rows = [
        {"variant": v, "backend": "onnxruntime", "device": "cpu", "latency_ms": ms,
         "metric": "accuracy", "metric_value": acc, "pareto": front, "error": None}
        for v, ms, acc, front in points
    ]  # fmt: skip
    return TradeoffTable(pd.DataFrame(rows), sweep_id="s2")


def test_a_tradeoff_table_draws_every_point_and_highlights_the_pareto_front(results):
    table = _sweep(
        [("baseline", 0.9, 0.97, True), ("int8", 0.4, 0.95, True), ("pruned", 0.8, 0.9, False),
         ("slow <b>&", 1.5, 0.96, False), ("broken", np.nan, np.nan, False)]
    )  # fmt: skip
    svg = _figure(table)
    assert svg.count("class='pt") == 4  # the failed point has nothing to draw
    assert svg.count("class='pt front'") == 2
    assert svg.count("<polyline") == 1  # the front joined, fastest first
    assert "slow &lt;b&gt;&amp;" in svg and "<b>" not in svg  # labels are escaped
    assert "95%" in svg and "accuracy" in svg  # the metric's axis in its unit
    assert _figure(results["TradeoffTable"]).count("class='pt front'") == 1


def test_a_measurement_shows_how_its_runs_spread() -> None:
    samples = (*(0.40 + 0.01 * (i % 5) for i in range(50)), 0.9)
    page = Measurement(samples)._repr_html_()
    (svg,) = SVG.findall(page)
    assert "<script" not in page.lower() and "http" not in page.lower()
    assert svg.count(BARS) == 8 and "runs per latency bin" in svg
    counts = [int(c) for c in re.findall(r"<title>[^<]*?: ([\d,]+)</title>", svg)]
    assert sum(counts) == len(samples)
    assert "<svg" not in Measurement((0.4,))._repr_html_()  # one run has no spread


def test_a_sensitivity_report_draws_the_layers_that_cost_the_most_first() -> None:
    report = _sensitivity()
    svg = _figure(report)
    assert svg.count(BARS) == 1 and "accuracy drop" in svg  # fc2 failed: nothing measured
    assert ">fc1<" in svg and "0.58" in svg and ">fc2<" not in svg
    report.loc[1, "error"] = None
    svg = _figure(report)
    assert svg.index(">fc1<") < svg.index(">fc2<")  # fc1 cost 0.58 points, fc2 none
    assert "-0.00" not in svg


# --- one formatting layer: column kinds declared once, rendered for every view ---


def test_integers_are_exact_and_units_come_from_the_column_kind() -> None:
    from workbench.profiling.formatting import format_cell

    assert format_cell("batch_size", 32.0) == "32"  # a float after a NaN elsewhere
    assert format_cell("params", 65_536.0) == "65,536"  # exact, not 65540
    assert format_cell("size_bytes", 65_536) == "64 KiB"
    assert format_cell("flops", 3.097e11) == "310 GFLOP"
    assert format_cell("accuracy", 0.9778) == "97.8%"  # the charts show percent
    assert format_cell("variant", float("nan")) == "—"
    assert format_cell("latency_ms", 999.7) == "1 s"
    assert format_cell("latency_ms", 0.9997) == "1 ms"
    assert format_cell("count", 999.7) == "1,000"  # never 1e+03
    assert format_cell("peak_flops_per_s", 1.234e11) == "123 GFLOP/s"
    assert format_cell("bandwidth_bytes_per_s", 2.5 * 2**30) == "2.5 GiB/s"


def test_a_noisy_measurement_marks_its_numbers_not_its_words() -> None:
    from workbench.profiling.formatting import format_cell, frame_text
    from workbench.units import UNCERTAIN

    assert format_cell("latency_ms", 1.5, uncertain=True) == f"{UNCERTAIN}1.5 ms"
    frame = pd.DataFrame({"variant": ["a", "b"], "latency_ms": [1.5, 2.0], "noisy": [True, False]})
    text = frame_text(frame)
    assert f"{UNCERTAIN}1.5 ms" in text and f"{UNCERTAIN}2 ms" not in text and "~a" not in text


def test_the_terminal_table_fits_its_width_by_wrapping_the_long_text_column() -> None:
    from workbench.profiling.formatting import frame_text

    reason = "no CUDA GPU found (set NUMBA_ENABLE_CUDASIM=1 for the slow simulator) " * 2
    frame = pd.DataFrame(
        {"backend": ["numba-cuda", "onnxruntime"], "available": [False, True],
         "peak_bytes": [None, 65_536], "reason": [reason, None]}
    )  # fmt: skip
    text = frame_text(frame, width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "NUMBA_ENABLE_CUDASIM=1" in text and "64 KiB" in text and "—" in text
    assert lines[0].split() == ["backend", "available", "peak", "reason"]  # headers apart
    assert not RAW.search(text)


def test_the_slo_and_batch_summaries_use_the_same_layer() -> None:
    from workbench.scenarios.batch import BatchSweep
    from workbench.scenarios.slo import POINT_COLUMNS, TABLE_COLUMNS, SloResult

    table = pd.DataFrame(
        {"batch_size": [1.0, 8.0], "p50_ms": [0.4867, 3.1], "throughput_per_s": [2054.9, 3.097e5]}
    )
    text = BatchSweep("m", "onnxruntime", "cpu", table, 8).summary()
    assert not RAW.search(text) and "309,700" in text and "487 µs" in text
    assert "8.0" not in text
    row = ["int8-dynamic(per-channel)", "onnxruntime", "cpu", 31_166.4, 8.0, 2.0, 0.8123,
           3.097e11, 40_000.0, float("nan"), "p99", 7]  # fmt: skip
    slo = SloResult(
        p99_ms=1.0,
        table=pd.DataFrame([row], columns=TABLE_COLUMNS),
        points=pd.DataFrame(columns=POINT_COLUMNS),
        minimums=MINIMUMS["offline"],
    )
    text = slo.summary()
    header = text.splitlines()[1]
    assert not RAW.search(text) and "31,166" in text and "812 µs" in text, text
    # every header stands apart from its neighbours
    assert "max rate /s  max batch  batch window" in header, header


@pytest.mark.skipif(not __import__("shutil").which("node"), reason="node not installed")
@pytest.mark.parametrize(
    "kind", ["ms", "seconds", "bytes", "mib", "flops", "flops_rate", "bytes_rate", "share",
             "percent", "ratio", "db", "rate", "integer", "number", "text"],
)  # fmt: skip
def test_the_dashboard_cells_render_each_kind_exactly_as_the_notebook_does(kind) -> None:
    """The Tabulator formatter (JavaScript, run in node) against `format_value`."""
    import json
    import subprocess

    from workbench.units import format_value, js_formatter

    values = [0, 1, 32, 65_536, 1_204_264, 3.097e11, 0.4867, 0.000123, 999.7, 12.34, -2.5e-5,
              0.9778, 7.55e7, None, float("nan"), "fp32"]  # fmt: skip
    script = (
        f"const f={js_formatter(kind)};"
        f"const vs={json.dumps(values).replace('NaN', 'NaN')};"
        "console.log(JSON.stringify(vs.map(f)));"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [format_value(kind, v) for v in values]


def test_the_sweep_figures_accuracy_axis_stops_at_100_percent() -> None:
    # the same accuracy twice: a margin of 10% of the value ran the axis to 108%
    svg = _figure(_sweep([("baseline", 1.0, 0.98, False), ("int8", 0.5, 0.98, True)]))
    ticks = [float(t) for t in re.findall(r">(\d+(?:\.\d+)?)%<", svg)]
    assert ticks and max(ticks) <= 100 and min(ticks) >= 90, ticks


@pytest.mark.skipif(not __import__("shutil").which("node"), reason="node not installed")
def test_a_dashboard_cell_shows_its_unit_a_share_bar_and_the_noisy_mark() -> None:
    """The whole Tabulator formatter of a column (run in node on a stand-in cell)."""
    import json
    import subprocess

    from workbench.dashboards.pages.common import cell_formatters

    frame = pd.DataFrame({"latency_ms": [1.5], "share": [0.25], "noisy": [True]})
    formatters, align = cell_formatters(frame)
    cells = []
    for column, row in (("latency_ms", {"noisy": True}), ("latency_ms", {}), ("share", {})):
        value = float(frame[column].iloc[0])
        cell = f"{{getValue:()=>{value},getRow:()=>({{getData:()=>({json.dumps(row)})}})}}"
        script = f"const f={formatters[column].js_code};console.log(JSON.stringify(f({cell})));"
        out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
        cells.append(json.loads(out.stdout))
    assert cells[0] == "~1.5 ms" and cells[1] == "1.5 ms"
    assert "25%" in cells[2] and "#C6DBEF 25%" in cells[2]  # the bar behind the number
    assert align == {"latency_ms": "right", "share": "right", "noisy": "left"}


def test_the_command_lines_profile_summary_reads_in_units(results) -> None:
    """`workbench profile` prints `Profile.summary`: its layer table through the same layer."""
    text = results["Profile"].summary(top=5)
    assert not RAW.search(text), text
    table = text.split("Top layers", 1)[1]
    assert "%" in table and "FLOP" in table and " µs" in table + text
