"""Pruning: exact sparsity made permanent; channel pruning really shrinks layers and keeps
outputs identical when the removed channels were dead; residual adds are skipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from optimize_helpers import model_state, run
from torch import nn

import workbench as wb
from workbench.errors import TransformError
from workbench.optimize.prune import ChannelPrune, MagnitudePrune
from workbench.testing import toy_cnn, toy_mlp


def _weights(model: wb.Model) -> dict[str, np.ndarray]:
    return {
        name: sub.weight.detach().numpy()
        for name, sub in model.module.named_modules()
        if isinstance(sub, nn.Linear | nn.Conv2d)
    }


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_prune_is_exact_and_permanent(scope: str) -> None:
    model = toy_mlp(hidden=32)
    before = model_state(model)
    sparse = wb.prune(model, sparsity=0.6, scope=scope)
    assert model_state(model) == before
    original, pruned = _weights(model), _weights(sparse)
    zeros = sum(int((w == 0).sum()) for w in pruned.values())
    total = sum(w.size for w in pruned.values())
    assert zeros == int(0.6 * total) if scope == "global" else abs(zeros / total - 0.6) < 0.01
    if scope == "layer":
        for w in pruned.values():
            assert abs((w == 0).mean() - 0.6) < 0.02
    for name, w in pruned.items():  # survivors are untouched and are the largest
        kept = w != 0
        np.testing.assert_array_equal(w[kept], original[name][kept])
        if scope == "layer":
            assert np.abs(original[name][~kept]).max() <= np.abs(original[name][kept]).min()
    assert not any("orig" in key or "mask" in key for key in sparse.module.state_dict())
    assert not any(m._forward_pre_hooks for m in sparse.module.modules())
    assert sparse.recipe["achieved_sparsity"] == pytest.approx(zeros / total)


def _op_types(model: wb.Model) -> list[str]:
    return sorted(node.op_type for node in model.to_onnx().proto.graph.node)


def test_a_magnitude_pruned_cnn_exports_the_graph_of_its_parent() -> None:
    # zeros cost a dense kernel nothing, so the pruned model must run the very same ops:
    # no weight_orig * mask re-parametrisation (extra Mul nodes), BatchNorm kept as it was
    cnn = wb.samples.load("digits-cnn")
    before = model_state(cnn)
    pruned = wb.prune(cnn, sparsity=0.5)
    assert model_state(cnn) == before
    assert _op_types(pruned) == _op_types(cnn)  # the parent's is the shipped export
    assert len(pruned.to_onnx().proto.graph.node) == len(cnn.to_onnx().proto.graph.node)
    assert all(type(p) is nn.Parameter for p in pruned.module.parameters())
    assert not any(m._forward_pre_hooks for m in pruned.module.modules())


def test_magnitude_prune_of_an_onnx_model(digits_mlp, digits_test) -> None:
    onnx_model = digits_mlp.to_onnx()
    before = model_state(onnx_model)
    sparse = wb.prune(onnx_model, MagnitudePrune(sparsity=0.5, exclude=("head",)))
    assert model_state(onnx_model) == before and sparse.framework == "onnx"
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in sparse.proto.graph.initializer}
    assert (weights["head.weight"] != 0).all()
    fc = np.concatenate([weights["fc1.weight"].ravel(), weights["fc2.weight"].ravel()])
    assert (fc == 0).mean() == pytest.approx(0.5, abs=1e-4)
    out = run(sparse, digits_test.inputs)
    assert (out.argmax(1) == digits_test.labels).mean() > 0.9


def _with_dead_units(model: wb.Model) -> wb.Model:
    """Zero half the hidden units' weights and biases so pruning them changes nothing."""
    module = model.module
    with torch.no_grad():
        module[0].weight[::2] = 0.0
        module[0].bias[::2] = 0.0
    return wb.load(module, example_inputs=(torch.rand(1, 8),))


