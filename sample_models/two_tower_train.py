"""Train the ``two-tower`` retrieval sample, deterministically, on CPU (well under a minute).

Usage::

    python sample_models/two_tower_train.py
    python sample_models/two_tower_train.py --export-only   # model.onnx from the saved weights

No downloads: the data is the seeded ``interactions`` of ``workbench.loaders.rec_data``
(2,000 items, 12,000 training and 3,000 held-out users, each with a region, an age group,
10 items in their history and 5 held-out next items). The model (`TwoTower`) learns with
a full softmax over the items: each held-out item of a training user is a target, the
history items are masked. Writes ``sample_models/two-tower/``: ``weights.safetensors``,
``model.onnx`` and ``card.json`` with held-out recall@10 and recall@50 of the model, of a
popularity ranking (items by how often training users chose them) and of the
generator's true preferences (the best any model can do), all with the history masked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

EPOCHS = 12
BATCH = 256
SEED = 0
NAME = "two-tower"


def main() -> None:
    import torch
    from safetensors.torch import save_file

    from workbench.evaluation.ranking import recall_at_k
    from workbench.loaders.rec_archs import TwoTower
    from workbench.loaders.rec_data import ITEMS, interactions

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    train, test = interactions("train", SEED), interactions("test", SEED)
    model = TwoTower()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-6)
    region, age = torch.from_numpy(train.region), torch.from_numpy(train.age)
    history, targets = torch.from_numpy(train.history), torch.from_numpy(train.held_out)
    order = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(region), generator=order).split(BATCH):
            optimizer.zero_grad()
            scores = model(region[batch], age[batch], history[batch])["scores"]
            loss = -torch.log_softmax(scores, dim=1).gather(1, targets[batch]).mean()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: last batch loss {loss.item():.4f}", flush=True)
    model.eval()
    with torch.inference_mode():
        inputs = (torch.from_numpy(a) for a in (test.region, test.age, test.history))
        scores = model(*inputs)["scores"].numpy()
    chosen = np.concatenate([train.history.ravel(), train.held_out.ravel()])
    popularity = np.tile(np.bincount(chosen, minlength=ITEMS).astype(np.float32), (len(scores), 1))
    truth = test.affinity.copy()
    for ranking in (popularity, truth):
        np.put_along_axis(ranking, test.history, -np.inf, axis=1)
    folder = HERE / NAME
    folder.mkdir(exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "weights.safetensors"),
    )
    card: dict[str, object] = {
        "name": NAME,
        "description": "two-tower retrieval: user tower (region 30x16, age 8x8, history "
        "EmbeddingBag 2000x32 mean, MLP 56-64-32), item tower (table 2000x32, Linear 32-32); "
        "scores = dot products with every item, the history's items set to -inf",
        "dataset": "interactions",
        "task": "retrieval (scores over all items; labels: the held-out items' ids)",
        "items": ITEMS,
        "history": int(test.history.shape[1]),
        "held_out": int(test.held_out.shape[1]),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "n_train": len(train.region),
        "n_test": len(test.region),
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "seed": SEED,
    }
    for k in (10, 50):
        metric = recall_at_k(k)
        card[f"test_recall@{k}"] = round(metric(scores, test.held_out), 6)
        card[f"popularity_recall@{k}"] = round(metric(popularity, test.held_out), 6)
        card[f"oracle_recall@{k}"] = round(metric(truth, test.held_out), 6)
    card["torch_version"] = torch.__version__.split("+")[0]
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
    inputs, _ = next(iter(rec_samples.dataset(NAME, "test", batch_size=512)))
    session = wb.backend("onnxruntime").compile(exported, "cpu")
    ort_scores = session.run(inputs)[0]
    session.close()
    with torch.inference_mode():
        scores = loaded.module(*(torch.from_numpy(v) for v in inputs.values()))["scores"].numpy()
    finite = np.isfinite(scores)
    card["export_check"] = {
        "rows": 512,
        "max_abs_diff": float(np.abs(ort_scores[finite] - scores[finite]).max()),
        "same_masked_items": bool((np.isfinite(ort_scores) == finite).all()),
        "ops": sorted({n.op_type for n in exported.proto.graph.node}),
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--export-only"]:  # the committed weights, exported again
        export(HERE / NAME)
    else:
        main()
