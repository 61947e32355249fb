"""`Dataset` for evaluation code; it lives in `workbench.data`, shared with loaders and optimize."""

from __future__ import annotations

from workbench.data import Dataset, Inputs

__all__ = ["Dataset", "Inputs"]
