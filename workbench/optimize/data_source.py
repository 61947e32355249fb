"""Where transforms get their data: the user's, or a sample's own split."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workbench.data import reiterable
from workbench.errors import TransformError
from workbench.model import Model

# re-exported: transforms import the one tensor-to-numpy conversion from here
from workbench.model import to_numpy as to_numpy


def resolve_data(model: Model, data: Any, split: str, purpose: str) -> Any:
    """``data`` if given; for a sample model, its bundled ``split``; else a clear error.

    Args:
        model: the model being transformed (its ``source`` names a sample).
        data: the user's dataset or iterable of ``(inputs, labels)`` batches, or None.
        split: the sample split to fall back on (``"train"`` for calibration and fine-tuning).
        purpose: what the data is for, for the error message.

    Raises:
        TransformError: no data and no sample to take it from.
    """
    if data is not None:
        return reiterable(data)
    root = model
    while root.parent is not None and not root.source.startswith("sample:"):
        root = root.parent
    if root.source.startswith("sample:"):
        from workbench.loaders import samples

        return samples.dataset(root.source.removeprefix("sample:"), split=split)
    raise TransformError(
        f"{purpose} needs data: pass a Dataset (e.g. wb.Dataset.from_arrays(x, y)) or any "
        "iterable of (inputs, labels) batches"
    )


def input_batches(model: Model, data: Any, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Feeds (input name -> numpy array) from ``(inputs, labels)`` batches, up to ``limit`` samples.

    Inputs may be numpy arrays or torch tensors, one array, a tuple in input order, or
    a dict by input name.
    """
    seen = 0
    for inputs, _labels in data:
        feeds = model.check_inputs(_as_input(inputs))
        count = len(next(iter(feeds.values())))
        if limit is not None and seen + count > limit:
            keep = limit - seen
            feeds = {k: v[:keep] for k, v in feeds.items()}
            count = keep
        if count <= 0:
            return
        seen += count
        yield feeds
        if limit is not None and seen >= limit:
            return


def _as_input(inputs: Any) -> Any:
    if isinstance(inputs, list):
        return tuple(inputs)
    return inputs
