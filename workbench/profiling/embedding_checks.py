"""Bad lookups as one clear line: ids outside a table, offsets that go back, weights that
do not match their ids.

Runtimes disagree on bad ids: torch raises an ``IndexError`` deep in a kernel, ONNX's
``Gather`` takes a negative id as counting from the end (a silent wrong row). `check_lookups`
says which table and which id before any runtime sees them. Empty bags (an offset
repeated) are valid: their sum is zeros, as in torch.

Every timed run is checked: `workbench.profiling.measure.compiled` wraps the session of a
model with tables in `LookupChecked`, which checks each input set once, when it is staged
(``runner``) or run (``run``), never inside the timed calls.

Example:
    >>> check_lookups(wb.samples.load("dlrm"), {"dense": d, "ids_0": ids, ...})
    InputError: table tables.0 (3 rows) got id 7 at [12, 1] of input ids_0; ids must be in [0, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import InputError

if TYPE_CHECKING:
    from workbench.backends.base import Inputs, LayerTiming, Session
    from workbench.model import Model

__all__ = [
    "LookupChecked",
    "check_ids",
    "check_lookups",
    "check_offsets",
    "has_tables",
    "lookup_checked",
]


def check_ids(ids: np.ndarray, rows: int, table: str, source: str = "") -> None:
    """Raise `InputError` naming ``table`` and the first id outside ``[0, rows)``."""
    ids = np.asarray(ids)
    bad = np.flatnonzero((ids < 0) | (ids >= rows))
    if bad.size:
        where = list(np.unravel_index(int(bad[0]), ids.shape))
        of = f" of input {source}" if source else ""
        raise InputError(
            f"table {table} ({rows} rows) got id {int(ids.flat[bad[0]])} at "
            f"{[int(i) for i in where]}{of}; ids must be in [0, {rows})"
        )


def check_offsets(offsets: np.ndarray, ids: int, table: str) -> None:
    """Offsets into ``ids`` ids: start at 0, never decrease, stay within the ids."""
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or (offsets.size and offsets[0] != 0):
        raise InputError(
            f"offsets of table {table} must be 1-D and start at 0, got {offsets[:5].tolist()}..."
        )
    down = np.flatnonzero(np.diff(offsets) < 0)
    if down.size:
        i = int(down[0])
        raise InputError(
            f"offsets of table {table} decrease at position {i + 1} "
            f"({int(offsets[i])} then {int(offsets[i + 1])}); offsets must not decrease"
        )
    if offsets.size and offsets[-1] > ids:
        raise InputError(f"offsets of table {table} reach {int(offsets[-1])}, past its {ids} ids")


def check_lookups(model: Model, inputs: Mapping[str, np.ndarray]) -> None:
    """Check every table lookup ``model`` makes at ``inputs`` (see module docstring).

    A torch model: one forward pass whose pre-hooks check each ``nn.Embedding`` /
    ``nn.EmbeddingBag`` call (ids, offsets, per-sample weights) before the kernel runs.
    An ONNX model: each ``Gather`` of an initializer (a table, or a pruned table's
    remap) whose ids are a graph input.

    Raises:
        InputError: the first bad lookup, naming the table (its canonical layer).
    """
    if model.module is not None:
        _check_torch(model, inputs)
    elif model.proto is not None:
        _check_onnx(model, inputs)


#: ``(table layer, rows, the input its ids are)`` for each lookup of a model
Lookups = list[tuple[str, int, str]]


def _check_torch(model: Model, inputs: Mapping[str, np.ndarray]) -> Lookups | None:
    """`check_lookups` for a torch model; returns its lookups when every table reads
    ids straight from an input or a buffer of the model (no offsets, weights or computed
    ids), else None: then later inputs can be checked without a forward pass
    (`LookupChecked`)."""
    import torch

    from workbench.backends.torch.layers import module_paths
    from workbench.profiling.embeddings import is_table

    assert model.module is not None
    tensors = {name: torch.from_numpy(np.asarray(v)) for name, v in inputs.items()}
    constants = {id(buffer) for buffer in model.module.buffers()}
    direct: Lookups | None = []

    def check(path: str, table: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        nonlocal direct
        ids = args[0] if args else kwargs.get("input")
        offsets = args[1] if len(args) > 1 else kwargs.get("offsets")
        weights = args[2] if len(args) > 2 else kwargs.get("per_sample_weights")
        if not isinstance(ids, torch.Tensor):
            return
        check_ids(ids.numpy(), _rows(table), path)
        if isinstance(offsets, torch.Tensor):
            check_offsets(offsets.numpy(), ids.numel(), path)
        if isinstance(weights, torch.Tensor) and weights.shape != ids.shape:
            raise InputError(
                f"per-sample weights of table {path} have shape {list(weights.shape)}; "
                f"its ids have {list(ids.shape)} (one weight per id)"
            )
        if id(ids) in constants and offsets is None and weights is None:
            return  # a buffer of the model's (every item): checked once, the same each time
        source = next((name for name, t in tensors.items() if t is ids), None)
        if direct is not None and source is not None and offsets is None and weights is None:
            direct.append((path, _rows(table), source))
        else:
            direct = None

    assert model.module is not None
    handles = [
        sub.register_forward_pre_hook(lambda m, a, k, p=path: check(p, m, a, k), with_kwargs=True)
        for path, sub in module_paths(model.module).items()
        if _is_table(sub, is_table)
    ]
    try:
        with torch.inference_mode():
            model.module(*tensors.values())
    finally:
        for handle in handles:
            handle.remove()
    return direct


def _is_table(module: Any, is_table: Callable[[Any], bool]) -> bool:
    """A torch table: `nn.Embedding` / `nn.EmbeddingBag`, or a module standing for one
    under its path (a compressed table, torch's quantized bags) that says its rows."""
    return is_table(module) or isinstance(getattr(module, "num_embeddings", None), int)


def _rows(table: Any) -> int:
    rows = getattr(table, "num_embeddings", None)
    return int(rows) if isinstance(rows, int) else int(table.weight.shape[0])


def _onnx_lookups(model: Model) -> list[tuple[str, int, str]]:
    """``(layer, rows, ids input)`` of each ``Gather`` that reads an initializer (a 2-D
    table, or a pruned table's 1-D remap) at ids that are a graph input."""
    from workbench.loaders.onnx import canonical_layer_name

    assert model.proto is not None
    graph = model.proto.graph
    weights = {init.name: init for init in graph.initializer}
    fed = {spec.name for spec in model.inputs}
    found = []
    for i, node in enumerate(graph.node):
        table = weights.get(node.input[0]) if node.op_type == "Gather" else None
        if table is not None and len(table.dims) in (1, 2) and node.input[1] in fed:
            found.append((canonical_layer_name(node, i), int(table.dims[0]), node.input[1]))
    return found


def _check_onnx(model: Model, inputs: Mapping[str, np.ndarray]) -> None:
    for layer, rows, source in _onnx_lookups(model):
        if source in inputs:
            check_ids(inputs[source], rows, layer, source)


def has_tables(model: Model) -> bool:
    """Whether ``model`` looks anything up in a table (what `check_lookups` checks); a
    walk over its modules or graph nodes, no run."""
    if model.module is not None:
        from workbench.profiling.embeddings import is_table

        return any(_is_table(sub, is_table) for sub in model.module.modules())
    return model.proto is not None and bool(_onnx_lookups(model))


class LookupChecked:
    """A `Session` whose inputs pass `check_lookups` before its runtime sees them.

    ``runner(inputs)`` checks once, when the inputs are staged, so the timed calls cost
    what they cost unchecked; ``run`` and ``run_layers`` check each call's inputs.
    Everything else is the wrapped session's.

    Attributes:
        session: the wrapped session.
        unchecked: why this session's ids are not checked ("" while they are), also in
            its ``notes`` (and so in a profile's).

    Raises:
        InputError: from ``run`` / ``runner`` / ``run_layers``: a bad lookup (its table and
            id, `check_lookups`), or inputs that do not fit the model.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        # the lookups learned at the first torch check: later inputs skip the forward pass
        self._direct: Lookups | None = None
        #: why this session's ids are not checked ("" while they are): the check's own
        #: forward pass on the CPU failed where the runtime may not (a CUDA-only module)
        self.unchecked = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    @property
    def notes(self) -> tuple[str, ...]:
        """The wrapped session's notes, and why the ids are not checked when they are not."""
        said = tuple(getattr(self.session, "notes", ()))
        return (*said, self.unchecked) if self.unchecked else said

    def _checked(self, inputs: Inputs) -> Inputs:
        model = self.session.model
        named = model.check_inputs(inputs)
        if self.unchecked:
            return inputs
        if self._direct is not None:
            for layer, rows, source in self._direct:
                check_ids(named[source], rows, layer, source)
        elif model.module is not None:
            try:
                self._direct = _check_torch(model, named)
            except InputError:
                raise
            except Exception as exc:  # the runtime itself decides, as before the check
                self.unchecked = f"the ids check's forward pass failed: {type(exc).__name__}"
        else:
            self._direct = _onnx_lookups(model)
            _check_onnx(model, named)
        return inputs

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        """`Session.run` after the check."""
        return self.session.run(self._checked(inputs))

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        """`Session.runner` after one check of ``inputs``."""
        return self.session.runner(self._checked(inputs))

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """`Session.run_layers` after the check."""
        return self.session.run_layers(self._checked(inputs), repeats)


def lookup_checked(session: Session) -> Session:
    """``session`` as a `LookupChecked` when its model has tables, else as it is (a model
    without tables pays nothing).

    Example:
        >>> s = lookup_checked(wb.backend("onnxruntime").compile(m, "cpu"))
        >>> s.run(bad)   # InputError: table tables.0 (3 rows) got id 7 ...
    """
    model = getattr(session, "model", None)
    if model is None or not has_tables(model):
        return session
    return LookupChecked(session)  # type: ignore[return-value]
