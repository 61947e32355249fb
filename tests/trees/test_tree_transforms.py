"""Tree transforms: new models with recipes, checked against the libraries' own answers."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.errors import TransformError
from workbench.loaders.trees import ensembles, run_onnx
from workbench.optimize.base import config_from_dict, config_to_dict
from workbench.optimize.trees import TreeDepth, TreePrune, TreeThresholds


@pytest.mark.parametrize(
    "config", [TreeThresholds(bits="int8", leaves="fp16"), TreePrune(trees=3), TreeDepth(2)]
)
def test_configs_round_trip_and_rebuild_the_same_variant(forest, config) -> None:
    assert config_from_dict(config_to_dict(config)) == config
    m = wb.load(forest)
    before = m.onnx_bytes
    variant = wb.transform(m, config)
    assert m.onnx_bytes == before and "native" in m.metadata  # the input is untouched
    assert variant.parent is m and "native" not in variant.metadata
    assert wb.transform(m, variant.recipe).onnx_bytes == variant.onnx_bytes
    assert not wb.backend("native").supports(variant).ok


def test_pruned_boosting_equals_xgboosts_first_trees(cancer, xgb_classifier) -> None:
    x, _ = cancer
    variant = wb.transform(wb.load(xgb_classifier), "tree-prune", trees=5)
    assert next(ensembles(variant.proto)).n_trees == 5
    want = xgb_classifier.predict_proba(x, iteration_range=(0, 5))
    np.testing.assert_allclose(run_onnx(variant, x)[1], want, atol=1e-5)


def test_pruned_forest_averages_its_first_trees(cancer, forest) -> None:
    x, _ = cancer
    variant = wb.transform(wb.load(forest), "tree-prune", fraction=0.5)
    assert variant.recipe["rescaled"] is True
    want = np.mean([t.predict_proba(x) for t in forest.estimators_[:10]], axis=0)
    np.testing.assert_allclose(run_onnx(variant, x)[1], want, atol=1e-5)


def test_depth_limit_cuts_paths_and_keeps_shallower_models_whole(cancer, forest) -> None:
    x, _ = cancer
    m = wb.load(forest)
    same = wb.transform(m, "tree-depth", max_depth=4)  # the forest's own depth
    np.testing.assert_allclose(run_onnx(same, x)[1], run_onnx(m, x)[1], atol=1e-6)
    stumps = wb.transform(m, "tree-depth", max_depth=1, data=x)
    trees = next(ensembles(stumps.proto))
    assert trees.max_depth == 1 and trees.n_nodes == 3 * trees.n_trees
    proba = run_onnx(stumps, x)[1]
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)  # leaves are true averages


def test_int16_thresholds_change_almost_no_prediction(cancer, forest) -> None:
    x, _ = cancer
    m = wb.load(forest)
    variant = wb.transform(m, "tree-thresholds", bits="int8")
    trees = next(ensembles(variant.proto))
    split = trees.mode >= 0
    for feature in np.unique(trees.feature[split]):  # every threshold on a 256-level grid
        values = np.unique(trees.threshold[split & (trees.feature == feature)])
        assert len(values) <= 256
    int16 = wb.transform(m, "tree-thresholds", bits="int16")
    assert int16.recipe["threshold_bytes"] == 2 * int(split.sum())
    assert np.mean(run_onnx(int16, x)[0] != run_onnx(m, x)[0]) <= 0.001


def test_bad_settings_and_unsupported_graphs_get_one_line(cancer, forest) -> None:
    from sklearn.ensemble import IsolationForest

    with pytest.raises(TransformError, match="bits fp16, int16 or int8"):
        wb.transform(wb.load(forest), "tree-thresholds", bits="int4")
    with pytest.raises(TransformError, match="cannot keep 50 trees of an ensemble of 20"):
        wb.transform(wb.load(forest), "tree-prune", trees=50)
    iso = wb.load(IsolationForest(n_estimators=3, random_state=0).fit(cancer[0]))
    with pytest.raises(TransformError, match="has 3"):
        wb.transform(iso, "tree-prune", trees=1)
