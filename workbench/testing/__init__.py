"""Helpers shipped for tests and plugin authors: toy models, a fake clock, a fake backend."""

from workbench.testing.clock import FakeClock
from workbench.testing.fake_backend import FakeBackend
from workbench.testing.toys import tiny_llama, toy_cnn, toy_mlp

__all__ = ["FakeBackend", "FakeClock", "tiny_llama", "toy_cnn", "toy_mlp"]
