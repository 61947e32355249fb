"""A profile's per-layer table shows each embedding table's rows, width, lookups and the
bytes its batch touched, on torch and on ONNX Runtime, under the same layer names."""

from __future__ import annotations

import pytest

import workbench as wb


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_dlrm_profile_lists_its_tables(backend: str) -> None:
    model = wb.samples.load("dlrm")
    inputs = model.example_inputs(256, ids="zipf")
    p = wb.profile(model, backend, inputs=inputs, layer_repeats=2, budget_s=0.2, warmup=1)
    table = p.layers.set_index("layer")
    big = table.loc["tables.7"]
    assert (big["table_rows"], big["table_width"], big["lookups"]) == (20_000, 64, 512)
    # Zipf ids touch a few hundred rows: the bytes are those rows, not the 5 MB table
    assert big["bytes_touched"] == big["unique_rows"] * 64 * 4
    assert big["unique_rows"] < 512
    assert big["bytes"] < big["params_bytes"] / 4
    assert table.loc["top.0", "table_rows"] != table.loc["top.0", "table_rows"]  # NaN: no table
