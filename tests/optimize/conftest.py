"""Fixtures shared by the optimize tests: the digits MLP and its data, loaded once."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.model import Model


@pytest.fixture(scope="session")
def digits_mlp() -> Model:
    return wb.samples.load("digits-mlp")


@pytest.fixture(scope="session")
def digits_test() -> wb.Dataset:
    return wb.samples.dataset("digits", split="test")


@pytest.fixture(scope="session")
def digits_train() -> wb.Dataset:
    return wb.samples.dataset("digits", split="train")
