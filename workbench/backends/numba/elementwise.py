"""Elementwise ops as Numba ufuncs: NumPy broadcasting and ``out=`` for free.

Each ufunc is compiled on first use for the one float dtype it meets (float32 or
float64; its scalar kernel cached on disk).
Integer tensors (shape arithmetic that is not constant) fall back to NumPy's own
ufuncs, which are exact.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, vectorize

from workbench.errors import UnsupportedModelError


def _relu(x: float) -> float:
    return x if x > 0 else x - x


def _sigmoid(x: float) -> float:
    # split by sign so exp never overflows
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


def _gelu(x: float) -> float:
    return 0.5 * x * (1 + math.erf(x * 0.7071067811865476))


def _gelu_tanh(x: float) -> float:
    return 0.5 * x * (1 + math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def _erf_rational(x: float) -> float:
    """erf for float32 as a rational function of x (Eigen's fast erf coefficients): no
    libm call, so LLVM vectorises the loop; within 4.2e-7 of `math.erf` over the floats
    (measured on a 200,001-point grid over [-6, 6]), erf(+-4) rounds to +-1 in float32.
    NaN passes through (both comparisons are False)."""
    x = 4.0 if x > 4.0 else x
    x = -4.0 if x < -4.0 else x
    x2 = x * x
    p = -2.72614225801306e-10
    p = p * x2 + 2.77068142495902e-08
    p = p * x2 - 2.10102402082508e-06
    p = p * x2 - 5.69250639462346e-05
    p = p * x2 - 7.34990630326855e-04
    p = p * x2 - 2.95459980854025e-03
    p = p * x2 - 1.60960333262415e-02
    q = -1.45660718464996e-05
    q = q * x2 - 2.13374055278905e-04
    q = q * x2 - 1.68282697438203e-03
    q = q * x2 - 7.37332916720468e-03
    q = q * x2 - 1.42647390514189e-02
    return x * p / q


def _gelu_rational(x: float) -> float:
    return 0.5 * x * (1 + _erf_rational_jit(x * 0.7071067811865476))


def _tanh(x: float) -> float:
    return math.tanh(x)


def _erf(x: float) -> float:
    return math.erf(x)


def _sqrt(x: float) -> float:
    return math.sqrt(x)


def _exp(x: float) -> float:
    return math.exp(x)


def _neg(x: float) -> float:
    return -x


def _abs(x: float) -> float:
    return abs(x)


def _reciprocal(x: float) -> float:
    return 1 / x


def _log(x: float) -> float:
    return math.log(x)


#: From this magnitude on every float is an integer; math.floor would also overflow
#: its int64 result there (and on inf and NaN, which compare False and pass through).
_INTEGRAL = 2.0**52


def _floor(x: float) -> float:
    return math.floor(x) if abs(x) < _INTEGRAL else x


def _ceil(x: float) -> float:
    return math.ceil(x) if abs(x) < _INTEGRAL else x


def _leaky_relu(x: float, alpha: float, beta: float) -> float:
    return x if x >= 0 else alpha * x


def _hard_sigmoid(x: float, alpha: float, beta: float) -> float:
    return max(0.0, min(1.0, alpha * x + beta))


def _hard_swish(x: float, alpha: float, beta: float) -> float:
    return x * max(0.0, min(1.0, alpha * x + beta))


def _add(x: float, y: float) -> float:
    return x + y


def _add_relu(x: float, y: float) -> float:
    """A residual block's Add with its Relu fused: one pass over memory, not two."""
    total = x + y
    return total if total > 0 else total - total


def _sub(x: float, y: float) -> float:
    return x - y


def _mul(x: float, y: float) -> float:
    return x * y


def _div(x: float, y: float) -> float:
    return x / y


def _pow(x: float, y: float) -> float:
    return x**y


def _max(x: float, y: float) -> float:
    # a NaN in either operand is the result, as with np.maximum
    return x if x >= y or x != x else y


def _min(x: float, y: float) -> float:
    return x if x <= y or x != x else y


#: op -> (scalar function for Numba, NumPy ufunc for non-float dtypes or None)
UNARY: dict[str, tuple[Callable[..., Any], Any]] = {
    "Relu": (_relu, None),
    "Sigmoid": (_sigmoid, None),
    "Tanh": (_tanh, np.tanh),
    "Erf": (_erf, None),
    "Sqrt": (_sqrt, np.sqrt),
    "Exp": (_exp, np.exp),
    "Gelu": (_gelu, None),
    "GeluTanh": (_gelu_tanh, None),
    "Neg": (_neg, np.negative),
    "Abs": (_abs, np.abs),
    "Reciprocal": (_reciprocal, None),
    "Log": (_log, None),
    "Floor": (_floor, None),
    "Ceil": (_ceil, None),
}

#: Float-only ops with two attributes, ``f(x, alpha, beta)``; defaults of each.
PARAMETRIC: dict[str, tuple[Callable[..., Any], float, float]] = {
    "LeakyRelu": (_leaky_relu, 0.01, 0.0),
    "HardSigmoid": (_hard_sigmoid, 0.2, 0.5),
    "HardSwish": (_hard_swish, 1 / 6, 0.5),  # not attributes: fixed by the spec
}

#: Comparisons and logic, exact on any dtype: NumPy's own ufuncs, writing booleans.
LOGICAL: dict[str, Any] = {
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
    "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
    "Not": np.logical_not,
}

BINARY: dict[str, tuple[Callable[..., Any], Any]] = {
    "Add": (_add, np.add),
    "AddRelu": (_add_relu, None),
    "Sub": (_sub, np.subtract),
    "Mul": (_mul, np.multiply),
    "Div": (_div, None),
    "Pow": (_pow, np.power),
    "Max": (_max, np.maximum),
    "Min": (_min, np.minimum),
}


#: float32 versions of ops whose libm call (scalar, one element at a time) dominated: the
#: sample transformer's two Gelu layers were 40% of its time at batch 32 with `math.erf`.
#: float64 keeps libm's exact erf.
FLOAT32_UNARY: dict[str, Callable[..., Any]] = {"Erf": _erf_rational, "Gelu": _gelu_rational}

_erf_rational_jit = njit(inline="always")(_erf_rational)


def ufunc(op: str, dtype: Any = np.float64) -> Any:
    """The compiled Numba ufunc for ``op`` (an entry of `UNARY`, `PARAMETRIC` or `BINARY`)
    on ``dtype`` operands (float32 takes `FLOAT32_UNARY`'s version where there is one)."""
    name = np.dtype(dtype).name
    if op in FLOAT32_UNARY and name == "float32":
        return _ufunc(op, name, FLOAT32_UNARY[op])
    scalar = (UNARY.get(op) or PARAMETRIC.get(op) or BINARY[op])[0]
    return _ufunc(op, name, scalar)


@functools.cache
def _ufunc(op: str, dtype: str, scalar: Callable[..., Any]) -> Any:
    """``scalar`` as a ufunc of one signature, on ``dtype`` only: Numba builds a ufunc's
    loop for each signature when it is made, an LLVM compile its disk cache does not keep
    (50-80 ms each: a compile from cache spent most of its time there with both float
    dtypes built for every op)."""
    arity = 3 if op in PARAMETRIC else 1 if op in UNARY else 2
    return vectorize([f"{dtype}({', '.join([dtype] * arity)})"], cache=True)(scalar)


def parameters(op: str, attrs: dict[str, Any]) -> tuple[float, float]:
    """``(alpha, beta)`` of a `PARAMETRIC` op from its node's attributes."""
    _, alpha, beta = PARAMETRIC[op]
    if op == "HardSwish":
        return alpha, beta
    return float(attrs.get("alpha", alpha)), float(attrs.get("beta", beta))


def _compiled(args: list[np.ndarray]) -> bool:
    """Whether the Numba ufunc takes these operands (one float dtype)."""
    return (
        all(a.dtype in (np.float32, np.float64) for a in args) and len({a.dtype for a in args}) == 1
    )


def bind(op: str, args: list[np.ndarray], out: np.ndarray) -> Callable[[], Any]:
    """`apply` into ``out`` with its dispatch decided once: a zero-argument callable.

    Contiguous operands run a cached ``@njit`` loop (`_loop`): a unary or parametric op
    over the flat arrays, a binary one over ``[outer, middle, inner]`` views in which
    each operand is whole or repeated on each axis (`_as_blocks`: a bias, a mean, a
    squeeze-and-excitation scale, an attention mask). Other operands run the op's ufunc,
    whose loop Numba builds with LLVM in every process (50-100 ms per op and dtype,
    where loading a cached kernel takes a few).
    """
    if not _compiled(args):
        return functools.partial(apply, op, args, out)
    dtype = args[0].dtype.name
    if op not in BINARY and args[0].shape == out.shape and _contiguous(args[0], out):
        flat = [a.reshape(-1) for a in args]
        return functools.partial(_loop(op, dtype), *flat, out.reshape(-1))
    blocks = _as_blocks(args, out) if op in BINARY else None
    if blocks is not None:
        return functools.partial(_loop(op, dtype), *blocks)
    return functools.partial(ufunc(op, args[0].dtype), *args, out=out)


def _contiguous(*arrays: np.ndarray) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


def _as_blocks(args: list[np.ndarray], out: np.ndarray) -> list[np.ndarray] | None:
    """``args`` and ``out`` as 3-D views ``[outer, middle, inner]`` in which each
    operand is whole or repeated (size 1) on each axis; None when the broadcast has no
    such split or an operand is not contiguous (a view would copy)."""
    if not _contiguous(*args, out):
        return None
    shape = out.shape
    padded = [(1,) * (len(shape) - a.ndim) + a.shape for a in args]
    for first in range(len(shape) + 1):
        for second in range(first, len(shape) + 1):
            parts = (shape[:first], shape[first:second], shape[second:])
            cuts = [(p[:first], p[first:second], p[second:]) for p in padded]
            if all(
                c in (part, (1,) * len(part))
                for cut in cuts
                for c, part in zip(cut, parts, strict=True)
            ):
                sizes = [math.prod(part) for part in parts]
                views = [
                    a.reshape(
                        [
                            n if c == part else 1
                            for c, part, n in zip(cut, parts, sizes, strict=True)
                        ]
                    )
                    for a, cut in zip(args, cuts, strict=True)
                ]
                return [*views, out.reshape(sizes)]
    return None


def _unary_flat(x: np.ndarray, out: np.ndarray) -> None:
    """``out = scalar(x)`` over flat arrays (``scalar`` is this copy's global)."""
    for j in range(out.size):
        out[j] = scalar(x[j])  # type: ignore[name-defined]  # noqa: F821


def _parametric_flat(x: np.ndarray, alpha: np.ndarray, beta: np.ndarray, out: np.ndarray) -> None:
    """``out = scalar(x, alpha, beta)`` over flat arrays (``alpha``, ``beta``: one value)."""
    a, b = alpha[0], beta[0]
    for j in range(out.size):
        out[j] = scalar(x[j], a, b)  # type: ignore[name-defined]  # noqa: F821


def _binary_blocks(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    """``out = scalar(x, y)`` over [outer, middle, inner], each operand's axes whole or 1:
    one loop per kind of row (both whole, one repeated value), each over contiguous
    values, so LLVM vectorises it."""
    outer, middle, inner = out.shape
    for i in range(outer):
        for k in range(middle):
            a = x[min(i, x.shape[0] - 1), min(k, x.shape[1] - 1)]
            b = y[min(i, y.shape[0] - 1), min(k, y.shape[1] - 1)]
            dest = out[i, k]
            if a.size == inner and b.size == inner:
                for j in range(inner):
                    dest[j] = scalar(a[j], b[j])  # type: ignore[name-defined]  # noqa: F821
            elif a.size == inner:
                value = b[0]
                for j in range(inner):
                    dest[j] = scalar(a[j], value)  # type: ignore[name-defined]  # noqa: F821
            elif b.size == inner:
                value = a[0]
                for j in range(inner):
                    dest[j] = scalar(value, b[j])  # type: ignore[name-defined]  # noqa: F821
            else:
                result = scalar(a[0], b[0])  # type: ignore[name-defined]  # noqa: F821
                for j in range(inner):
                    dest[j] = result


@functools.cache
def _loop(op: str, dtype: str) -> Any:
    """The cached ``@njit`` loop of ``op`` on ``dtype``: a copy of `_unary_flat`,
    `_parametric_flat` or `_binary_blocks` whose global ``scalar`` is the op's function
    (float32 takes `FLOAT32_UNARY`'s version where there is one), inlined. Each copy has
    its own name, so its own disk cache (as `cpu.twin` does)."""
    template: Callable[..., None]
    if op in PARAMETRIC:
        template, fn = _parametric_flat, PARAMETRIC[op][0]
    elif op in UNARY:
        template = _unary_flat
        fn = FLOAT32_UNARY[op] if op in FLOAT32_UNARY and dtype == "float32" else UNARY[op][0]
    else:
        template, fn = _binary_blocks, BINARY[op][0]
    name = f"{template.__name__}_{op}_{dtype}"
    scalar = njit(inline="always", error_model="numpy")(fn)
    copy = types.FunctionType(template.__code__, {**template.__globals__, "scalar": scalar}, name)
    copy.__qualname__ = name
    return njit(cache=True, nogil=True, error_model="numpy")(copy)


def apply(op: str, args: list[np.ndarray], out: np.ndarray | None) -> np.ndarray:
    """Apply elementwise ``op`` to ``args`` (broadcasting), into ``out`` when given."""
    if _compiled(args):
        fn = ufunc(op, args[0].dtype)
        return fn(*args, out=out) if out is not None else fn(*args)
    fn = (UNARY.get(op) or BINARY[op])[1] or _integer_fallback(op)
    # mixed dtypes (Pow's exponent may differ): ONNX keeps the first input's dtype
    result = np.asarray(fn(*args)).astype(args[0].dtype, copy=False)
    if out is None:
        return result
    np.copyto(out, result, casting="unsafe")
    return out


def _integer_fallback(op: str) -> Any:
    if op == "Div":
        # ONNX integer division truncates toward zero, unlike NumPy's floor division
        return lambda x, y: np.trunc(np.true_divide(x, y))
    if op == "Relu":
        return lambda x: np.maximum(x, 0)
    if op == "AddRelu":
        return lambda x, y: np.maximum(x + y, 0)
    raise UnsupportedModelError(
        f"the numba backend has no {op} kernel for integer tensors; run this model on onnxruntime"
    )
