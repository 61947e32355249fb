"""``workbench plan``: SLO JSON files and machine TOML files in, a plan (or one line) out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main
from workbench.planning import Plan
from workbench.scenarios import SloResult
from workbench.scenarios.result import Minimums
from workbench.scenarios.slo import TABLE_COLUMNS


def slo_file(tmp_path: Path, name: str, p99_ms: float, rate: float) -> Path:
    row = dict.fromkeys(TABLE_COLUMNS, math.nan) | {
        "variant": "baseline", "backend": "onnxruntime", "device": "cpu",
        "max_rate_per_s": rate, "limited_by": "at 600/s: p99 over the budget", "points": 5,
    }  # fmt: skip
    result = SloResult(
        p99_ms, pd.DataFrame([row], columns=TABLE_COLUMNS), pd.DataFrame(),
        Minimums(200, 0.5, 270336, 600.0),
    )  # fmt: skip
    path = tmp_path / f"{name}.json"
    result.to_json(path)
    return path


def machine_file(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n{body}\n')
    return path


def test_plan_prints_the_choice_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = (
        slo_file(tmp_path, "a", 5.0, 500.0),
        machine_file(tmp_path, "a", 'rental_price = "2 USD/h"'),
    )
    b = (
        slo_file(tmp_path, "b", 5.0, 400.0),
        machine_file(tmp_path, "b", 'rental_price = "1 USD/h"'),
    )
    out = tmp_path / "plan.json"
    argv = ["plan", "--rate", "900", "--p99-ms", "5", "--redundancy", "1", "--years", "1"]
    code = main(
        [*argv, "--candidate", *map(str, a), "--candidate", *map(str, b), "--json", str(out)]
    )
    text = capsys.readouterr().out
    assert code == 0
    # b: ceil(900/400)+1 = 4 x 1/h; a: ceil(900/500)+1 = 3 x 2/h
    assert "cheapest: b baseline onnxruntime/cpu: 4 machine(s), 35,040 USD over 1 year" in text
    assert "a baseline onnxruntime/cpu: costs 17,520 USD more over 1 year (+50%)" in text
    assert Plan.from_json(out).choice["machines"] == 4
    assert json.loads(out.read_text())["workload"]["target_rate_per_s"] == 900.0
    assert "utilization" not in text.split("runners-up:")[1]
    assert main([*argv, "--candidate", *map(str, a), "--candidate", *map(str, b), "--what-if"]) == 0
    what_if = capsys.readouterr().out.split("runners-up:")[1]
    # capped at half its measured rate, b needs ceil(900/200)+1 = 6 (52,560), a 5 (87,600)
    assert "no machine may run above a share of its measured rate" in what_if
    assert "52,560" in what_if and "electricity price is scaled" in what_if


@pytest.mark.parametrize(
    ("slo_p99", "machine", "extra", "expected"),
    [
        (10.0, 'rental_price = "1 USD/h"', [], "looser than the 5 ms objective"),
        (5.0, 'rental_price = "1 USD/month"', [], "has the wrong unit"),
        (5.0, 'rental_price = "1 USD/h"', ["--max-machines", "1"], "nearest: m baseline"),
        (5.0, 'rental_price = "1 USD/h"', ["--peak", "0.5"], "peak_to_average must be"),
    ],
    ids=["looser-objective", "wrong-unit", "unreachable", "peak-below-1"],
)
def test_bad_input_is_one_line_and_status_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    slo_p99: float,
    machine: str,
    extra: list[str],
    expected: str,
) -> None:
    files = [
        str(slo_file(tmp_path, "m", slo_p99, 500.0)),
        str(machine_file(tmp_path, "m", machine)),
    ]
    code = main(["plan", "--rate", "900", "--p99-ms", "5", "--candidate", *files, *extra])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1


def test_a_file_that_is_not_an_slo_result_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    toml = machine_file(tmp_path, "m", 'rental_price = "1 USD/h"')
    code = main(["plan", "--rate", "9", "--p99-ms", "5", "--candidate", str(bad), str(toml)])
    assert (
        code == 2
        and "not an SLO result written by `workbench slo --json`" in capsys.readouterr().err
    )
