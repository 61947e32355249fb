"""Train the tree-ensemble samples shipped with workbench, deterministically, on CPU.

Usage::

    python sample_models/trees_train.py                  # all three
    python sample_models/trees_train.py trees-forest     # some of them

No downloads. Data, features min-max scaled to [0, 1] on the training split (so the
uniform [0, 1) inputs of ``Model.example_inputs`` fall inside the trees' ranges):

- ``tabular``: ``make_classification`` (seed 0; 12,000 rows, 30 features of which 12
  informative and 6 redundant, 3% flipped labels, 75/25 stratified split): a gradient-
  boosting problem hard enough that every one of hundreds of trees keeps splitting.
- ``breast-cancer``: scikit-learn's bundled Wisconsin table (569 rows, 30 features).
- ``anomalies``: 8 correlated Gaussian features (seed 0; 4,000 normal rows) with 3%
  injected anomalies (rows pushed 4-7 standard deviations out along random directions);
  label 1 marks an anomaly.

Samples, each in ``sample_models/<name>/``: ``model.onnx`` (the conversion workbench
loads), ``card.json`` (what it is, held-out metrics, converter versions) and, where the
library has a format that runs no code, its own file (XGBoost ``model.ubj``):

- ``trees-gbm``: XGBoost, 300 trees of depth 5, on ``tabular``;
- ``trees-forest``: scikit-learn random forest, 100 trees of depth 8, on ``breast-cancer``;
- ``trees-anomaly``: scikit-learn IsolationForest, 200 trees, on ``anomalies``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

SEED = 0


def _split(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(y)), test_size=0.25, random_state=SEED, stratify=y)
    low, high = x[train].min(axis=0), x[train].max(axis=0)
    scaled = (x - low) / np.where(high > low, high - low, 1.0)
    return {
        "x": scaled.astype(np.float32),
        "y": y.astype(np.int64),
        "train_idx": np.sort(train),
        "test_idx": np.sort(test),
    }


def tabular() -> dict[str, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=12_000, n_features=30, n_informative=12, n_redundant=6, flip_y=0.03,
        class_sep=0.8, random_state=SEED,
    )  # fmt: skip
    return _split(x, y)


def breast_cancer() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return _split(x, y)


def anomalies() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    mix = rng.normal(size=(8, 8))
    normal = rng.normal(size=(4_000, 8)) @ mix
    n_out = int(0.03 * len(normal))
    direction = rng.normal(size=(n_out, 8))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    scale = normal.std(axis=0) * rng.uniform(4, 7, size=(n_out, 1))
    outliers = normal[rng.integers(0, len(normal), n_out)] + direction * scale
    x = np.concatenate([normal, outliers])
    y = np.concatenate([np.zeros(len(normal)), np.ones(n_out)])
    order = rng.permutation(len(y))
    return _split(x[order], y[order])


DATASETS = {"tabular": tabular, "breast-cancer": breast_cancer, "anomalies": anomalies}


def _classifier_metrics(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    return {
        "test_accuracy": round(float(accuracy_score(y, proba.argmax(axis=1))), 6),
        "test_roc_auc": round(float(roc_auc_score(y, proba[:, 1])), 6),
        "test_log_loss": round(float(log_loss(y, proba)), 6),
    }


def train(name: str, data: dict[str, np.ndarray]) -> tuple[Any, dict[str, Any]]:
    x_train, y_train = data["x"][data["train_idx"]], data["y"][data["train_idx"]]
    x_test, y_test = data["x"][data["test_idx"]], data["y"][data["test_idx"]]
    if name == "trees-gbm":
        import xgboost as xgb

        params = {"n_estimators": 300, "max_depth": 5, "learning_rate": 0.05,
                  "subsample": 0.8, "random_state": SEED, "n_jobs": 2}  # fmt: skip
        model = xgb.XGBClassifier(**params).fit(x_train, y_train)
        return model, {**params, **_classifier_metrics(model.predict_proba(x_test), y_test)}
    if name == "trees-forest":
        from sklearn.ensemble import RandomForestClassifier

        params = {"n_estimators": 100, "max_depth": 8, "random_state": SEED, "n_jobs": 2}
        model = RandomForestClassifier(**params).fit(x_train, y_train)
        return model, {**params, **_classifier_metrics(model.predict_proba(x_test), y_test)}
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score, roc_auc_score

    params = {"n_estimators": 200, "contamination": 0.03, "random_state": SEED}
    model = IsolationForest(**params).fit(x_train)
    score = -model.decision_function(x_test)  # higher: more anomalous
    flagged = model.predict(x_test) == -1
    return model, {
        **params,
        "test_roc_auc": round(float(roc_auc_score(y_test, score)), 6),
        "test_average_precision": round(float(average_precision_score(y_test, score)), 6),
        "test_recall_at_contamination": round(float(flagged[y_test == 1].mean()), 6),
        "test_false_alarm_rate": round(float(flagged[y_test == 0].mean()), 6),
    }


SAMPLES = {
    "trees-gbm": ("tabular", "XGBoost gradient-boosted trees (300 trees, depth 5)"),
    "trees-forest": ("breast-cancer", "scikit-learn random forest (100 trees, depth 8)"),
    "trees-anomaly": ("anomalies", "scikit-learn IsolationForest (200 trees)"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"samples to train (default all: {list(SAMPLES)})")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(SAMPLES)
    if unknown:
        parser.error(f"unknown sample(s) {sorted(unknown)}; choose from {list(SAMPLES)}")
    args.names = args.names or list(SAMPLES)
    import workbench as wb
    from workbench.loaders.trees import ensembles

    for dataset, make in DATASETS.items():
        path = HERE / dataset / f"{dataset}.npz"
        path.parent.mkdir(exist_ok=True)
        np.savez_compressed(path, **make())
    for name in args.names:
        dataset, description = SAMPLES[name]
        with np.load(HERE / dataset / f"{dataset}.npz") as arrays:
            data = dict(arrays)
        estimator, facts = train(name, data)
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        model = wb.load(estimator, example_inputs=data["x"][data["test_idx"]], name=name)
        (folder / "model.onnx").write_bytes(model.onnx_bytes)
        if name == "trees-gbm":
            estimator.get_booster().save_model(str(folder / "model.ubj"))
        trees = list(ensembles(model.proto))
        card = {
            "name": name,
            "description": description,
            "dataset": dataset,
            "task": model.metadata["trees"]["task"],
            "library": model.metadata["trees"]["library"],
            "library_version": model.metadata["trees"]["library_version"],
            "estimator": model.metadata["trees"]["estimator"],
            "converter": model.metadata["trees"]["converter"],
            "conversion_check": model.metadata["trees"]["check"],
            "trees": sum(t.n_trees for t in trees),
            "nodes": sum(t.n_nodes for t in trees),
            "max_depth": max(t.max_depth for t in trees),
            "n_train": len(data["train_idx"]),
            "n_test": len(data["test_idx"]),
            "features": int(data["x"].shape[1]),
            **facts,
            "trained": dt.date.today().isoformat(),
            "recipe": "python sample_models/trees_train.py " + name,
        }
        (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        print(name, {k: v for k, v in card.items() if k.startswith("test_")})


if __name__ == "__main__":
    main()
