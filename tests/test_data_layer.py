"""The low-level data pieces: one-shot iterables become re-iterable, tensors become numpy."""

from __future__ import annotations

import numpy as np
import torch

from workbench.data import Dataset, reiterable
from workbench.model import to_numpy


def test_a_generator_is_gathered_into_a_dataset_read_twice_alike() -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    batches = ((x[i : i + 2], np.arange(i, i + 2)) for i in range(0, 6, 2))
    data = reiterable(batches)
    assert isinstance(data, Dataset) and data.num_samples == 6
    first = [b[0] for b in data]
    second = [b[0] for b in data]
    np.testing.assert_array_equal(np.concatenate(first), x)
    np.testing.assert_array_equal(np.concatenate(second), x)


def test_a_reiterable_is_returned_as_it_is() -> None:
    batches = [(np.zeros((2, 3), np.float32), np.zeros(2))]
    assert reiterable(batches) is batches
    assert reiterable(None) is None


def test_to_numpy_detaches_tensors_and_keeps_arrays() -> None:
    tensor = torch.ones(2, 3, requires_grad=True) * 2
    array = to_numpy(tensor)
    assert isinstance(array, np.ndarray) and array.shape == (2, 3) and array[0, 0] == 2.0
    original = np.arange(3)
    assert to_numpy(original) is original
    np.testing.assert_array_equal(to_numpy([[1, 2]]), np.array([[1, 2]]))
