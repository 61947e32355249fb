"""The dlrm sample: listed, loads, its committed ONNX runs as Gather + ReduceSum and
agrees with torch, and it scores the held-out clicks as its card says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.errors import WorkbenchError


def test_dlrm_sample_loads_scores_and_exports_fast() -> None:
    from sklearn.metrics import roc_auc_score

    assert wb.samples.names("recommendation") == ["dlrm", "two-tower"]
    assert "dlrm" in wb.samples.names()
    model = wb.samples.load("dlrm")
    card = model.metadata["card"]
    data = wb.samples.dataset("dlrm", split="test", batch_size=4096)
    assert data.num_samples == card["n_test"]
    assert model.index_bounds()["ids_7"] == card["table_rows"][7]

    module = model.module
    assert module is not None
    logits = []
    with torch.inference_mode():
        for inputs, _ in data:
            logits.append(module(*(torch.from_numpy(v) for v in inputs.values()))[:, 0].numpy())
    auc = roc_auc_score(data.labels, np.concatenate(logits))
    assert auc == pytest.approx(card["test_roc_auc"], abs=1e-4)
    assert auc > 0.75  # the generator's structure was learned (chance is 0.5)

    exported = model.to_onnx()
    ops = {node.op_type for node in exported.proto.graph.node}
    assert "Loop" not in ops and "ReduceSum" in ops
    batch = next(iter(data.with_batch_size(256)))[0]
    session = wb.backend("onnxruntime").compile(exported, "cpu")
    try:
        np.testing.assert_allclose(session.run(batch)[0][:, 0], logits[0][:256], atol=1e-4)
    finally:
        session.close()


def test_unknown_recommendation_split_is_one_line() -> None:
    with pytest.raises(WorkbenchError, match="unknown split 'all'"):
        wb.samples.dataset("dlrm", split="all")
