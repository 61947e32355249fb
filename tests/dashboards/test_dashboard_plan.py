"""The Plan page driven by its parameters: it shows `wb.plan`'s plan and what-ifs, and a
refusal (an unreachable target, a bad machine file) is one line with nothing lost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import workbench as wb
from tests.plan.test_plan_fleet import measured
from workbench.dashboards.pages.plan import SHOWN, PlanPage
from workbench.planning import load_machine
from workbench.planning.what_if import electricity_sensitivity, utilization_sensitivity

MACHINES = Path(__file__).resolve().parents[2] / "docs" / "machines"


def loaded_page() -> PlanPage:
    page = PlanPage()
    for name in ("example-rented-cpu.toml", "example-owned-gpu.toml"):
        assert page.add_machine_file(name, (MACHINES / name).read_bytes()) == name[:-5]
    page.add_result(measured(5.0, ("baseline", 500.0)), "cpu run")
    page.add_result(measured(5.0, ("int8", 4000.0)), "gpu run")
    page.pair("cpu run", "example-rented-cpu")
    page.pair("gpu run", "example-owned-gpu")
    return page


def test_the_page_shows_the_plan_wb_plan_makes_and_its_what_ifs() -> None:
    page = loaded_page()
    page.param.update(target_rate_per_s=1000.0, peak_to_average=2.0, growth_per_year=0.3,
                      redundancy=1, years=3)  # fmt: skip
    expected = wb.plan(
        [(load_machine(MACHINES / "example-rented-cpu.toml"), measured(5.0, ("baseline", 500.0))),
         (load_machine(MACHINES / "example-owned-gpu.toml"), measured(5.0, ("int8", 4000.0)))],
        1000.0, 5.0, peak_to_average=2.0, growth_per_year=0.3, redundancy=1, years=3,
    )  # fmt: skip
    assert page.error == ""
    pd.testing.assert_frame_equal(page.plan.table, expected.table)
    pd.testing.assert_frame_equal(page.slot.table.value, expected.table[SHOWN])
    pd.testing.assert_frame_equal(page.electricity.table.value, electricity_sensitivity(expected))
    pd.testing.assert_frame_equal(page.utilization.table.value, utilization_sensitivity(expected))
    # the headline is the plan's choice; the runner-up says why it loses
    assert "cheapest: example-owned-gpu int8 onnxruntime/cpu" in page.summary.object
    assert "example-rented-cpu baseline onnxruntime/cpu: costs" in page.summary.object
    assert "EXAMPLE figures" in page.summary.object  # example prices are never silent
    figure = page.figure.object
    assert [t.name for t in figure.data] == [
        "example-owned-gpu int8 onnxruntime/cpu", "example-rented-cpu baseline onnxruntime/cpu",
    ]  # fmt: skip
    assert figure.layout.title.text.startswith("3-year cost against traffic")


def test_an_unreachable_target_is_one_line_and_nothing_is_lost() -> None:
    page = loaded_page()
    page.max_machines = 2
    page.target_rate_per_s = 50_000.0
    assert page.plan is None and "\n" not in page.error
    assert page.error.startswith("no candidate reaches the design peak of 50,000/s")
    assert page.figure.object.layout.annotations[0].text.startswith("Add a measured result")
    assert len(page.candidates) == 2 and len(page.machines) == 2  # kept
    page.max_machines = None
    assert page.error == "" and page.plan.choice["machines"] == 13  # ceil(50000 / 4000)


def test_bad_economics_and_bad_files_are_refused_in_one_line() -> None:
    page = loaded_page()
    before = page.plan.table
    assert page.add_machine_file("bad.toml", b'name = "x"\nrental_price = "1 USD/month"\n') is None
    assert "rental_price = '1 USD/month' has the wrong unit" in page.error
    assert page.add_result_file("x.json", b'{"p99_ms": 5}') is None
    assert page.error.startswith("x.json: not a `workbench slo --json` file")
    assert page.add_machine_file("x.toml", b"name = ") is None
    assert page.error.startswith("x.toml: not a valid TOML file")
    assert sorted(page.machines) == ["example-owned-gpu", "example-rented-cpu"]
    pd.testing.assert_frame_equal(page.plan.table, before)  # the plan stands
    # typed economics go through the same checks as a file, units included
    page.machine_label.value = "typed"
    page.economics["rental_price"].value = "2 USD/h"
    page.economics["declared_power"].value = "300 USD"
    assert page.add_typed_machine() is None and "declared_power = '300 USD'" in page.error
    page.economics["declared_power"].value = "300 W"
    page.pue.value = 0.9
    assert page.add_typed_machine() is None and "pue must be >= 1" in page.error
    page.pue.value = 1.2
    assert page.add_typed_machine() == "typed" and page.machines["typed"].power_watts == 300
    page.pair("cpu run", "typed")
    assert "typed" in set(page.plan.table["machine"])


def test_an_slo_search_on_the_serving_page_becomes_a_candidate(make_app) -> None:
    app = make_app(start=False)
    first = measured(5.0, ("baseline", 300.0))
    app.serving.slo_result = first
    app.serving.slo_result = measured(5.0, ("baseline", 350.0))
    assert [r for r in app.plan.results.values()] == [first, app.serving.slo_result]
    assert app.tab_pages[-1] == "plan"


def test_stored_slo_records_are_offered_with_where_they_were_measured(tmp_path: Path) -> None:
    from dataclasses import replace

    from workbench.dashboards.state import AppState
    from workbench.planning.records import save_result
    from workbench.scenarios.result import machine_record
    from workbench.store import Store

    store = Store(tmp_path / "runs.sqlite")
    run = replace(measured(5.0, ("baseline", 500.0), model="digits-mlp"), machine=machine_record())
    save_result(run, store)
    page = PlanPage(state=AppState("digits-mlp", store=store, start=False))
    assert page.add_stored() == 1
    (name,) = page.results
    assert name.startswith(f"digits-mlp p99<=5 ms on {machine_record()['name']} (here, record")
    back = page.results[name].table
    assert list(back["max_rate_per_s"]) == [500.0] and page.results[name].model == "digits-mlp"
    assert PlanPage(state=AppState("digits-mlp", start=False)).add_stored() == 0  # no store


def test_an_uploaded_generation_profile_plans_in_tokens() -> None:
    from tests.plan.test_plan_fleet import generation

    page = PlanPage()
    page.add_machine_file("m.toml", (MACHINES / "example-rented-cpu.toml").read_bytes())
    profile = generation(20.0, (20.0,) * 12)  # batch 4 at a 20 ms TPOT: 200 tokens/s
    assert page.add_result_file("gen.json", profile.to_json().encode()) == "gen.json"
    page.param.update(target_rate_per_s=500.0, p99_ms=30.0)
    page.pair()
    assert page.plan.unit == "tokens" and page.plan.choice["machines"] == 3
    assert "per 1M tokens" in page.summary.object
    assert page.figure.object.layout.xaxis.title.text == "average traffic (tokens/s)"
