"""The layer table's shares and unattributed row, and `attribution`, against known times.

Real profiles cannot check these numbers (they are derived from each other), so the
timings here are made by hand: medians, the sum of the layers, the gap to the end-to-end
time and every share are known before the code runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.backends.base import LayerTiming
from workbench.model import Model
from workbench.profiling.layers import attribution, profile_layers
from workbench.profiling.profile import Profile
from workbench.profiling.table import UNATTRIBUTED, layer_table
from workbench.profiling.timer import Measurement
from workbench.testing import toy_mlp

# medians 1.0 (conv) and 3.0 (fc); relu is fused into conv and takes no time of its own
TIMINGS = [
    LayerTiming("block", "Sequential", (4.5, 3.5, 4.0), {"scope": "container"}),
    LayerTiming("conv", "Conv", (1.2, 0.8, 1.0), {"scope": "leaf", "parent": "block"}),
    LayerTiming("relu", "Relu", (0.0, 0.0, 0.0), {"scope": "leaf", "parent": "block",
                                                  "fused_into": "conv"}),
    LayerTiming("fc", "Gemm", (2.0, 4.0, 3.0), {"scope": "leaf", "parent": "block",
                                                "kernels": ["fc_quant:QGemm"]}),
]  # fmt: skip


def _profile(end_to_end_ms: float, view: str = "leaves") -> Profile:
    latency = Measurement((end_to_end_ms,) * 3)
    table = layer_table(TIMINGS, latency.median, view)
    return Profile("m", "fake", "cpu", 1, latency, layers=table)


def test_gap_shares_and_attribution_match_the_known_times() -> None:
    p = _profile(5.0)
    rows = p.layers.set_index("layer")
    assert list(rows.index) == ["conv", "relu", "fc", UNATTRIBUTED]  # the container is not a leaf
    assert rows.loc[["conv", "relu", "fc"], "latency_ms"].tolist() == [1.0, 0.0, 3.0]
    assert rows.loc[UNATTRIBUTED, "latency_ms"] == pytest.approx(1.0)  # 5 - (1 + 3)
    assert rows.loc[["conv", "fc"], "share"].tolist() == pytest.approx([0.25, 0.75])
    assert rows.loc["fc", "kernels"] == "QGemm" and rows.loc["conv", "kernels"] is None
    assert attribution(p) == pytest.approx(
        {"layers_sum_ms": 4.0, "end_to_end_ms": 5.0, "ratio": 0.8}
    )


def test_instrumentation_that_inflates_layers_gives_a_negative_gap() -> None:
    p = _profile(3.2)
    assert p.layers.set_index("layer").loc[UNATTRIBUTED, "latency_ms"] == pytest.approx(-0.8)
    assert attribution(p)["ratio"] == pytest.approx(4.0 / 3.2)


def test_containers_view_shares_are_of_the_top_level_total() -> None:
    rows = _profile(5.0, view="containers").layers.set_index("layer")
    assert rows.loc["block", "latency_ms"] == 4.0 and rows.loc["block", "share"] == 1.0
    # nested rows are not summed again: the gap is to the container's 4 ms, not 8 ms
    assert rows.loc[UNATTRIBUTED, "latency_ms"] == pytest.approx(1.0)
    assert rows.loc[["conv", "fc"], "share"].tolist() == pytest.approx([0.25, 0.75])


class _HandTimings:
    """A session whose per-layer pass returns the given timings (the model runs for real)."""

    backend, device = "hand", "cpu"

    def __init__(self, model: Model, timings: list[LayerTiming]) -> None:
        self.model, self.timings = model, timings

    def run(self, inputs: object) -> list[np.ndarray]:
        return [np.zeros(1)]

    def layer_methods(self) -> dict[str, object]:
        return {"default": lambda inputs, repeats: list(self.timings)}


@pytest.mark.parametrize("missing", [0, 8, 9])
def test_layers_without_timings_are_named_in_a_note(missing: int) -> None:
    model = toy_mlp()
    timings = [LayerTiming("0", "Linear", (1.0, 1.0))]  # toy_mlp's first layer, 8 -> 16
    timings += [LayerTiming(f"never{i}", "Relu", ()) for i in range(missing)]
    session = _HandTimings(model, timings)
    found = profile_layers(session, model.example_inputs(2), 2.0, 2, roofline=False)
    notes = [n for n in found.notes if "have no timing" in n]
    if not missing:
        assert notes == []
        first = found.layers.set_index("layer").loc["0"]
        assert first["flops"] == 2 * 2 * 8 * 16  # batch 2, one multiply-add per weight
        assert first["bytes"] >= (8 * 16 + 16) * 4  # at least its float32 weights are read
        assert first["intensity"] == pytest.approx(first["flops"] / first["bytes"])
        return
    (note,) = notes
    assert note.startswith(f"{missing} layer(s) have no timing")
    assert "never7" in note and "never8" not in note  # the first eight are named
    assert note.endswith("…") == (missing > 8)  # and an ellipsis says there are more


def test_attribution_without_layer_times_is_unknown_not_an_error() -> None:
    latency = Measurement((2.0, 2.0, 2.0))
    for layers in (pd.DataFrame(columns=["layer", "latency_ms"]), pd.DataFrame({"layer": ["a"]})):
        numbers = attribution(Profile("m", "hand", "cpu", 1, latency, layers=layers))
        assert numbers["end_to_end_ms"] == 2.0
        assert math.isnan(numbers["layers_sum_ms"]) and math.isnan(numbers["ratio"])
