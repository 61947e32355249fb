"""The Devices page's runtime comparison, driven through its parameters with fake children."""

from __future__ import annotations

from typing import Any

import workbench as wb
from workbench.dashboards.pages.runtimes import RuntimesView


def fake_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Every runtime answers 1 ms per item, compiled in 0.1 s."""
    ms = float(spec["batch_size"])
    return {
        "measurement": wb.Measurement((ms, ms, ms)).to_dict(),
        "startup": {"compile_s": 0.1, "first_inference_ms": 2 * ms, "runtime_bytes": 2**20},
    }


def test_devices_page_compares_the_runtimes_of_the_picked_model(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("digits-mlp")
    assert isinstance(app.devices.runtimes, RuntimesView)
    view = RuntimesView(state=app.state, launcher=fake_child, rounds=1)
    view.__panel__()
    view.batch_sizes = [1, 8]
    view.run()
    view.jobs.wait()
    assert view.jobs.error == ""
    result = view.result
    assert result is not None and result.model == "digits-mlp"
    assert result.batch_sizes == (1, 8)
    assert app.state.backend in set(result.table["backend"])
    assert len(view.table.value) == len(result.table)
    assert view.table.value["throughput_per_s"].max() == 1000.0
    assert [t.name for t in view.figure.object.data][:2] == ["batch 1", "batch 8"]
    assert "best of each column" in view.summary.object
