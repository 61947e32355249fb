"""Reports: one self-contained HTML file from a profile, several profiles or a sweep."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

import workbench as wb
from workbench.cli import main
from workbench.errors import InputError
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.reports import report
from workbench.store import Store
from workbench.units import format_ms


@pytest.fixture(scope="module")
def measured() -> Profile:
    return wb.profile(wb.samples.load("digits-cnn"), "onnxruntime", batch_size=4, budget_s=0.1)


def synthetic(latencies: dict[str, float], **fields) -> Profile:
    """A profile with a hand-written per-layer table."""
    layers = pd.DataFrame(
        {
            "layer": list(latencies),
            "op_type": ["Conv" if "conv" in n else "Gemm" for n in latencies],
            "latency_ms": list(latencies.values()),
            "params_bytes": [4096] * len(latencies),
            "activation_bytes": [2048] * len(latencies),
        }
    )
    settings = {"model": "toy", "backend": "onnxruntime", "device": "cpu", "batch_size": 1}
    latency = Measurement(samples_ms=(1.0, 1.1, 0.9, 1.0), warmup_ms=(5.0,))
    return Profile(latency=latency, layers=layers, **{**settings, **fields})


def figures_in(text: str) -> list[dict]:
    """The figures the HTML draws: the JSON given to each ``Plotly.newPlot``."""
    return [
        json.loads(m.group(1))
        for m in re.finditer(r'Plotly\.newPlot\(\s*"figure-\d+",\s*(\[.*?\]),\s*\{', text)
    ]


def test_a_profile_report_holds_its_sections_and_figures_and_needs_no_network(measured):
    out = report(measured)
    headings = [h for h, _ in out.sections]
    for expected in ("Environment", "End-to-end latency", "Cold start", "Per layer", "Memory"):
        assert any(h.startswith(expected) for h in headings), headings
    text = out.html()
    assert len(figures_in(text)) == len(out.figures()) >= 5
    # plotly.js is inline and nothing is loaded from anywhere else
    assert get_plotlyjs() in text
    rest = text.replace(get_plotlyjs(), "")
    assert "<script src" not in rest and "http://" not in rest and "https://" not in rest
    assert format_ms(measured.latency.median) in text  # the notebook's units, not .4g
    assert measured.cold_start_text() in text
    slowest = measured.top_layers(1).iloc[0]["layer"]
    assert f"<td class=text>{slowest}</td>" in text
    tables = " ".join(re.findall(r"<table class='data'>.*?</table>", text, re.S))
    assert tables and not re.search(r"\bnan\b|\d[eE][+-]?\d", tables, re.I)  # one layer


def test_a_comparison_report_aligns_the_profiles_and_a_sweep_report_marks_the_front():
    a, b = synthetic({"conv1": 1.0, "fc1": 2.0}), synthetic({"conv1": 0.5}, run_id="b")
    compared = report([a, b])
    assert compared.sections[0][0] == "Comparison"
    assert sum(h.endswith("Environment") for h, _ in compared.sections) == 2
    rows = pd.DataFrame(
        {
            "variant": ["baseline", "int8-dynamic", "fp16"],
            "latency_ms": [2.0, 1.0, 2.5],
            "metric_value": [0.98, 0.97, 0.95],
            "metric": ["accuracy"] * 3,
            "pareto": [True, True, False],
        }
    )
    text = report(rows).html()
    assert text.count("<tr class=bold>") == 2
    assert "accuracy vs latency" in text


def test_reporting_something_else_says_what_it_takes():
    with pytest.raises(InputError, match="give a Profile, a list of profiles or a TradeoffTable"):
        report(42)


def test_the_report_command_writes_a_stored_run_and_a_json_file(tmp_path, capsys):
    p = synthetic({"conv1": 1.0, "fc1": 2.0})
    store = Store(tmp_path / "runs.sqlite")
    store.save_profile(p)
    out = tmp_path / "run.html"
    assert main(["report", p.run_id, "--store", str(store.path), "--out", str(out)]) == 0
    assert f"Profile — {p.label}" in out.read_text()
    path = tmp_path / "p.json"
    p.to_json(path)
    assert main(["report", str(path), "--out", str(tmp_path / "j.html")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["report", "no-such-run", "--store", str(store.path), "--out", str(out)]) == 2
    assert "no run or sweep id" in capsys.readouterr().err


def test_the_report_command_writes_a_stored_sweep_with_its_front(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    store.start_sweep("s1", "toy", {"metric": "accuracy", "higher_is_better": True})
    for variant, latency, accuracy in (("baseline", 2.0, 0.98), ("int8-dynamic", 1.0, 0.97),
                                       ("fp16", 2.5, 0.95)):  # fmt: skip
        row = {"variant": variant, "backend": "onnxruntime", "device": "cpu", "batch_size": 1,
               "latency_ms": latency, "metric": "accuracy", "metric_value": accuracy}  # fmt: skip
        store.save_point("s1", row)
    out = tmp_path / "sweep.html"
    assert main(["report", "s1", "--store", str(store.path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Trade-offs — sweep s1" in text and text.count("<tr class=bold>") == 2


_NETWORK = re.compile(r"<(?:script|link|img)\b[^>]*(?:src|href)\s*=\s*['\"]?(?:https?:)?//", re.I)


def without_timestamp(text: str) -> str:
    return re.sub(r"<p class='meta'>.*?</p>", "", text)


def test_profile_to_html_is_the_report_command_file_and_needs_no_network(measured, tmp_path):
    path = tmp_path / "p.json"
    measured.to_json(path)
    cli = tmp_path / "cli.html"
    assert main(["report", str(path), "--out", str(cli)]) == 0
    written = tmp_path / "nb.html"
    text = Profile.from_json(path).to_html(path=written)
    assert written.read_text(encoding="utf-8") == text
    assert without_timestamp(text) == without_timestamp(cli.read_text(encoding="utf-8"))
    assert not _NETWORK.search(text)
    assert get_plotlyjs() in text  # the figures' library is inline
    assert len(figures_in(text)) == len(report(measured).figures()) >= 5


def test_tradeoff_table_to_html_is_the_sweep_report_with_its_front(tmp_path):
    from workbench.evaluation.sweep import load_sweep

    store = Store(tmp_path / "runs.sqlite")
    store.start_sweep("s2", "toy", {"metric": "accuracy", "higher_is_better": True})
    for variant, latency, accuracy in (("baseline", 2.0, 0.98), ("int8-dynamic", 1.0, 0.97)):
        row = {"variant": variant, "backend": "onnxruntime", "device": "cpu", "batch_size": 1,
               "latency_ms": latency, "metric": "accuracy", "metric_value": accuracy}  # fmt: skip
        store.save_point("s2", row)
    table = load_sweep("s2", store)
    cli = tmp_path / "cli.html"
    assert main(["report", "s2", "--store", str(store.path), "--out", str(cli)]) == 0
    text = table.to_html()
    assert without_timestamp(text) == without_timestamp(cli.read_text(encoding="utf-8"))
    assert not _NETWORK.search(text) and get_plotlyjs() in text
    (figure,) = figures_in(text)
    assert {trace["type"] for trace in figure} >= {"scatter"}
    assert text.count("<tr class=bold>") == 2
    table.to_html(tmp_path / "t.html")
    assert without_timestamp((tmp_path / "t.html").read_text(encoding="utf-8")) == (
        without_timestamp(text)
    )
