"""Vector registers from Numba: a 16-lane LLVM vector type and its basic intrinsics.

Numba has no vector types, and LLVM does not always find the vector code a kernel
needs (`vnni`'s ``vpdpbusd``, `packed_gemm`'s register-blocked sums), so those modules
write it with these: `lanes` makes a Numba type for ``<16 x T>`` (one zmm register with
AVX-512) and the intrinsics to make, load, broadcast and store it; each module adds its
own arithmetic. The IR is plain LLVM, so it compiles on any CPU; where it is fast (or,
for a target-specific instruction, where it may run at all) is each module's
``AVAILABLE``, which `compiles_for_host` starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, register_model

#: lanes of one vector: 16 x 32 bits, a 512-bit register
LANES = 16
#: shuffle mask taking lane 0 into every lane
_SPLAT = ir.Constant(ir.VectorType(ir.IntType(32), LANES), None)


def compiles_for_host(feature: str) -> bool:
    """Whether Numba compiles for this CPU (no ``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES``,
    as for a portable cache) and the CPU has ``feature`` (an LLVM feature name)."""
    import llvmlite.binding
    import numba

    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:  # type: ignore[attr-defined]
        return False
    return bool(llvmlite.binding.get_host_cpu_features().get(feature, False))


#: Whether the kernels that keep a few 16-lane vectors in registers (max pooling, the
#: depthwise and first convolutions; not `packed_gemm`'s 12 sums) beat the scalar loops
#: here: with AVX2 each vector is two ymm halves. Measured on the 2-core AMD EPYC
#: without AVX-512 (one thread, alternated, loaded): the 3x3 stride-2 MaxPool on
#: 112x112x24 (ShuffleNet) 0.10 against 0.51 ms, on 109x109x96 (SqueezeNet) 0.25
#: against 1.39; depthwise 3x3 and 5x5 on mobilenet_v3_small's shapes 0.5-0.9x the
#: time of the loops over the channels, ShuffleNet's in all 0.80 against 1.13 ms.
VECTORS = compiles_for_host("avx2")


#: the element types a vector may hold, by the names `Vector` takes
ELEMENTS = {"f32": ir.FloatType(), "i32": ir.IntType(32)}


class Vector(types.Type):
    """A Numba type for ``<16 x element>``, ``element`` a key of `ELEMENTS`."""

    def __init__(self, element: str) -> None:
        self.element = element
        super().__init__(name=f"{element}x{LANES}")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm: Any, fe_type: Vector) -> None:
        super().__init__(dmm, fe_type, ir.VectorType(ELEMENTS[fe_type.element], LANES))


@dataclass(frozen=True)
class Lanes:
    """One vector type (`type`, its LLVM type `vector`) and its intrinsics.

    ``zeros()``; ``load(array, i)``: the 16 elements of a 1-D ``array`` from ``i`` on;
    ``broadcast(array, i)``: ``array[i]`` in every lane; ``store(array, i, v)``.
    """

    type: Vector
    vector: ir.VectorType
    zeros: Any
    load: Any
    broadcast: Any
    store: Any


def lanes(element: str, scalar_align: int) -> Lanes:
    """The vector type ``<16 x element>`` (``element`` a key of `ELEMENTS`) and its
    intrinsics.

    ``scalar_align``: the alignment `broadcast` may assume of the one element it reads
    (1 where that element is a view of narrower data, e.g. four uint8 read as an int32).
    """
    instance = Vector(element)
    vector = ir.VectorType(ELEMENTS[element], LANES)

    def address(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
        data = context.make_array(array_type)(context, builder, array).data
        return builder.gep(data, [index])

    def zeros(typingctx: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return ir.Constant(vector, None)

        return instance(), codegen

    def load(typingctx: Any, array: Any, index: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            at = address(context, builder, sig.args[0], args[0], args[1])
            return builder.load(builder.bitcast(at, vector.as_pointer()), align=4)

        return instance(array, index), codegen

    def broadcast(typingctx: Any, array: Any, index: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            at = address(context, builder, sig.args[0], args[0], args[1])
            value = builder.load(at, align=scalar_align)
            undefined = ir.Constant(vector, ir.Undefined)
            first = builder.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(first, undefined, _SPLAT)

        return instance(array, index), codegen

    def store(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            at = address(context, builder, sig.args[0], args[0], args[1])
            builder.store(args[2], builder.bitcast(at, vector.as_pointer()), align=4)
            return context.get_dummy_value()

        return types.void(array, index, value), codegen

    return Lanes(
        type=instance,
        vector=vector,
        zeros=intrinsic(zeros),
        load=intrinsic(load),
        broadcast=intrinsic(broadcast),
        store=intrinsic(store),
    )
