"""Train the ``dlrm`` recommendation sample, deterministically, on CPU (about a minute).

Usage::

    python sample_models/dlrm_train.py
    python sample_models/dlrm_train.py --export-only   # model.onnx from the saved weights

No downloads: the data is the seeded click log of ``workbench.loaders.rec_data`` (13
dense features, 8 sparse features with tables of 3 to 20,000 rows, Zipf-popular ids,
bags of 2; 60,000 training and 20,000 held-out samples). Writes ``sample_models/dlrm/``:
``weights.safetensors``, ``model.onnx`` (workbench's export: each ``nn.EmbeddingBag`` as
Gather + ReduceSum, see docs/recommendation.md) and ``card.json`` (held-out ROC-AUC and
log loss, and those of the generator's true probabilities, the best any model can do).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

EPOCHS = 6
BATCH = 256
SEED = 0


def main() -> None:
    import torch
    from safetensors.torch import save_file
    from sklearn.metrics import log_loss, roc_auc_score

    from workbench.loaders.rec_archs import DLRM
    from workbench.loaders.rec_data import TABLE_ROWS, click_log

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    train, test = click_log("train", SEED), click_log("test", SEED)
    model = DLRM()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-6)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    dense, ids = torch.from_numpy(train.dense), torch.from_numpy(train.ids)
    labels = torch.from_numpy(train.labels).float()
    order = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(labels), generator=order).split(BATCH):
            optimizer.zero_grad()
            logits = model(dense[batch], *ids[batch].unbind(1))
            loss = loss_fn(logits[:, 0], labels[batch])
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: last batch loss {loss.item():.4f}", flush=True)
    model.eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(test.dense), *torch.from_numpy(test.ids).unbind(1))
    prob = torch.sigmoid(logits[:, 0]).numpy().astype(np.float64)
    folder = HERE / "dlrm"
    folder.mkdir(exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "weights.safetensors"),
    )
    params = sum(p.numel() for p in model.parameters())
    card = {
        "name": "dlrm",
        "description": "DLRM-style click model: bottom MLP 13-32-8, 8 EmbeddingBag tables "
        "(sum, width 8), pairwise dot interaction, top MLP 44-32-1",
        "dataset": "clicks",
        "task": "binary click prediction (logit output)",
        "table_rows": list(TABLE_ROWS),
        "embedding_dim": 8,
        "bag_size": int(test.ids.shape[2]),
        "parameters": int(params),
        "table_bytes": int(sum(t.weight.numel() * 4 for t in model.tables)),
        "n_train": len(train.labels),
        "n_test": len(test.labels),
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "seed": SEED,
        "test_roc_auc": round(float(roc_auc_score(test.labels, prob)), 6),
        "test_log_loss": round(float(log_loss(test.labels, prob)), 6),
        "oracle_roc_auc": round(float(roc_auc_score(test.labels, test.probability)), 6),
        "oracle_log_loss": round(float(log_loss(test.labels, test.probability)), 6),
        "torch_version": torch.__version__.split("+")[0],
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    export(folder)


def export(folder: Path) -> None:
    """Write ``model.onnx`` from the saved weights and record ORT's agreement with torch."""
    import torch

    import workbench as wb
    from workbench.loaders import rec_samples
    from workbench.loaders.rec_data import click_log

    card = json.loads((folder / "card.json").read_text())
    test = click_log("test", SEED)
    onnx_path = folder / "model.onnx"
    onnx_path.unlink(missing_ok=True)
    loaded = rec_samples.load(HERE, "dlrm")
    exported = loaded.to_onnx(onnx_path)
    check = test.dense[:512], test.ids[:512]
    inputs = rec_samples.inputs_of(*check)
    session = wb.backend("onnxruntime").compile(exported, "cpu")
    ort_logits = session.run(inputs)[0]
    session.close()
    with torch.inference_mode():
        logits = loaded.module(*(torch.from_numpy(v) for v in inputs.values()))
    diff = float(np.abs(ort_logits[:, 0] - logits[:, 0].numpy()).max())
    card["export_check"] = {
        "rows": 512,
        "max_abs_diff": diff,
        "ops": sorted({n.op_type for n in exported.proto.graph.node}),
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--export-only"]:  # the committed weights, exported again
        export(HERE / "dlrm")
    else:
        main()
