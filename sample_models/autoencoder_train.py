"""Train the ``anomaly-autoencoder`` sample, deterministically, on CPU (well under a minute).

Usage::

    python sample_models/autoencoder_train.py
    python sample_models/autoencoder_train.py --export-only   # model.onnx from the saved weights

No downloads: the data is the seeded ``readings`` of ``workbench.loaders.rec_data`` (24
sensors driven by 4 hidden causes; 3% injected anomalies, 2 to 6 sensors replaced by
independent draws; 10,000 training, 2,000 validation and 2,000 test rows). The
autoencoder (`AnomalyAutoencoder`, 24-32-4-32-24) learns to reconstruct the training
split as it comes, anomalies included and unlabelled (as in practice); its score is the
mean squared reconstruction error. The threshold of its ``label`` output is the one with
the best F1 on the validation split. Writes ``sample_models/anomaly-autoencoder/``:
``weights.safetensors`` (the threshold included), ``model.onnx`` and ``card.json`` with
held-out ROC-AUC and F1 at that threshold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

EPOCHS = 40
BATCH = 128
SEED = 0
NAME = "anomaly-autoencoder"


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold (``score > threshold`` flags) with the best F1 on these rows."""
    order = np.argsort(-scores)
    hits = np.cumsum(labels[order] == 1)  # true positives when flagging the top i + 1
    f1 = 2.0 * hits / (np.arange(1, len(scores) + 1) + int((labels == 1).sum()))
    best = int(np.argmax(f1))
    # halfway to the next score, so the flagged set does not hang on float ties
    below = scores[order[best + 1]] if best + 1 < len(order) else scores[order[best]] - 1.0
    return float((scores[order[best]] + below) / 2.0)


def main() -> None:
    import torch
    from safetensors.torch import save_file

    from workbench.evaluation.tabular import f1, roc_auc
    from workbench.loaders.rec_archs import AnomalyAutoencoder
    from workbench.loaders.rec_data import ANOMALY_RATE, sensor_readings

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    train = sensor_readings("train", SEED)
    model = AnomalyAutoencoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(train.x)
    order = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(x), generator=order).split(BATCH):
            optimizer.zero_grad()
            loss = model(x[batch])["scores"].mean()
            loss.backward()
            optimizer.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1}: last batch loss {loss.item():.5f}", flush=True)
    model.eval()

    def scored(split: str) -> tuple[np.ndarray, np.ndarray]:
        readings = sensor_readings(split, SEED)
        with torch.inference_mode():
            return model(torch.from_numpy(readings.x))["scores"].numpy(), readings.labels

    validation, test = scored("validation"), scored("test")
    model.threshold.fill_(best_threshold(*validation))

    def flags(scores: np.ndarray) -> np.ndarray:
        return (scores > model.threshold.item()).astype(np.int64)

    flagged = flags(test[0])
    folder = HERE / NAME
    folder.mkdir(exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "weights.safetensors"),
    )
    card = {
        "name": NAME,
        "description": "MLP autoencoder 24-32-4-32-24; score = mean squared reconstruction "
        "error, label = score > threshold (chosen for the best F1 on the validation split)",
        "dataset": "readings",
        "task": "anomaly (scores: higher is more anomalous; label: 1 = anomaly)",
        "features": int(train.x.shape[1]),
        "anomaly_rate": ANOMALY_RATE,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "n_train": len(train.labels),
        "n_validation": len(validation[1]),
        "n_test": len(test[1]),
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "seed": SEED,
        "threshold": float(model.threshold.item()),
        "validation_f1": round(f1(flags(validation[0]), validation[1]), 6),
        "test_roc_auc": round(roc_auc(test[0], test[1]), 6),
        "test_f1": round(f1(flagged, test[1]), 6),
        "test_precision": round(float(test[1][flagged == 1].mean()), 6),
        "test_recall": round(float(flagged[test[1] == 1].mean()), 6),
        "test_anomalies": int(test[1].sum()),
        "torch_version": torch.__version__.split("+")[0],
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    export(folder)


def export(folder: Path) -> None:
    """Write ``model.onnx`` from the saved weights and record ORT's agreement with torch."""
    import torch

    import workbench as wb
    from workbench.loaders import rec_samples

    card = json.loads((folder / "card.json").read_text())
    onnx_path = folder / "model.onnx"
    onnx_path.unlink(missing_ok=True)
    loaded = rec_samples.load(HERE, NAME)
    exported = loaded.to_onnx(onnx_path)
    inputs, _ = next(iter(rec_samples.dataset(NAME, "test", batch_size=2000)))
    session = wb.backend("onnxruntime").compile(exported, "cpu")
    ort_scores, ort_label = session.run(inputs)
    session.close()
    with torch.inference_mode():
        out = loaded.module(torch.from_numpy(inputs["x"]))
    card["export_check"] = {
        "rows": len(ort_scores),
        "max_abs_diff": float(np.abs(ort_scores - out["scores"].numpy()).max()),
        "labels_equal": bool((ort_label == out["label"].numpy()).all()),
        "outputs": [spec.name for spec in exported.outputs],
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--export-only"]:  # the committed weights, exported again
        export(HERE / NAME)
    else:
        main()
