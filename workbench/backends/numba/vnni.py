"""AVX-512 VNNI's ``vpdpbusd`` from Numba: a 16-lane int32 vector type and the micro-kernel.

LLVM does not turn a plain uint8 x int8 loop into ``vpdpbusd`` (it widens to int16 and
uses ``vpmaddwd``, a quarter of the work per instruction; see `int8`), and Numba has no
vector types, so this module gives it one: ``i32x16``, an LLVM ``<16 x i32>`` that lives
in a register, and intrinsics to load, broadcast, store and multiply-add it. They are
compiled only where `AVAILABLE` says the CPU has the instruction (an instruction the CPU
lacks would crash the process, not raise).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils
from numba.extending import intrinsic

from workbench.backends.numba import simd

#: int32 lanes of one 512-bit vector: output channels per `block_product` block.
LANES = simd.LANES
#: the broadcast reads four uint8 activations as one int32, at any address
_I32 = simd.lanes("i32", scalar_align=1)
i32x16, _VECTOR = _I32.type, _I32.vector
zeros, load, broadcast, store = _I32.zeros, _I32.load, _I32.broadcast, _I32.store
AVAILABLE = simd.compiles_for_host("avx512vnni")


def _dot_add(typingctx: Any, acc: Any, unsigned: Any, signed: Any) -> Any:
    """``vpdpbusd``: each lane of ``acc`` plus the four products of ``unsigned``'s bytes
    (uint8) with ``signed``'s (int8) in that lane."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        kind = ir.FunctionType(_VECTOR, [_VECTOR] * 3)
        fn = cgutils.get_or_insert_function(builder.module, kind, "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, args)

    return i32x16(i32x16, i32x16, i32x16), codegen


dot_add: Any = intrinsic(_dot_add)


@njit(inline="always")
def block_product(xu: np.ndarray, w: np.ndarray, acc: np.ndarray, block: int) -> None:
    """``acc[:, 16 block : 16 block + 16] = xu @ w`` for one block of 16 channels.

    ``xu``: ``[M, K4]`` uint8, C-contiguous; ``w``: the block's ``K4 / 4 * 16`` int32
    (`int8.pack`); ``acc``: ``[M, 16 blocks]`` int32. Four rows at a time keep four
    vectors of sums in registers and load each weight vector once for the four.
    """
    m, quads = xu.shape[0], xu.shape[1] // 4
    x = xu.reshape(-1).view(np.int32)
    out = acc.reshape(-1)
    width, column = acc.shape[1], block * LANES
    i = 0
    while i + 4 <= m:
        s0, s1, s2, s3 = zeros(), zeros(), zeros(), zeros()
        row = i * quads
        for q in range(quads):
            weights = load(w, q * LANES)
            s0 = dot_add(s0, broadcast(x, row + q), weights)
            s1 = dot_add(s1, broadcast(x, row + quads + q), weights)
            s2 = dot_add(s2, broadcast(x, row + 2 * quads + q), weights)
            s3 = dot_add(s3, broadcast(x, row + 3 * quads + q), weights)
        store(out, i * width + column, s0)
        store(out, (i + 1) * width + column, s1)
        store(out, (i + 2) * width + column, s2)
        store(out, (i + 3) * width + column, s3)
        i += 4
    while i < m:
        s0 = zeros()
        for q in range(quads):
            s0 = dot_add(s0, broadcast(x, i * quads + q), load(w, q * LANES))
        store(out, i * width + column, s0)
        i += 1
