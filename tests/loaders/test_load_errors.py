"""Every kind of bad input gets a workbench error naming the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.errors import BackendError, InputError, ModelLoadError, UnsafeModelError
from workbench.testing import toy_cnn, toy_mlp


def _tiny_onnx() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        wb.load(tmp_path / "nope.onnx")


def test_truncated_onnx_is_reported_as_corrupt(tmp_path: Path) -> None:
    data = _tiny_onnx().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"corrupt or truncated|not an ONNX|checker"):
        wb.load(path)


def test_garbage_bytes_are_rejected() -> None:
    with pytest.raises(ModelLoadError):
        wb.load(b"\x00\x01definitely not onnx" * 10)


def test_checker_failure_is_explained(tmp_path: Path) -> None:
    model = _tiny_onnx()
    model.graph.node[0].input[1] = "undefined_tensor"
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="checker"):
        wb.load(path)


def test_external_data_outside_the_folder_is_refused(tmp_path: Path) -> None:
    model = _tiny_onnx()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "48")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "secret.bin").write_bytes(b"\0" * 48)
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UnsafeModelError, match="outside the model's folder"):
        wb.load(path)


def test_valid_onnx_loads_with_inputs_and_layers(tmp_path: Path) -> None:
    path = tmp_path / "ok.onnx"
    path.write_bytes(_tiny_onnx().SerializeToString())
    model = wb.load(path)
    assert model.framework == "onnx"
    assert model.inputs[0].shape == ("batch", 4)
    assert [layer.name for layer in model.layers] == ["mm"]
    assert model.layers[0].params == 12


def test_arbitrary_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a pickled module, not weights
    with pytest.raises(UnsafeModelError, match=r"pickle holding Python objects.*trust=True"):
        wb.load(path)


def test_state_dict_file_says_it_holds_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ModelLoadError, match="weights only"):
        wb.load(path)


def test_torchscript_needs_trust_and_example_inputs(tmp_path: Path) -> None:
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), str(path))
    with pytest.raises(UnsafeModelError, match=r"is TorchScript, which is code.*trust=True"):
        wb.load(path, example_inputs=(torch.rand(1, 3),))
    with pytest.raises(ModelLoadError, match="example_inputs"):
        wb.load(path, trust=True)
    model = wb.load(path, example_inputs=(torch.rand(1, 3),), trust=True)
    assert model.framework == "torch" and model.inputs[0].shape == ("batch", 3)


def test_exported_program_file_round_trips(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU()).eval()
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(module, (torch.rand(2, 3),)), str(path))
    model = wb.load(path)
    x = np.random.default_rng(0).random((2, 3), dtype=np.float32)
    out = wb.backend("torch").compile(model).run(x)[0]
    np.testing.assert_allclose(out, module(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)


def test_wrong_input_shape_and_dtype() -> None:
    model = toy_cnn()
    session = wb.backend("onnxruntime").compile(model)
    with pytest.raises(InputError, match="axis 2"):
        session.run(np.zeros((1, 1, 7, 8), np.float32))
    with pytest.raises(InputError, match="dimensions"):
        session.run(np.zeros((1, 8, 8), np.float32))
    with pytest.raises(InputError, match="float32"):
        session.run(np.zeros((1, 1, 8, 8), np.int64))
    with pytest.raises(InputError, match="missing"):
        session.run({})


def test_unknown_kind_of_object() -> None:
    with pytest.raises(ModelLoadError, match="cannot load"):
        wb.load(42)


def test_torch_module_without_example_inputs() -> None:
    with pytest.raises(ModelLoadError, match="example_inputs"):
        wb.load(torch.nn.Linear(2, 2))


def test_module_failing_on_example_inputs() -> None:
    with pytest.raises(ModelLoadError, match="fails on example_inputs"):
        wb.load(torch.nn.Linear(2, 2), example_inputs=(torch.rand(1, 3),))


def test_loading_never_changes_the_users_module() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    model = wb.load(module, example_inputs=(torch.rand(1, 2),))
    model.to_onnx()
    assert module.training
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_to_onnx_keeps_module_paths() -> None:
    model = toy_mlp()
    exported = model.to_onnx()
    assert exported.framework == "onnx"
    assert model.to_onnx() is exported  # cached
    names = {layer.name for layer in exported.layers}
    assert {"0", "1", "2"} <= names
    weights = {layer.name: layer.params for layer in exported.layers}
    assert weights["0"] == model.layer("0").params == 8 * 16 + 16


# ---- the same catalogue through the API: one line each ----------------------------------------


class _OutOfMemory:
    """Stands in for an ORT InferenceSession whose allocator fails."""

    def run(self, *args: object) -> None:
        raise RuntimeError("Failed to allocate memory for requested buffer of size 1073741824")


def _ort_out_of_memory() -> None:
    session = wb.backend("onnxruntime").compile(toy_cnn())
    session.session = _OutOfMemory()
    session.run(np.zeros((64, 1, 8, 8), np.float32))


def _torch_out_of_memory() -> None:
    session = wb.backend("torch").compile(toy_cnn())

    def fail(*args: object) -> None:
        raise RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory")

    session.module = fail
    session.run(np.zeros((64, 1, 8, 8), np.float32))


def _numba_out_of_memory() -> None:
    session = wb.backend("numba").compile(toy_cnn())

    def fail(*args: object) -> None:
        raise MemoryError("Unable to allocate 64.0 GiB for an array")

    session._executor.stage = fail  # type: ignore[union-attr, method-assign]
    session.run(np.zeros((64, 1, 8, 8), np.float32))


def _tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "ok.onnx"
    path.write_bytes(_tiny_onnx().SerializeToString())
    return path


def _sequence_model() -> wb.Model:
    """A model whose second input dimension is symbolic: generated inputs cannot size it."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens"])],
    )
    return wb.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


API_CASES = [
    ("fractional batch", lambda _: wb.profile(toy_mlp(), batch_size=2.5), InputError,
     "batch_size must be a whole number, got 2.5 (float)"),
    ("zero batch", lambda _: wb.profile(toy_mlp(), batch_size=0), InputError,
     "batch_size must be at least 1, got 0"),
    ("ort out of memory", lambda _: _ort_out_of_memory(), BackendError,
     "out of memory on cpu running 'toy-cnn' with inputs x [64, 1, 8, 8] (0.0 MiB)"),
    ("torch out of memory", lambda _: _torch_out_of_memory(), BackendError,
     "out of memory on cpu running 'toy-cnn' with inputs x [64, 1, 8, 8] (0.0 MiB)"),
    ("symbolic dims", lambda _: wb.profile(_sequence_model(), layers=False), InputError,
     "symbolic dimensions beyond the batch in x ['batch', 'tokens']; pass inputs="),
    ("numba out of memory", lambda _: _numba_out_of_memory(), BackendError,
     "out of memory on cpu running 'toy-cnn' with inputs x [64, 1, 8, 8] (0.0 MiB)"),
    ("file over the limit", lambda p: wb.load(_tiny_file(p), max_bytes=10), ModelLoadError,
     "over the 10 bytes limit; pass max_bytes="),
    ("bad limit", lambda p: wb.load(_tiny_file(p), max_bytes=-1), ModelLoadError,
     "max_bytes must be a positive number of bytes"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "message"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_each_bad_api_input_gets_one_line(tmp_path: Path, call, error, message) -> None:
    with pytest.raises(error) as raised:
        call(tmp_path)
    assert message in str(raised.value) and "\n" not in str(raised.value)