def test_channel_prune_mlp_shrinks_and_keeps_outputs() -> None:
    model = _with_dead_units(toy_mlp(hidden=16))
    before = model_state(model)
    small = wb.prune(model, sparsity=0.5, structured=True, norm="l1")
    assert model_state(model) == before
    assert small.module[0].weight.shape == (8, 8) and small.module[2].weight.shape == (4, 8)
    assert small.recipe["channels"] == {"0": [16, 8]}
    assert small.params < model.params
    x = np.random.default_rng(0).random((5, 8), dtype=np.float32)
    np.testing.assert_allclose(run(small, x, "torch"), run(model, x, "torch"), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(run(small, x), run(model, x, "torch"), rtol=1e-4, atol=1e-5)


def test_channel_prune_cnn_follows_batchnorm_and_flatten() -> None:
    model = toy_cnn()
    module = model.module
    with torch.no_grad():  # channels 1 and 3 are dead: conv, bias and bn output all zero
        module.features[0].weight[1::2] = 0.0
        module.features[0].bias[1::2] = 0.0
        module.features[1].running_mean[1::2] = 0.0
        module.features[1].bias[1::2] = 0.0
    model = wb.load(module, example_inputs=(torch.rand(1, 1, 8, 8),))
    small = wb.prune(model, ChannelPrune(sparsity=0.5, norm="l2"))
    conv, bn, fc = small.module.features[0], small.module.features[1], small.module.fc
    assert conv.out_channels == 2 and bn.num_features == 2 and fc.in_features == 2 * 64
    x = np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(run(small, x, "torch"), run(model, x, "torch"), rtol=1e-5, atol=1e-6)
    assert "fc: not pruned, its output is a model output" in small.recipe["notes"]


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = y + self.conv2(self.relu(self.conv1(y)))
        return self.head(self.flatten(self.pool(y)))


def _residual_with_dead_channels() -> wb.Model:
    torch.manual_seed(0)
    module = _Residual()
    with torch.no_grad():  # channels 1, 3 of the residual stream and 4..7 of conv1 are dead
        for layer in (module.stem, module.conv2):
            layer.weight[1::2] = 0.0
            layer.bias[1::2] = 0.0
        module.conv1.weight[4:] = 0.0
        module.conv1.bias[4:] = 0.0
    return wb.load(module, example_inputs=(torch.rand(1, 1, 8, 8),))


def test_channel_prune_ties_layers_whose_outputs_are_added() -> None:
    model = _residual_with_dead_channels()
    small = wb.prune(model, sparsity=0.5, structured=True)
    assert small.recipe["channels"] == {"conv1": [8, 4], "stem": [4, 2], "conv2": [4, 2]}
    net = small.module
    assert (net.stem.out_channels, net.conv1.in_channels, net.conv2.out_channels) == (2, 2, 2)
    assert net.head.in_features == 2
    assert any("pruned together" in note for note in small.recipe["notes"])
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(run(small, x, "torch"), run(model, x, "torch"), rtol=1e-5, atol=1e-6)


def test_channel_prune_can_skip_residual_adds_and_says_so() -> None:
    model = _residual_with_dead_channels()
    small = wb.prune(model, ChannelPrune(sparsity=0.5, tie_residuals=False))
    assert small.recipe["channels"] == {"conv1": [8, 4]}
    assert small.module.conv2.in_channels == 4 and small.module.stem.out_channels == 4
    notes = " ".join(small.recipe["notes"])
    assert "stem: not pruned, its output feeds an add" in notes and "conv2" in notes


class _InputResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.head = nn.Linear(64, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((x + self.conv(x)).flatten(1))


def test_an_add_with_a_model_input_is_never_pruned() -> None:
    model = wb.load(_InputResidual(), example_inputs=(torch.rand(1, 1, 8, 8),))
    with pytest.raises(TransformError, match="no prunable layer produces"):
        wb.prune(model, sparsity=0.5, structured=True)


def test_channel_prune_exclude_and_errors(digits_mlp) -> None:
    small = wb.prune(digits_mlp, ChannelPrune(sparsity=0.5, exclude=("fc1",)))
    assert small.module.fc1.out_features == 512 and small.module.fc2.out_features == 256
    with pytest.raises(TransformError, match="needs a torch model"):
        wb.prune(digits_mlp.to_onnx(), sparsity=0.5, structured=True)
    with pytest.raises(TransformError, match="no layer"):
        wb.prune(digits_mlp, ChannelPrune(exclude=("fc1", "fc2")))


def test_channel_prune_with_finetune_recovers_accuracy(digits_test, digits_train) -> None:
    cnn = wb.samples.load("digits-cnn")
    before = model_state(cnn)
    small = wb.prune(cnn, sparsity=0.5, structured=True, finetune_epochs=2, data=digits_train)
    assert model_state(cnn) == before
    assert [small.module.features[i].out_channels for i in (0, 3, 7)] == [16, 32, 32]
    assert small.module.classifier[1].in_features == 32 * 16
    assert not small.module.training
    out = run(small, digits_test.inputs)  # the shrunk model also exports and runs on ORT
    base = run(cnn, digits_test.inputs)
    accuracy = (out.argmax(1) == digits_test.labels).mean()
    assert accuracy >= (base.argmax(1) == digits_test.labels).mean() - 0.02


def test_magnitude_prune_per_layer_ratios_touch_their_layer_only(digits_mlp) -> None:
    before = model_state(digits_mlp)
    config = MagnitudePrune(sparsity=0.5, scope="layer", layer_sparsity=(("fc1", 0.2),))
    sparse = wb.prune(digits_mlp, config)
    assert model_state(digits_mlp) == before  # the model is never mutated
    zeros = {name: float((w == 0).mean()) for name, w in _weights(sparse).items()}
    assert zeros["fc1"] == pytest.approx(0.2, abs=1e-3)
    assert zeros["fc2"] == pytest.approx(0.5, abs=1e-3)
    assert zeros["head"] == pytest.approx(0.5, abs=1e-3)
    assert sparse.recipe["config"]["layer_sparsity"] == [["fc1", 0.2]]
    assert "fc1 20%" in sparse.recipe_name
    rebuilt = wb.transform(digits_mlp, sparse.recipe)  # the JSON recipe carries the ratios
    np.testing.assert_array_equal(_weights(rebuilt)["fc1"], _weights(sparse)["fc1"])


def test_magnitude_prune_per_layer_ratio_beside_a_global_threshold(digits_mlp) -> None:
    sparse = wb.prune(digits_mlp, sparsity=0.6, layer_sparsity=(("head", 0.0),))
    pruned = _weights(sparse)
    assert (pruned["head"] != 0).all()  # ratio 0: the layer keeps every weight
    rest = np.concatenate([pruned["fc1"].ravel(), pruned["fc2"].ravel()])
    assert (rest == 0).mean() == pytest.approx(0.6, abs=1e-4)


def test_magnitude_prune_per_layer_ratios_on_onnx(digits_mlp) -> None:
    onnx_model = digits_mlp.to_onnx()
    before = model_state(onnx_model)
    sparse = wb.prune(onnx_model, sparsity=0.5, scope="layer", layer_sparsity=(("fc2", 0.8),))
    assert model_state(onnx_model) == before
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in sparse.proto.graph.initializer}
    assert (weights["fc2.weight"] == 0).mean() == pytest.approx(0.8, abs=1e-3)
    assert (weights["fc1.weight"] == 0).mean() == pytest.approx(0.5, abs=1e-3)


def test_per_layer_ratio_errors(digits_mlp) -> None:
    with pytest.raises(TransformError, match=r"cannot be pruned: \['nope'\]"):
        wb.prune(digits_mlp, sparsity=0.5, layer_sparsity=(("nope", 0.3),))
    with pytest.raises(TransformError, match="must be in"):
        wb.prune(digits_mlp, sparsity=0.5, layer_sparsity=(("fc1", 1.5),))
    with pytest.raises(TransformError, match="twice"):
        wb.prune(digits_mlp, layer_sparsity=(("fc1", 0.1), ("fc1", 0.2)))


def test_channel_prune_per_layer_ratios(digits_mlp) -> None:
    before = model_state(digits_mlp)
    small = wb.prune(digits_mlp, ChannelPrune(sparsity=0.5, layer_sparsity=(("fc1", 0.25),)))
    assert model_state(digits_mlp) == before
    assert small.module.fc1.out_features == 384 and small.module.fc2.out_features == 256
    assert small.recipe["channels"]["fc1"] == [512, 384]
    assert "fc1 25%" in small.recipe_name
