"""Pruning a tree ensemble by usefulness: the trees chosen on data, against the first k."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.errors import TransformError
from workbench.loaders.trees import ensembles, run_onnx
from workbench.optimize.trees import TreePrune


@pytest.fixture(scope="module")
def splits(cancer: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Breast cancer in three seeded parts: fit, select (the usefulness data), held out."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    x, y = cancer
    x_fit, x_test, y_fit, y_test = train_test_split(x, y, test_size=0.5, random_state=0)
    x_fit, x_select, y_fit, _ = train_test_split(x_fit, y_fit, test_size=0.5, random_state=0)
    forest = RandomForestClassifier(30, max_depth=4, max_features=0.3, random_state=2)
    return {"forest": forest.fit(x_fit, y_fit), "select": x_select, "x": x_test, "y": y_test}


def test_useful_trees_beat_the_first_trees_of_a_forest_on_held_out_rows(splits) -> None:
    m = wb.load(splits["forest"])
    x, y = splits["x"], splits["y"]
    full = run_onnx(m, x)[1][:, 1]
    first = run_onnx(wb.transform(m, "tree-prune", trees=5), x)[1][:, 1]
    useful = wb.transform(m, "tree-prune", trees=5, order="useful", data=splits["select"])
    chosen = run_onnx(useful, x)[1][:, 1]
    assert len(useful.recipe["config"]["kept"]) == 5 and useful.recipe["rescaled"] is True
    np.testing.assert_allclose(run_onnx(useful, x)[1].sum(axis=1), 1, atol=1e-5)  # averages
    # closer to the whole forest, and a better Brier score, on rows the selection never saw
    assert np.abs(chosen - full).mean() < np.abs(first - full).mean()
    assert np.mean((chosen - y) ** 2) < np.mean((first - y) ** 2)


def test_useful_order_records_its_trees_and_rebuilds_without_data(cancer, xgb_classifier) -> None:
    x, _ = cancer
    m = wb.load(xgb_classifier)
    useful = wb.transform(m, "tree-prune", trees=4, order="useful", data=x)
    kept = useful.recipe["config"]["kept"]
    assert kept == sorted(kept) and kept[0] == 0  # boosting's first tree carries the most
    assert wb.transform(m, useful.recipe).onnx_bytes == useful.onnx_bytes  # no data needed
    assert next(ensembles(useful.proto)).n_trees == 4
    assert useful.recipe["label"] == "tree-prune(4 trees, useful)"
    # the variant is the booster's own kept trees: each round's margin is base + its tree
    import xgboost

    booster, rows = xgb_classifier.get_booster(), xgboost.DMatrix(x)
    rounds = [
        booster.predict(rows, output_margin=True, iteration_range=(i, i + 1)) for i in range(20)
    ]
    base = (np.sum(rounds, axis=0) - booster.predict(rows, output_margin=True)) / 19
    margin = np.sum([rounds[i] for i in kept], axis=0) - 3 * base
    np.testing.assert_allclose(run_onnx(useful, x)[1][:, 1], 1 / (1 + np.exp(-margin)), atol=1e-5)


def test_useful_order_refuses_what_it_cannot_measure(cancer, forest) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = cancer
    with pytest.raises(TransformError, match="needs data"):
        wb.transform(wb.load(forest), "tree-prune", trees=3, order="useful")
    scaled = make_pipeline(StandardScaler(), forest.__class__(5, max_depth=3, random_state=0))
    with pytest.raises(TransformError, match=r"feeds them from .* use order='first'"):
        wb.transform(wb.load(scaled.fit(x, y)), "tree-prune", trees=2, order="useful", data=x)
    with pytest.raises(TransformError, match="distinct indexes in \\[0, 20\\)"):
        wb.transform(wb.load(forest), TreePrune(kept=(1, 1)))
    with pytest.raises(TransformError, match="order 'first' or 'useful'"):
        wb.transform(wb.load(forest), "tree-prune", order="best")


def test_sweep_puts_useful_pruning_on_the_front_with_the_others(tmp_path: Path, splits) -> None:
    from workbench.store import Store

    data = wb.Dataset.from_arrays(splits["x"], splits["y"])
    table = wb.sweep(
        wb.load(splits["forest"]),
        variants=["baseline", TreePrune(trees=5), TreePrune(trees=5, order="useful")],
        backends=["onnxruntime"],
        data=data,
        calibration=wb.Dataset.from_arrays(splits["select"], np.zeros(len(splits["select"]))),
        metric="roc_auc",
        store=Store(tmp_path / "runs.sqlite"),
        budget_s=0.02,
        options={"threads": 1},
    )
    df = table.df.set_index("variant")
    assert table.failed().empty and df["pareto"].dtype == bool
    assert set(df.index) == {"baseline", "tree-prune(5 trees)", "tree-prune(5 trees, useful)"}
    assert df.loc["tree-prune(5 trees, useful)", "metric_value"] > 0.9


def test_a_sample_model_is_pruned_on_its_own_training_split() -> None:
    m = wb.samples.load("trees-forest")
    implicit = wb.transform(m, "tree-prune", trees=4, order="useful")
    train = wb.samples.dataset("trees-forest", split="train")
    explicit = wb.transform(m, "tree-prune", trees=4, order="useful", data=train)
    assert implicit.recipe["config"]["kept"] == explicit.recipe["config"]["kept"]
    assert implicit.recipe["config"]["kept"] != [0, 1, 2, 3]  # not merely the first trees
