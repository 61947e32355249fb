"""Uploaded model files: type and size checks, a temporary folder only, one-line errors."""

from __future__ import annotations

import pytest

from workbench.dashboards import work
from workbench.dashboards.upload import load_upload
from workbench.errors import ModelLoadError


def test_a_valid_onnx_upload_loads_and_stays_in_its_folder(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    data = work.load_sample("digits-mlp").onnx_bytes
    model = load_upload("../../escape me.onnx", data, folder)
    assert model.framework == "onnx" and len(model.layers) > 0
    assert [p.name for p in folder.iterdir()] == ["escape_me.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uploads"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("model.txt", b"hello", "unsupported file type .txt"),
        ("model", b"hello", "unsupported file type (none)"),
        ("empty.onnx", b"", "empty.onnx is empty"),
        ("big.onnx", b"x" * 2048, "big.onnx is 0 MiB; the limit is 0 MiB"),
        ("mine.onnx", b"not a model", "mine.onnx is not a valid ONNX model"),
        ("mine.pt", b"garbage", "mine.pt is neither an ONNX file"),
    ],
)
def test_bad_uploads_are_refused_with_a_clear_message(tmp_path, name, data, message):
    with pytest.raises(ModelLoadError) as error:
        load_upload(name, data, tmp_path, limit=1024)
    assert message in str(error.value)
    assert str(tmp_path) not in str(error.value)  # no server paths in user messages
