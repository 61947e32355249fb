"""`Dataset`: inputs and labels, served as numpy batches for evaluation and calibration.

It lives below loaders, optimize and evaluation because all of them hand data around:
the sample loader builds datasets, transforms calibrate on them, evaluation scores on
them. A `Dataset` holds its samples in memory as numpy arrays (the sample data is a few
hundred kilobytes), so it can be iterated any number of times, cut with `take` and
re-batched with `with_batch_size` without touching the original.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from workbench.errors import InputError
from workbench.model import Model, is_array, to_numpy

#: What a model is fed (a session's ``run`` takes it): one array, several as a sequence
#: in input order, or a mapping of input name to array (numpy, or what a backend takes).
Inputs: TypeAlias = Mapping[str, Any] | Sequence[Any] | np.ndarray
#: A `Dataset`'s inputs as it holds them, first axis the sample: one numpy array, a
#: tuple of them in input order, or a dict of them by input name.
SampleArrays: TypeAlias = np.ndarray | tuple[np.ndarray, ...] | dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples and their labels, iterated as ``(inputs, labels)`` numpy batches.

    Build one with `Dataset.from_arrays`, `Dataset.from_batches` or
    ``wb.samples.dataset("digits")``. Every method returns a new `Dataset`; none
    changes this one or its arrays.

    Args:
        inputs: the model inputs, first axis the sample: one array (e.g. float32
            ``(N, 1, 8, 8)`` for the digits), a tuple of arrays in the model's input
            order, or a dict of input name to array.
        labels: one label per sample, first axis the sample (integer labels are
            stored as int64).
        batch_size: samples per batch; the last batch may be smaller.
        name: a display name such as ``"digits/test"``.

    Raises:
        InputError: the arrays disagree on the number of samples, or the batch size is
            not positive.

    Example:
        >>> data = Dataset.from_arrays(np.zeros((10, 1, 8, 8), np.float32), np.arange(10))
        >>> len(data), data.num_samples
        (1, 10)
        >>> [x.shape for x, y in data.with_batch_size(4)]
        [(4, 1, 8, 8), (4, 1, 8, 8), (2, 1, 8, 8)]
    """

    inputs: SampleArrays
    labels: np.ndarray
    batch_size: int = 64
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int | np.integer) or self.batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        counts = {len(a) for a in _arrays(self.inputs)}
        if len(counts) != 1:
            raise InputError(f"inputs disagree on the number of samples: {sorted(counts)}")
        if counts != {len(self.labels)}:
            raise InputError(
                f"{counts.pop()} input samples but {len(self.labels)} labels; "
                "give one label per sample"
            )

    # ---- construction ------------------------------------------------------------
    @classmethod
    def from_arrays(cls, x: Any, y: Any, batch_size: int = 64, name: str = "") -> Dataset:
        """A dataset over arrays already in memory.

        Args:
            x: inputs, first axis the sample: a numpy array or torch tensor, or a
                tuple / dict of them for a model with several inputs.
            y: labels, one per sample (numpy array, torch tensor or list).
            batch_size: samples per batch.
            name: display name.

        Returns:
            A `Dataset` holding numpy copies of torch tensors (numpy arrays are used
            as they are, never written to).

        Example:
            >>> import torch
            >>> data = Dataset.from_arrays(torch.rand(100, 1, 8, 8), torch.arange(100) % 10)
            >>> data.labels.dtype
            dtype('int64')
        """
        return cls(_map(x, to_numpy), _labels(to_numpy(y)), int(batch_size), name)

    @classmethod
    def from_batches(cls, batches: Iterable[tuple[Any, Any]], name: str = "") -> Dataset:
        """A dataset gathered from any iterable of ``(inputs, labels)`` batches.

        The iterable (a list, a generator, a torch ``DataLoader``) is read once and
        its batches concatenated in memory; the batch size is that of the first batch.

        Args:
            batches: ``(inputs, labels)`` pairs; inputs as accepted by `from_arrays`.
            name: display name.

        Returns:
            A `Dataset` with the same samples in the same order.

        Raises:
            InputError: the iterable is empty or its batches do not fit together.

        Example:
            >>> pairs = [(np.zeros((8, 4), np.float32), np.zeros(8)) for _ in range(3)]
            >>> Dataset.from_batches(pairs).num_samples
            24
        """
        xs: list[Any] = []
        ys: list[np.ndarray] = []
        for item in batches:
            try:
                x, y = item
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"each batch must be an (inputs, labels) pair, got {type(item).__name__}"
                ) from exc
            xs.append(_map(x, to_numpy))
            ys.append(np.atleast_1d(to_numpy(y)))
        if not xs:
            raise InputError("from_batches got no batches")
        try:
            inputs = _concat(xs)
            labels = np.concatenate(ys)
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"batches do not fit together: {exc}") from exc
        return cls(inputs, _labels(labels), len(ys[0]), name)

    # ---- facts -------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """Number of samples."""
        return len(self.labels)

    def __len__(self) -> int:
        """Number of batches (the last one may be smaller)."""
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[SampleArrays, np.ndarray]]:
        """Yield ``(inputs, labels)`` numpy batches in order (views, not copies)."""
        for start in range(0, self.num_samples, self.batch_size):
            window = slice(start, start + self.batch_size)
            yield _map(self.inputs, lambda a, w=window: a[w]), self.labels[window]

    # ---- derived datasets --------------------------------------------------------
    def take(self, n: int) -> Dataset:
        """The first ``n`` samples (all of them if there are fewer), e.g. for calibration.

        Example:
            >>> calibration = wb.samples.dataset("digits", split="train").take(256)
        """
        if n < 1:
            raise InputError(f"take needs a positive number of samples, got {n}")
        name = f"{self.name}[:{n}]" if self.name else ""
        return Dataset(_map(self.inputs, lambda a: a[:n]), self.labels[:n], self.batch_size, name)

    def with_batch_size(self, batch_size: int) -> Dataset:
        """The same samples served in batches of ``batch_size``."""
        return Dataset(self.inputs, self.labels, batch_size, self.name)

    # ---- display -----------------------------------------------------------------
    def describe(self) -> str:
        """A one-line summary: name, samples, batches, input shapes and dtypes."""
        shapes = ", ".join(f"{list(a.shape[1:])}:{a.dtype}" for a in _arrays(self.inputs))
        name = f"{self.name}: " if self.name else ""
        return (
            f"{name}{self.num_samples} samples in {len(self)} batches of {self.batch_size}, "
            f"inputs {shapes}, labels {self.labels.dtype}"
        )

    def __repr__(self) -> str:
        return f"Dataset({self.describe()})"

    def _repr_html_(self) -> str:
        return f"<b>Dataset</b> {html.escape(self.describe())}"


