"""Run by test_tree_kernels.py in a child process with NUMBA_ENABLE_CUDASIM=1 (the
simulator must be chosen before numba.cuda is imported): the numba-cuda tree kernel on
the model and rows the parent wrote, against the outputs ONNX Runtime gave the parent.

    python sim_tree_cuda.py <folder with model.onnx and io.npz>

Prints ``OK`` on success."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import workbench as wb

folder = Path(sys.argv[1])
model = wb.load(folder / "model.onnx")
with np.load(folder / "io.npz") as io:
    rows, label, proba = io["rows"], io["label"], io["proba"]
got = wb.backend("numba-cuda").compile(model, "cuda:0").run({"input": rows})
np.testing.assert_array_equal(got[0], label)
np.testing.assert_allclose(got[1], proba, rtol=1e-5, atol=1e-6)
print("OK")
