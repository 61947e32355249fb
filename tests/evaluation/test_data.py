"""`Dataset` serves the samples it was given, in order, in batches, without changing them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.data import Dataset
from workbench.errors import InputError


def _arrays(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 2, 2)
    return x, np.arange(n) % 3


def test_batches_cover_every_sample_in_order() -> None:
    x, y = _arrays(10)
    data = Dataset.from_arrays(x, y, batch_size=4)
    batches = list(data)
    assert len(data) == len(batches) == 3
    assert [b[0].shape for b in batches] == [(4, 1, 2, 2), (4, 1, 2, 2), (2, 1, 2, 2)]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    assert data.num_samples == 10
    # iterable again, with the same result
    np.testing.assert_array_equal(next(iter(data))[0], batches[0][0])


def test_from_arrays_takes_torch_tensors() -> None:
    data = Dataset.from_arrays(torch.ones(5, 3), torch.tensor([0, 1, 2, 3, 4], dtype=torch.int32))
    assert isinstance(data.inputs, np.ndarray) and data.inputs.dtype == np.float32
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, [0, 1, 2, 3, 4])


def test_float_labels_are_kept_for_regression() -> None:
    data = Dataset.from_arrays(np.zeros((3, 2), np.float32), np.array([0.5, 1.5, 2.5]))
    assert data.labels.dtype == np.float64


def test_take_and_with_batch_size_return_new_datasets() -> None:
    x, y = _arrays(10)
    data = Dataset.from_arrays(x, y, batch_size=4, name="toy")
    first = data.take(6)
    assert first.num_samples == 6 and first.batch_size == 4 and len(first) == 2
    np.testing.assert_array_equal(first.inputs, x[:6])
    assert first.name == "toy[:6]"
    assert data.take(100).num_samples == 10  # fewer samples than asked: all of them
    rebatched = data.with_batch_size(3)
    assert len(rebatched) == 4 and rebatched.num_samples == 10
    assert data.batch_size == 4 and data.num_samples == 10  # the original is untouched
    np.testing.assert_array_equal(data.inputs, _arrays(10)[0])
    with pytest.raises(InputError, match="positive"):
        data.take(0)


def test_from_batches_reads_a_generator_once() -> None:
    x, y = _arrays(10)

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, 10, 3):
            yield x[start : start + 3], y[start : start + 3]

    data = Dataset.from_batches(batches(), name="gen")
    assert data.batch_size == 3 and len(data) == 4 and data.name == "gen"
    np.testing.assert_array_equal(data.inputs, x)
    np.testing.assert_array_equal(data.labels, y)


def test_from_batches_takes_a_torch_dataloader() -> None:
    x = torch.rand(20, 1, 8, 8)
    y = torch.arange(20) % 10
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    data = Dataset.from_batches(loader)
    assert (data.num_samples, data.batch_size, len(data)) == (20, 8, 3)
    np.testing.assert_array_equal(data.inputs, x.numpy())
    np.testing.assert_array_equal(data.labels, y.numpy())


def test_several_inputs_as_tuple_or_dict() -> None:
    a, b = np.zeros((6, 2), np.float32), np.ones((6, 3), np.int64)
    y = np.arange(6)
    by_position = Dataset.from_batches([((a[:4], b[:4]), y[:4]), ((a[4:], b[4:]), y[4:])])
    inputs, labels = next(iter(by_position))
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])
    assert isinstance(inputs, tuple) and [v.shape for v in inputs] == [(4, 2), (4, 3)]
    by_name = Dataset.from_arrays({"a": a, "b": torch.from_numpy(b)}, y, batch_size=5)
    batches = list(by_name)
    assert [sorted(inputs) for inputs, _ in batches] == [["a", "b"], ["a", "b"]]
    assert batches[1][0]["b"].shape == (1, 3) and isinstance(batches[1][0]["b"], np.ndarray)
    assert by_name.take(2).inputs["a"].shape == (2, 2)


def test_inconsistent_data_is_refused() -> None:
    x, y = _arrays(10)
    with pytest.raises(InputError, match="10 input samples but 9 labels"):
        Dataset.from_arrays(x, y[:9])
    with pytest.raises(InputError, match="batch_size"):
        Dataset.from_arrays(x, y, batch_size=0)
    with pytest.raises(InputError, match="disagree"):
        Dataset.from_arrays((x, x[:5]), y)
    with pytest.raises(InputError, match="no batches"):
        Dataset.from_batches([])
    with pytest.raises(InputError, match="pair"):
        Dataset.from_batches([x])
    with pytest.raises(InputError, match="do not fit"):
        Dataset.from_batches([(x[:2], y[:2]), (np.zeros((2, 5)), y[:2])])


def test_summary_and_html() -> None:
    data = Dataset.from_arrays(*_arrays(10), batch_size=4, name="toy")
    assert "10 samples in 3 batches of 4" in repr(data)
    assert "toy" in data._repr_html_() and "[1, 2, 2]:float32" in data._repr_html_()


def test_public_name() -> None:
    assert wb.Dataset is Dataset
