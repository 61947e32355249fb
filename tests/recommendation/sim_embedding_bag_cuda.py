"""Run by test_numba_embedding_bag.py in a child process with NUMBA_ENABLE_CUDASIM=1 (the
simulator must be chosen before numba.cuda is imported): the CUDA embedding bag against
torch's results that the parent wrote.

    python sim_embedding_bag_cuda.py <folder with io.npz>

Prints ``OK`` on success."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from workbench.backends.numba.embedding_bag_cuda import embedding_bag_cuda

with np.load(Path(sys.argv[1]) / "io.npz") as io:
    table, ids, offsets, w = io["table"], io["ids"], io["offsets"], io["w"]
    got = embedding_bag_cuda(table, ids, offsets, per_sample_weights=w)
    np.testing.assert_allclose(got, io["want_sum"], rtol=1e-6)
    np.testing.assert_allclose(
        embedding_bag_cuda(table, io["ids2"], mode="mean"), io["want_mean"], rtol=1e-6
    )
print("OK")
