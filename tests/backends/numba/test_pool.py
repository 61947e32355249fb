"""Numba's threading layer: the tbb wheel's library is loaded by path, unless told otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from workbench.backends.numba import pool

load = pool.load_tbb.__wrapped__  # the uncached function


def test_nothing_is_loaded_without_the_wheel(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path))
    assert load() == ""


def test_a_library_that_does_not_load_is_skipped(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / pool.LIBTBB).write_bytes(b"not a shared library")
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path))
    assert load() == ""


@pytest.mark.skipif(sys.platform != "linux", reason="the wheel's layout is Linux's")
def test_the_users_choice_of_layer_is_kept(monkeypatch) -> None:
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "omp")
    assert load() == ""


@pytest.mark.skipif(
    not (Path(sys.prefix) / "lib" / pool.LIBTBB).is_file(), reason="the tbb wheel is not installed"
)
def test_the_installed_wheel_is_loaded(monkeypatch) -> None:
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    assert load() == str(Path(sys.prefix) / "lib" / pool.LIBTBB)
