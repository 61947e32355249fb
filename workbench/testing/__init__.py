"""Helpers shipped for tests and plugin authors: toy models, a fake clock, a fake backend."""

from workbench.testing.clock import FakeClock

__all__ = ["FakeClock"]