def reiterable(data: Any) -> Any:
    """``data`` if it can be iterated again; a one-shot iterator (a generator) is gathered
    into a `Dataset` first, since sweeps and sensitivity read the data many times.

    Args:
        data: a `Dataset`, any re-iterable of ``(inputs, labels)`` batches, a one-shot
            iterator of them, or None.

    Returns:
        ``data`` itself, or a `Dataset` holding what the iterator yielded.
    """
    if data is not None and iter(data) is data:
        return Dataset.from_batches(data)
    return data


def input_pool(model: Model, inputs: Any) -> dict[str, np.ndarray]:
    """The samples a timing run takes its batches from, checked against ``model``.

    Args:
        model: the model the inputs are for.
        inputs: arrays as `wb.profile`'s ``inputs=`` takes them (a dict by input name, a
            sequence in input order, one array; numpy or torch), or a `Dataset` or any
            iterable of ``(inputs, labels)`` batches, whose inputs are used.

    Returns:
        A dict of input name to array, first axis the sample.

    Raises:
        InputError: inputs that do not fit the model, or no samples.
    """
    if isinstance(inputs, Dataset):
        arrays = inputs.inputs
    elif isinstance(inputs, Mapping) or is_array(inputs):
        arrays = inputs
    elif _is_arrays(inputs):
        arrays = tuple(inputs)
    else:
        arrays = Dataset.from_batches(inputs).inputs
    pool = model.check_inputs(arrays)
    if not pool or any(a.ndim == 0 or len(a) == 0 for a in pool.values()):
        raise InputError(f"the inputs for {model.name} hold no samples")
    return pool


def timing_inputs(model: Model, inputs: Any, batch_size: int) -> dict[str, np.ndarray]:
    """What one timed call runs: arrays as given (their batch is the batch timed), or
    the first ``batch_size`` samples of a `Dataset` / iterable of batches.

    Raises:
        InputError: inputs that do not fit the model.
    """
    if isinstance(inputs, Mapping) or is_array(inputs) or _is_arrays(inputs):
        return model.check_inputs(inputs)
    return batch_inputs(model, input_pool(model, inputs), batch_size)


def _is_arrays(inputs: Any) -> bool:
    return isinstance(inputs, list | tuple) and bool(inputs) and all(is_array(v) for v in inputs)


def batch_inputs(
    model: Model, pool: Mapping[str, np.ndarray] | None, batch_size: int
) -> dict[str, np.ndarray]:
    """``batch_size`` samples to time: the pool's first ones, or generated inputs.

    Args:
        model: the model (its `Model.example_inputs` when there is no pool).
        pool: samples from `input_pool`, or None; a pool with fewer samples than
            ``batch_size`` is repeated from its start.
        batch_size: samples in the batch.

    Returns:
        A dict of input name to array with ``batch_size`` rows.
    """
    if pool is None:
        return model.example_inputs(batch_size)
    return {
        name: np.ascontiguousarray(np.take(a, np.arange(batch_size) % len(a), axis=0))
        for name, a in pool.items()
    }


def _labels(labels: np.ndarray) -> np.ndarray:
    if labels.ndim == 0:
        raise InputError("labels must have one entry per sample, got a scalar")
    if np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        return labels.astype(np.int64, copy=False)
    return labels


def _map(inputs: Any, fn: Any) -> Any:
    """Apply ``fn`` to each array of one input, a tuple of inputs or a dict of inputs."""
    if isinstance(inputs, Mapping):
        return {key: fn(value) for key, value in inputs.items()}
    # a list or tuple of arrays (a DataLoader collates several inputs into a list) is
    # several inputs; a nested list of numbers is one input
    if isinstance(inputs, list | tuple) and inputs and all(is_array(v) for v in inputs):
        return tuple(fn(value) for value in inputs)
    return fn(inputs)


def _arrays(inputs: SampleArrays) -> list[np.ndarray]:
    if isinstance(inputs, dict):
        return list(inputs.values())
    if isinstance(inputs, tuple):
        return list(inputs)
    return [inputs]


def _concat(parts: list[Any]) -> SampleArrays:
    first = parts[0]
    if isinstance(first, dict):
        return {key: np.concatenate([p[key] for p in parts]) for key in first}
    if isinstance(first, tuple):
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))
    return np.concatenate(parts)
