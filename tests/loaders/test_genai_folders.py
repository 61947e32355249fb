"""onnxruntime-genai folders under the trust rules (no onnxruntime-genai needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from workbench.errors import ModelLoadError, UnsafeModelError
from workbench.loaders.genai import genai_unavailable, load_genai


def _folder(tmp_path: Path, **decoder: object) -> Path:
    config = {
        "model": {
            "context_length": 16,
            "vocab_size": 8,
            "decoder": {"filename": "model.onnx", **decoder},
        }
    }
    (tmp_path / "genai_config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer.json").write_text("{}")
    return tmp_path


def test_a_folder_of_data_files_is_read_untrusted(tmp_path: Path) -> None:
    # past the trust checks, the missing ONNX file is the one problem left
    with pytest.raises(ModelLoadError, match="does not hold") as info:
        load_genai(_folder(tmp_path))
    assert not isinstance(info.value, UnsafeModelError)


def test_a_custom_op_library_needs_trust(tmp_path: Path) -> None:
    folder = _folder(tmp_path, session_options={"custom_ops_library": "libevil.so"})
    with pytest.raises(UnsafeModelError, match="custom-op library"):
        load_genai(folder)
    with pytest.raises(ModelLoadError, match="does not hold") as info:
        load_genai(folder, trust=True)
    assert not isinstance(info.value, UnsafeModelError)


def test_code_files_and_paths_outside_need_trust(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    folder = _folder(tmp_path / "a")
    (folder / "ops.so").write_bytes(b"\x7fELF")
    with pytest.raises(UnsafeModelError, match=r"ops\.so"):
        load_genai(folder)
    (tmp_path / "b").mkdir()
    with pytest.raises(UnsafeModelError, match="outside the model folder"):
        load_genai(_folder(tmp_path / "b", filename="../a/model.onnx"))


def test_not_a_genai_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no genai_config\.json"):
        load_genai(tmp_path)


def test_without_the_extra_the_reason_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.backends.base import get_backend

    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)  # import fails
    assert "inference-workbench[genai]" in (genai_unavailable() or "")
    backend = get_backend("genai")
    assert backend.devices() == []
    assert "inference-workbench[genai]" in backend.availability().reason
