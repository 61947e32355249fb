"""Run by test_tree_kernels.py in a child process with NUMBA_ENABLE_CUDASIM=1 (the
simulator must be chosen before numba.cuda is imported): the numba-cuda tree kernel
against ONNX Runtime on a small forest, NaNs included. Prints ``OK`` on success."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier

import workbench as wb
from workbench.loaders.trees import run_onnx

x, y = load_breast_cancer(return_X_y=True)
x = x.astype(np.float32)
model = wb.load(GradientBoostingClassifier(n_estimators=5, max_depth=3).fit(x, y))
rows = x[:24].copy()
rows[::5, 7] = np.nan
session = wb.backend("numba-cuda").compile(model, "cuda:0")
got, want = session.run({"input": rows}), run_onnx(model, rows)
np.testing.assert_array_equal(got[0], want[0])
np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
print("OK")
