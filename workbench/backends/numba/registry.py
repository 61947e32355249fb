"""Custom kernels: users replace the kernel of an op type, or of one named node.

A custom kernel is any callable ``fn(*inputs, *outputs)`` that writes its results
into the preallocated ``outputs`` (NumPy arrays on ``"cpu"``, Numba device arrays on
``"cuda"``, where ``fn`` launches its own ``@cuda.jit`` kernel). Before a session
uses it, the executor runs it once on the node's real inputs and compares it with
the built-in kernel; a disagreement raises `BackendError` instead of silently
producing wrong numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.backends.numba.graph import ALIAS_OPS, Node
from workbench.errors import BackendError, InvalidArgumentError

CustomFn = Callable[..., Any]
_KERNELS: dict[tuple[str, str, str], CustomFn] = {}
_DEVICES = ("cpu", "cuda")


def register_kernel(
    fn: CustomFn | None = None,
    *,
    op_type: str | None = None,
    node: str | None = None,
    device: str = "cpu",
) -> Any:
    """Use ``fn`` for every node of ``op_type``, or for the node named ``node``.

    A node-specific kernel wins over an op-type one. Sessions compiled afterwards
    use it; it is checked against the built-in kernel on the first run at each set of
    input shapes. Works as a plain call or as a decorator.

    Args:
        fn: ``fn(*inputs, *outputs)``, writing into ``outputs``.
        op_type: an ONNX op type such as ``"Relu"``.
        node: an ONNX node name (as in ``Session.run_layers`` details).
        device: ``"cpu"`` (backend ``numba``) or ``"cuda"`` (backend ``numba-cuda``).

    Returns:
        ``fn`` (or a decorator when ``fn`` is omitted).

    Raises:
        InvalidArgumentError: (also a ``ValueError``) neither or both of ``op_type``
            and ``node``, an unknown device, or a view op (Reshape and friends have no
            output buffer to write).

    Example:
        >>> @register_kernel(op_type="Relu")
        ... @numba.njit
        ... def relu(x, out):
        ...     for i in range(x.size):
        ...         out.flat[i] = max(x.flat[i], 0.0)
    """
    if (op_type is None) == (node is None):
        raise InvalidArgumentError("give exactly one of op_type= or node=")
    if device not in _DEVICES:
        raise InvalidArgumentError(f"device must be one of {_DEVICES}, got {device!r}")
    if op_type in ALIAS_OPS:
        raise InvalidArgumentError(
            f"{op_type} returns a view of its input; it cannot take a custom kernel"
        )

    def decorate(function: CustomFn) -> CustomFn:
        key = ("node", node) if node is not None else ("op", str(op_type))
        _KERNELS[(device, *key)] = function
        return function

    return decorate(fn) if fn is not None else decorate


def unregister_kernel(
    *, op_type: str | None = None, node: str | None = None, device: str = "cpu"
) -> None:
    """Forget a custom kernel registered with the same arguments (no error if none)."""
    key = ("node", node) if node is not None else ("op", str(op_type))
    _KERNELS.pop((device, *key), None)


def custom_kernel(node: Node, device: str) -> CustomFn | None:
    """The custom kernel for ``node`` on ``device``, if one is registered."""
    return _KERNELS.get((device, "node", node.name)) or _KERNELS.get((device, "op", node.op_type))


def checked(
    fn: CustomFn,
    reference: Callable[[Node, list[Any], list[Any] | None], list[Any]],
    empty_like: Callable[[Any], Any],
    to_host: Callable[[Any], np.ndarray],
) -> Callable[[Node, list[Any], list[Any] | None], list[Any]]:
    """Wrap ``fn`` as an executor kernel that is verified on its first run at each shape.

    Args:
        fn: the user's kernel.
        reference: the built-in kernel for the same op, which defines the right answer.
        empty_like: allocates an output like a reference output, on the device.
        to_host: copies a device array to a NumPy array.
    """
    from workbench.tolerances import allclose, tolerance

    def kernel(node: Node, ins: list[Any], outs: list[Any] | None) -> list[Any]:
        if outs is not None:
            fn(*ins, *outs)
            return outs
        expected = reference(node, ins, None)
        outs = [empty_like(e) for e in expected]
        try:
            fn(*ins, *outs)
        except Exception as exc:
            raise BackendError(
                f"custom kernel for {node.name!r} ({node.op_type}) failed: {exc}"
            ) from exc
        for i, (got, want) in enumerate(zip(outs, expected, strict=True)):
            got_host, want_host = to_host(got), to_host(want)
            if not allclose(got_host, want_host):
                worst = float(np.max(np.abs(got_host.astype(np.float64) - want_host)))
                tol = tolerance(want_host.dtype)
                raise BackendError(
                    f"custom kernel for {node.name!r} ({node.op_type}) disagrees with the "
                    f"reference on output {i} of shape {list(want_host.shape)}: max abs error "
                    f"{worst:.3g} (rtol={tol.rtol}, atol={tol.atol}); fix it or unregister it"
                )
        return outs

    return kernel
