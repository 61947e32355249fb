"""The fused Numba embedding bag equals torch's on the CPU and on the CUDA simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.backends.numba.embedding_bag import embedding_bag
from workbench.errors import InputError

RNG = np.random.default_rng(0)
TABLE = RNG.random((50, 6), dtype=np.float32)
IDS_2D = RNG.integers(0, 50, (7, 3))
IDS_1D = np.array([4, 9, 9, 30, 2, 11, 49])
OFFSETS = np.array([0, 2, 2, 5])  # bag 1 is empty
WEIGHTS_1D = RNG.random(7, dtype=np.float32)


def _torch(
    ids: np.ndarray, offsets: np.ndarray | None, mode: str, w: np.ndarray | None = None
) -> np.ndarray:
    return F.embedding_bag(
        torch.from_numpy(ids),
        torch.from_numpy(TABLE),
        None if offsets is None else torch.from_numpy(offsets),
        mode=mode,
        per_sample_weights=None if w is None else torch.from_numpy(w),
    ).numpy()


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_cpu_bags_equal_torch(mode: str) -> None:
    np.testing.assert_allclose(
        embedding_bag(TABLE, IDS_2D, mode=mode), _torch(IDS_2D, None, mode), rtol=1e-6
    )
    got = embedding_bag(TABLE, IDS_1D, OFFSETS, mode=mode)
    np.testing.assert_allclose(got, _torch(IDS_1D, OFFSETS, mode), rtol=1e-6)
    assert not got[1].any()  # the empty bag


def test_cpu_per_sample_weights_equal_torch() -> None:
    got = embedding_bag(TABLE, IDS_1D, OFFSETS, per_sample_weights=WEIGHTS_1D)
    np.testing.assert_allclose(got, _torch(IDS_1D, OFFSETS, "sum", WEIGHTS_1D), rtol=1e-6)


@pytest.mark.parametrize(
    ("ids", "offsets", "message"),
    [
        (np.array([[1, 50]]), None, r"table items \(50 rows\) got id 50 at position 1"),
        (np.array([3, -1]), np.array([0]), r"got id -1 at position 1"),
        (IDS_1D, np.array([0, 4, 2]), r"offsets of table items must start at 0 and never decrease"),
    ],
)
def test_bad_lookups_are_one_line_before_the_kernel(
    ids: np.ndarray, offsets: np.ndarray | None, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        embedding_bag(TABLE, ids, offsets, name="items")


def test_cuda_kernel_on_the_simulator(tmp_path: Path) -> None:
    np.savez(tmp_path / "io.npz", table=TABLE, ids=IDS_1D, offsets=OFFSETS, w=WEIGHTS_1D,
             want_sum=_torch(IDS_1D, OFFSETS, "sum", WEIGHTS_1D),
             want_mean=_torch(IDS_2D, None, "mean"), ids2=IDS_2D)  # fmt: skip
    script = Path(__file__).with_name("sim_embedding_bag_cuda.py")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip().endswith("OK"), done.stderr[-2000:]
