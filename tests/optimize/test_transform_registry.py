"""Transform registry and configs: names, JSON round trips, errors, entry-point plugins."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from workbench.errors import TransformError
from workbench.optimize import base
from workbench.optimize.base import (
    Transform,
    config_from_dict,
    config_to_dict,
    get_transform,
    make_config,
    transform_names,
)
from workbench.optimize.prune import ChannelPrune, MagnitudePrune
from workbench.optimize.quantize import Bf16, Fp16, Int8Dynamic, Int8Static

NON_DEFAULT = [
    Int8Dynamic(per_channel=True, op_types=("MatMul",), exclude=("fc1",), reduce_range=True),
    Int8Static(
        method="percentile",
        per_channel=False,
        op_types=("Conv", "Gemm"),
        exclude=("head",),
        calibration_samples=64,
        quant_format="qoperator",
        activations="int8",
        fold_batchnorm=False,
    ),
    Fp16(route="onnx", exclude=("fc2",)),
    Bf16(),
    MagnitudePrune(sparsity=0.7, scope="layer", exclude=("fc1",)),
    ChannelPrune(
        sparsity=0.25,
        norm="l2",
        finetune_epochs=2,
        learning_rate=1e-4,
        exclude=("a",),
        tie_residuals=False,
    ),
]


def test_builtin_names_are_the_ones_users_type() -> None:
    assert {
        "int8-dynamic", "int8-static", "fp16", "bf16", "prune-magnitude", "prune-channels"
    } <= set(transform_names())  # fmt: skip
    assert get_transform("int8-static") is Int8Static


@pytest.mark.parametrize("config", NON_DEFAULT, ids=lambda c: c.name)
def test_every_config_round_trips_through_json(config: Transform) -> None:
    recipe = config_to_dict(config)
    assert recipe["name"] == config.name and recipe["version"] == config.version
    assert recipe["label"] == config.label()
    rebuilt = config_from_dict(json.loads(json.dumps(recipe)))
    assert rebuilt == config and type(rebuilt) is type(config)


@pytest.mark.parametrize("name", sorted(base._REGISTRY), ids=str)
def test_defaults_round_trip_too(name: str) -> None:
    config = get_transform(name)()
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


def test_labels_are_short_and_informative() -> None:
    assert Int8Static().label() == "int8-static(entropy)"
    assert Int8Static(method="minmax").label() == "int8-static(minmax)"
    assert ChannelPrune(sparsity=0.5, finetune_epochs=3).label() == "prune-channels(50%, ft3)"
    assert MagnitudePrune(sparsity=0.25).label() == "prune-magnitude(25%)"


def test_make_config_from_name_fields_and_recipe() -> None:
    assert make_config("int8-static", method="minmax") == Int8Static(method="minmax")
    assert make_config(Int8Static(), per_channel=False) == Int8Static(per_channel=False)
    assert make_config(config_to_dict(Fp16(route="onnx"))) == Fp16(route="onnx")
    # JSON lists become tuples again, so configs stay hashable
    assert make_config("int8-dynamic", exclude=["fc1"]).exclude == ("fc1",)


def test_errors_name_the_choices() -> None:
    with pytest.raises(TransformError, match=r"known transforms: .*int8-dynamic"):
        make_config("int4-magic")
    with pytest.raises(TransformError, match="no field"):
        make_config("int8-static", calibrate="minmax")
    with pytest.raises(TransformError, match="method must be"):
        make_config("int8-static", method="median")
    with pytest.raises(TransformError, match="sparsity"):
        make_config("prune-magnitude", sparsity=1.5)
    newer = {**config_to_dict(Fp16()), "version": 99}
    with pytest.raises(TransformError, match="newer"):
        config_from_dict(newer)
    with pytest.raises(TransformError, match="exclude"):
        Bf16().with_exclude(["fc1"])


def test_plugins_come_from_the_entry_point_group(monkeypatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Identity(Transform):
        strength: float = 1.0

        def apply(self, model: Any, data: Any = None) -> Any:
            return model.derive(recipe=config_to_dict(self))

    class FakeEntryPoint:
        name = "identity-plugin"

        def load(self) -> type:
            return Identity

    calls = []

    def fake_entry_points(group: str) -> list[FakeEntryPoint]:
        calls.append(group)
        return [FakeEntryPoint()]

    monkeypatch.setattr(base, "entry_points", fake_entry_points)
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    assert get_transform("identity-plugin") is Identity
    assert calls == ["workbench.transforms"]
    config = make_config("identity-plugin", strength=2.0)
    assert config_from_dict(config_to_dict(config)) == config


def test_older_recipes_are_migrated_to_what_they_were_built_with() -> None:
    # version 1 recipes predate BatchNorm folding and residual tying: they were built
    # without them, so they rebuild without them, not with today's defaults
    v1_static = {"name": "int8-static", "version": 1, "config": {"calibration": "minmax"}}
    assert config_from_dict(v1_static) == Int8Static(method="minmax", fold_batchnorm=False)
    v1_channels = {"name": "prune-channels", "version": 1, "config": {"sparsity": 0.25}}
    assert config_from_dict(v1_channels) == ChannelPrune(sparsity=0.25, tie_residuals=False)
    # a version 1 recipe that already names the field keeps its value
    named = {"name": "int8-static", "version": 1, "config": {"fold_batchnorm": True}}
    assert config_from_dict(named) == Int8Static()
    assert config_to_dict(Int8Static())["version"] == Int8Static.version == 3


def test_a_recipe_without_a_migration_path_is_refused_in_one_line(monkeypatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    @base.register("stepped")
    @dataclasses.dataclass(frozen=True)
    class Stepped(Transform):
        version = 3
        migrations = {2: base.field_added("gain", 1.0)}  # noqa: RUF012 (a test's own class)
        gain: float = 2.0

    assert config_from_dict({"name": "stepped", "version": 3, "config": {}}) == Stepped()
    with pytest.raises(
        TransformError,
        match=r"^recipe 'stepped' has version 1, which cannot "
        r"be upgraded to version 3; rebuild .*wb\.transform",
    ) as info:
        config_from_dict({"name": "stepped", "version": 1, "config": {}})
    assert "\n" not in str(info.value)
    with pytest.raises(TransformError, match="format 9, newer than this workbench's 1"):
        config_from_dict({**config_to_dict(Fp16()), "format": 9})


def test_the_old_calibration_keyword_still_works_for_a_release_and_names_method() -> None:
    with pytest.warns(DeprecationWarning, match=r"calibration= is now method=") as caught:
        old = Int8Static(calibration="minmax")
    assert old == Int8Static(method="minmax")
    assert caught[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(DeprecationWarning, match="method="):
        assert old.calibration == "minmax"
    with pytest.warns(DeprecationWarning, match="method=") as caught:
        assert make_config("int8-static", calibration="percentile").method == "percentile"
    assert caught[0].filename == __file__  # however deep in workbench it was noticed
    with pytest.warns(DeprecationWarning, match="method="):
        assert make_config(Int8Static(), calibration="minmax") == old
    with pytest.raises(TransformError, match="both calibration= and method=; give method= only"):
        Int8Static(calibration="minmax", method="entropy")


def test_recipes_stored_before_the_rename_load_silently_as_they_were() -> None:
    import warnings

    stored = {
        "name": "int8-static", "version": 2, "format": 1, "label": "int8-static(percentile)",
        "config": {"calibration": "percentile", "per_channel": False, "fold_batchnorm": True},
    }  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the user wrote no old keyword: nothing to warn
        config = config_from_dict(stored)
    assert config == Int8Static(method="percentile", per_channel=False)
    assert config.label() == stored["label"]
    assert config_to_dict(config)["config"]["method"] == "percentile"
