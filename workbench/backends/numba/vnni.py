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
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: int32 lanes of one 512-bit vector: output channels per `block_product` block.
LANES = 16
_VECTOR = ir.VectorType(ir.IntType(32), LANES)


def _available() -> bool:
    """Whether Numba compiles for this CPU (no ``NUMBA_CPU_NAME``, as for a portable
    cache) and the CPU has AVX-512 VNNI."""
    import llvmlite.binding
    import numba

    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:  # type: ignore[attr-defined]
        return False
    return bool(llvmlite.binding.get_host_cpu_features().get("avx512vnni", False))


AVAILABLE = _available()


class _I32x16(types.Type):
    def __init__(self) -> None:
        super().__init__(name="i32x16")


i32x16 = _I32x16()


@register_model(_I32x16)
class _I32x16Model(models.PrimitiveModel):
    def __init__(self, dmm: Any, fe_type: Any) -> None:
        super().__init__(dmm, fe_type, _VECTOR)


def _address(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _zeros(typingctx: Any) -> Any:
    """A vector of zeros."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return ir.Constant(_VECTOR, None)

    return i32x16(), codegen


zeros: Any = intrinsic(_zeros)


def _load(typingctx: Any, array: Any, index: Any) -> Any:
    """The 16 int32 values of a 1-D int32 ``array`` from ``index`` on."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        address = _address(context, builder, sig.args[0], args[0], args[1])
        return builder.load(builder.bitcast(address, _VECTOR.as_pointer()), align=4)

    return i32x16(array, index), codegen


load: Any = intrinsic(_load)


def _broadcast(typingctx: Any, array: Any, index: Any) -> Any:
    """``array[index]`` (int32: four uint8 activations) in every lane."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        address = _address(context, builder, sig.args[0], args[0], args[1])
        value = builder.load(address, align=1)
        first = builder.insert_element(
            ir.Constant(_VECTOR, ir.Undefined), value, ir.Constant(ir.IntType(32), 0)
        )
        return builder.shuffle_vector(
            first, ir.Constant(_VECTOR, ir.Undefined), ir.Constant(_VECTOR, None)
        )

    return i32x16(array, index), codegen


broadcast: Any = intrinsic(_broadcast)


def _dot_add(typingctx: Any, acc: Any, unsigned: Any, signed: Any) -> Any:
    """``vpdpbusd``: each lane of ``acc`` plus the four products of ``unsigned``'s bytes
    (uint8) with ``signed``'s (int8) in that lane."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        kind = ir.FunctionType(_VECTOR, [_VECTOR] * 3)
        fn = cgutils.get_or_insert_function(builder.module, kind, "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, args)

    return i32x16(i32x16, i32x16, i32x16), codegen


dot_add: Any = intrinsic(_dot_add)


def _store(typingctx: Any, array: Any, index: Any, vector: Any) -> Any:
    """Write ``vector`` to a 1-D int32 ``array`` from ``index`` on."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        address = _address(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(address, _VECTOR.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(array, index, vector), codegen


store: Any = intrinsic(_store)


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
