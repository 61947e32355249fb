"""The shipped sample models are really trained, load as recorded, and export faithfully."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import workbench as wb
from workbench.errors import ModelLoadError, WorkbenchError
from workbench.loaders import samples
from workbench.loaders.sample_archs import ARCHITECTURES

# Accuracy floors on the held-out split (450 images): a retrained sample below these has
# regressed. Reached by sample_models/train.py: MLP 97.8%, CNN 99.3%, transformer 97.8%,
# ResNet 99.8%.
FLOORS = {
    "digits-mlp": 0.97,
    "digits-cnn": 0.985,
    "digits-transformer": 0.97,
    "digits-resnet": 0.99,
}
NAMES = list(FLOORS)


@pytest.fixture(scope="module")
def test_split() -> wb.Dataset:
    return samples.dataset("digits", split="test")


@pytest.fixture(scope="module", params=NAMES, ids=NAMES)
def loaded(request: pytest.FixtureRequest) -> wb.Model:
    return samples.load(request.param)


def _torch_logits(model: wb.Model, x: np.ndarray) -> np.ndarray:
    assert model.module is not None
    with torch.no_grad():
        return model.module(torch.from_numpy(x)).numpy()


def test_names_are_the_four_architectures() -> None:
    assert samples.names("digits") == NAMES
    assert wb.samples.names("digits") == list(ARCHITECTURES)


def test_names_list_every_kind_and_refuse_an_unknown_one() -> None:
    trees = wb.samples.names("trees")
    assert trees and all(name.startswith("trees-") for name in trees)
    rec = wb.samples.names("recommendation") + wb.samples.names("anomaly")
    assert wb.samples.names() == NAMES + trees + rec
    assert wb.load("trees-gbm").framework == "onnx"  # a listed name loads as that sample
    with pytest.raises(WorkbenchError, match="unknown sample kind"):
        wb.samples.names("gpt")


def test_info_is_the_card(loaded: wb.Model) -> None:
    card = samples.info(loaded.name)
    assert card["name"] == loaded.name
    assert card["dataset"] == "digits"
    assert card["test_samples"] == 450 and card["train_samples"] == 1347
    assert card["params"] == sum(p.numel() for p in loaded.module.parameters())
    assert card["architecture"].endswith(ARCHITECTURES[loaded.name][0].__name__)
    assert loaded.metadata["card"] == card
    weights = samples.samples_dir() / loaded.name / "weights.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["weights_sha256"]


def test_loaded_sample_is_an_eval_torch_model(loaded: wb.Model) -> None:
    assert loaded.framework == "torch"
    assert loaded.source == f"sample:{loaded.name}"
    assert not loaded.module.training
    assert [(s.name, s.shape, s.dtype) for s in loaded.inputs] == [
        ("x", ("batch", 1, 8, 8), "float32")
    ]
    assert _torch_logits(loaded, loaded.example_inputs(3)["x"]).shape == (3, 10)


def test_accuracy_on_held_out_split_matches_card(loaded: wb.Model, test_split: wb.Dataset) -> None:
    predictions = _torch_logits(loaded, test_split.inputs).argmax(axis=1)
    accuracy = float((predictions == test_split.labels).mean())
    assert accuracy == pytest.approx(samples.info(loaded.name)["test_accuracy"], abs=0.005)
    assert accuracy >= FLOORS[loaded.name]


def test_committed_onnx_agrees_with_torch(loaded: wb.Model, test_split: wb.Dataset) -> None:
    path = samples.samples_dir() / loaded.name / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    got = session.run(None, {"x": test_split.inputs})[0]
    want = _torch_logits(loaded, test_split.inputs)
    assert got.shape == want.shape == (450, 10)
    assert float(np.abs(got - want).max()) <= 1e-4


def test_to_onnx_reuses_the_committed_file_with_canonical_layers(loaded: wb.Model) -> None:
    exported = loaded.to_onnx()
    assert exported.framework == "onnx"
    assert Path(exported.source) == samples.samples_dir() / loaded.name / "model.onnx"
    # every torch layer that owns weights is found again, by name, in the ONNX graph
    weighted = {layer.name for layer in loaded.layers if layer.params}
    assert weighted <= {layer.name for layer in exported.layers}


def test_loading_and_exporting_leave_the_model_unchanged() -> None:
    first = samples.load("digits-cnn")
    before = {k: v.clone() for k, v in first.module.state_dict().items()}
    first.to_onnx()
    _torch_logits(first, samples.dataset().inputs)
    after = first.module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not first.module.training
    # each load is independent: changing one model's weights leaves a new load intact
    with torch.no_grad():
        first.module.classifier[1].weight.zero_()
    second = samples.load("digits-cnn")
    assert torch.equal(second.module.classifier[1].weight, before["classifier.1.weight"])


def test_unknown_name_lists_the_samples() -> None:
    with pytest.raises(ModelLoadError, match="digits-cnn") as error:
        samples.load("digits-vit")
    assert all(name in str(error.value) for name in NAMES)
    with pytest.raises(ModelLoadError, match="unknown sample"):
        samples.info("mnist")


@pytest.mark.parametrize("shadow", ["file", "folder"])
def test_a_sample_name_is_the_sample_beside_a_file_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shadow: str
) -> None:
    # a file or folder named like a sample in the working directory does not replace it;
    # a path that looks like a path, or a pathlib.Path, names the file
    monkeypatch.chdir(tmp_path)
    planted = tmp_path / "digits-cnn"
    planted.mkdir() if shadow == "folder" else planted.write_bytes(b"not a model")
    mlp = tmp_path / "digits-cnn.onnx"
    mlp.write_bytes(samples.load("digits-mlp").onnx_bytes)
    assert wb.load("digits-cnn").source == "sample:digits-cnn"
    assert wb.load("./digits-cnn.onnx").framework == "onnx"  # the file, not the sample
    for path in ("./digits-cnn", Path("digits-cnn")):
        with pytest.raises(ModelLoadError, match=r"folder|unknown model file type"):
            wb.load(path)
    planted.rmdir() if shadow == "folder" else planted.unlink()
    with pytest.raises(ModelLoadError, match="for the sample, pass its name as a str"):
        wb.load(Path("digits-cnn"))


def test_dataset_is_the_stratified_digits_split() -> None:
    test, train, full = (samples.dataset(split=s) for s in ("test", "train", "all"))
    assert (test.num_samples, train.num_samples, full.num_samples) == (450, 1347, 1797)
    assert test.inputs.dtype == np.float32 and test.inputs.shape == (450, 1, 8, 8)
    assert test.labels.dtype == np.int64
    assert test.inputs.min() >= 0.0 and test.inputs.max() == 1.0
    counts = np.bincount(test.labels)  # stratified: a quarter of each digit's 174..183
    assert counts.min() >= 43 and counts.max() <= 46
    assert test.name == "digits/test" and len(test) == 8
    with np.load(samples.samples_dir() / "digits" / "digits.npz") as raw:
        assert not set(raw["train_idx"]) & set(raw["test_idx"])
        assert raw["x"].dtype == np.uint8 and raw["x"].max() == 16
    # a sample's name gives the data it was trained on
    np.testing.assert_array_equal(samples.dataset("digits-mlp").labels, test.labels)
    assert samples.dataset(batch_size=100).batch_size == 100


def test_dataset_matches_scikit_learn() -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    digits = sklearn_datasets.load_digits()
    _, test_idx = model_selection.train_test_split(
        np.arange(len(digits.target)), test_size=0.25, random_state=0, stratify=digits.target
    )
    test_idx = np.sort(test_idx)
    test = samples.dataset(split="test")
    np.testing.assert_array_equal(test.labels, digits.target[test_idx])
    np.testing.assert_allclose(test.inputs[:, 0], digits.images[test_idx] / 16.0, rtol=1e-6)


def test_dataset_rejects_unknown_names_and_splits() -> None:
    with pytest.raises(WorkbenchError, match="unknown dataset"):
        samples.dataset("mnist")
    with pytest.raises(WorkbenchError, match=r"unknown split.*'train'"):
        samples.dataset(split="validation")


def test_samples_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(samples.SAMPLES_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="WORKBENCH_SAMPLES_DIR"):
        samples.load("digits-mlp")
    # a copy holding only the card: info works, load says what is missing
    shutil.copytree(_repo_samples() / "digits", tmp_path / "digits")
    (tmp_path / "digits-mlp").mkdir()
    card = json.loads((_repo_samples() / "digits-mlp" / "card.json").read_text())
    (tmp_path / "digits-mlp" / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv(samples.SAMPLES_DIR_ENV, str(tmp_path))
    assert samples.samples_dir() == tmp_path
    assert samples.info("digits-mlp") == card
    assert samples.dataset().num_samples == 450
    with pytest.raises(ModelLoadError, match=r"no weights.*train\.py digits-mlp"):
        samples.load("digits-mlp")


def _repo_samples() -> Path:
    return Path(wb.__file__).resolve().parents[1] / "sample_models"


def test_listing_samples_and_data_imports_no_torch() -> None:
    code = (
        "import sys, workbench as wb\n"
        "wb.samples.names(); wb.samples.info('digits-cnn'); wb.samples.dataset()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
