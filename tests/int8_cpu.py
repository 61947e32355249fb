"""Whether ONNX Runtime's INT8 products are exact on this CPU, for tests of INT8 accuracy.

ORT's u8s8 products on an x86 CPU without VNNI (AVX2 only) sum pairs of 8-bit products in
saturating int16 (``vpmaddubsw``), so its INT8 variants lose accuracy there that they keep
elsewhere: on the AVX2-only AMD EPYC VM, toy-mlp's int8-static SQNR read 19.7 dB (above
20 with VNNI), digits-cnn's 19.98, the anomaly autoencoder's int8-dynamic ROC-AUC 0.946
against 0.987. Tests of those accuracies are expected to fail there, and say why.
"""

from __future__ import annotations

import pytest

from workbench.evaluation.lm_why import INT8_DOT_FLAGS
from workbench.machine import cpu_info

#: the CPU multiplies 8-bit integers into 32-bit sums (VNNI, AMX, the Arm dot products)
INT8_DOT = bool(set(INT8_DOT_FLAGS) & set(cpu_info()["flags"]))

#: marks a test of ORT's INT8 accuracy: an expected failure where its products saturate
saturates_without_int8_dot = pytest.mark.xfail(
    not INT8_DOT, reason="ORT's u8s8 products saturate int16 pair sums without VNNI", strict=False
)
