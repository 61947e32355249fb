"""Train the ``dlrm`` recommendation sample, deterministically, on CPU (a few minutes).

Usage::

    python sample_models/dlrm_train.py
    python sample_models/dlrm_train.py --export-only   # model.onnx from the saved weights

No downloads: the data is the seeded click log of ``workbench.loaders.rec_data`` (13
dense features, 8 sparse features with tables of 3 to 20,000 rows, Zipf-popular ids,
bags of 2; 60,000 training and 20,000 held-out samples). The last ``VALIDATION`` samples
of the training split are held back: after every epoch the model is scored on them, and
the weights of the epoch with the lowest validation log loss are kept (training stops
``PATIENCE`` epochs after it). Tables are ``EMBEDDING_DIM`` (64) wide, start near zero
(an id seen too rarely to learn stays near a zero vector, which the dot interaction reads
as "no information", instead of a unit-variance random vector that it reads as signal)
and learn by Adagrad, as DLRM's do; the MLPs by Adam.

Writes ``sample_models/dlrm/``: ``weights.safetensors``, ``model.onnx`` (workbench's export:
each ``nn.EmbeddingBag`` as Gather + ReduceSum, see docs/recommendation.md) and
``card.json`` (held-out ROC-AUC and log loss, those of the generator's true
probabilities, the best any model can do, and each epoch's validation log loss).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

MAX_EPOCHS = 20
PATIENCE = 2
BATCH = 256
SEED = 0
VALIDATION = 6_000
MLP_LR = 0.01
TABLE_LR = 0.0025
TABLE_INIT_STD = 0.01


def main() -> None:
    import torch
    from safetensors.torch import save_file
    from sklearn.metrics import log_loss, roc_auc_score

    from workbench.loaders.rec_archs import DLRM, EMBEDDING_DIM
    from workbench.loaders.rec_data import TABLE_ROWS, click_log

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    log, test = click_log("train", SEED), click_log("test", SEED)
    fit = len(log.labels) - VALIDATION
    model = DLRM()
    history = train(model, _tensors(log, slice(0, fit)), _tensors(log, slice(fit, None)))
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
    pairs = (len(TABLE_ROWS) + 1) * len(TABLE_ROWS) // 2
    best = int(np.argmin(history)) + 1
    card = {
        "name": "dlrm",
        "description": f"DLRM-style click model: bottom MLP 13-32-{EMBEDDING_DIM}, "
        f"{len(TABLE_ROWS)} EmbeddingBag tables (sum, width {EMBEDDING_DIM}), pairwise dot "
        f"interaction, top MLP {EMBEDDING_DIM + pairs}-32-1",
        "dataset": "clicks",
        "task": "binary click prediction (logit output)",
        "table_rows": list(TABLE_ROWS),
        "embedding_dim": EMBEDDING_DIM,
        "bag_size": int(test.ids.shape[2]),
        "parameters": int(params),
        "table_bytes": int(sum(t.weight.numel() * 4 for t in model.tables)),
        "n_train": fit,
        "n_validation": VALIDATION,
        "n_test": len(test.labels),
        "epochs": best,
        "batch_size": BATCH,
        "seed": SEED,
        "optimizer": f"tables Adagrad lr {TABLE_LR} (init N(0, {TABLE_INIT_STD}^2)), "
        f"MLPs Adam lr {MLP_LR}; the epoch of least validation log loss kept, "
        f"patience {PATIENCE}, at most {MAX_EPOCHS}",
        "validation_log_loss": [round(v, 6) for v in history],
        "test_roc_auc": round(float(roc_auc_score(test.labels, prob)), 6),
        "test_log_loss": round(float(log_loss(test.labels, prob)), 6),
        "oracle_roc_auc": round(float(roc_auc_score(test.labels, test.probability)), 6),
        "oracle_log_loss": round(float(log_loss(test.labels, test.probability)), 6),
        "torch_version": torch.__version__.split("+")[0],
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    export(folder)


def _tensors(log: Any, rows: slice) -> tuple[Any, Any, Any]:
    """Dense features, ids and float labels of ``rows`` of a click log, as tensors."""
    import torch

    return (
        torch.from_numpy(log.dense[rows]),
        torch.from_numpy(log.ids[rows]),
        torch.from_numpy(log.labels[rows]).float(),
    )


def train(model: Any, fit: tuple[Any, Any, Any], validation: tuple[Any, Any, Any]) -> list[float]:
    """Train ``model`` in place on ``fit``, keep the epoch of least validation log loss.

    Returns each epoch's validation log loss (the model holds the best epoch's weights).
    """
    import torch

    tables = [p for name, p in model.named_parameters() if name.startswith("tables.")]
    mlps = [p for name, p in model.named_parameters() if not name.startswith("tables.")]
    with torch.no_grad():
        for weight in tables:
            weight.normal_(0.0, TABLE_INIT_STD)
    optimizers = [
        torch.optim.Adagrad(tables, lr=TABLE_LR),
        torch.optim.Adam(mlps, lr=MLP_LR),
    ]
    loss_fn = torch.nn.BCEWithLogitsLoss()
    dense, ids, labels = fit
    order = torch.Generator().manual_seed(SEED)
    history: list[float] = []
    best: dict[str, Any] = {}
    for epoch in range(MAX_EPOCHS):
        model.train()
        for batch in torch.randperm(len(labels), generator=order).split(BATCH):
            for optimizer in optimizers:
                optimizer.zero_grad()
            logits = model(dense[batch], *ids[batch].unbind(1))
            loss_fn(logits[:, 0], labels[batch]).backward()
            for optimizer in optimizers:
                optimizer.step()
        model.eval()
        with torch.inference_mode():
            logits = model(validation[0], *validation[1].unbind(1))
            history.append(float(loss_fn(logits[:, 0], validation[2])))
        print(f"epoch {epoch + 1}: validation log loss {history[-1]:.6f}", flush=True)
        if history[-1] == min(history):
            best = copy.deepcopy(model.state_dict())
        elif len(history) - 1 - int(np.argmin(history)) >= PATIENCE:
            break
    model.load_state_dict(best)
    return history


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
