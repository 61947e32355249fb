"""Torch -> ONNX export keeps canonical layer names with either exporter."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import workbench as wb
import workbench.model
from workbench.errors import ModelLoadError
from workbench.loaders.export import _export_torchscript, annotate_layers
from workbench.loaders.onnx import canonical_layer_name, model_from_proto
from workbench.model import LAYER_KEY, set_layer_name
from workbench.testing import toy_cnn


def test_torchscript_fallback_maps_nodes_to_module_paths() -> None:
    model = toy_cnn()
    proto = _export_torchscript(model)
    annotate_layers(proto)
    exported = model_from_proto(proto, "toy")
    names = [layer.name for layer in exported.layers]
    assert names[0] == "features.0" and names[-1] == "fc" and "Flatten" in names
    x = model.example_inputs(3)
    expected = wb.backend("torch").compile(model).run(x)[0]
    got = wb.backend("onnxruntime").compile(exported).run(x)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/encoder/layer.0/attention/MatMul", "attention"),
        ("/Flatten", "Flatten"),
        ("conv_3", "conv_3"),
        ("", "Relu_7"),
    ],
)
def test_canonical_name_rules(name: str, expected: str) -> None:
    node = helper.make_node("Relu", ["a"], ["b"], name=name)
    assert canonical_layer_name(node, 7) == expected


def test_metadata_wins_over_the_node_name() -> None:
    node = helper.make_node("Relu", ["a"], ["b"], name="/x/y/Relu")
    entry = node.metadata_props.add()
    entry.key, entry.value = "workbench.layer", "blocks.3.act"
    assert canonical_layer_name(node, 0) == "blocks.3.act"


def test_set_layer_name_replaces_an_existing_label() -> None:
    node = helper.make_node("Relu", ["a"], ["b"], name="/x/y/Relu")
    set_layer_name(node, "blocks.3.act")
    set_layer_name(node, "blocks.4.act")
    assert [(kv.key, kv.value) for kv in node.metadata_props] == [(LAYER_KEY, "blocks.4.act")]


def test_exported_layers_match_torch_layers_with_weights() -> None:
    model = wb.samples.load("digits-cnn")
    exported = {layer.name: layer for layer in model.to_onnx().layers}
    modules = dict(model.module.named_modules())
    for layer in model.layers:
        if not layer.params:
            continue
        # the exporter gives a bias-free conv an explicit zero bias
        extra = modules[layer.name].out_channels if layer.op_type == "Conv2d" else 0
        assert layer.params <= exported[layer.name].params <= layer.params + extra, layer.name


def test_has_onnx_tells_whether_to_onnx_would_export() -> None:
    model = toy_cnn()
    assert not model.has_onnx
    exported = model.to_onnx()
    assert model.has_onnx and exported.has_onnx
    assert not model.derive(recipe={"name": "x"}).has_onnx


def test_to_onnx_without_a_registered_exporter_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workbench.model, "_exporter", None)
    with pytest.raises(ModelLoadError, match=r"import workbench\.loaders"):
        toy_cnn().to_onnx()
