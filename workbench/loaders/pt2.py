"""Load an untrusted ``torch.export`` archive (``.pt2``) without running any of its code.

What ``torch.export.load`` (torch 2.13, ``torch/export/pt2_archive/_package.py``) reads is
decided by the archive's own tables, item by item, not by its listing:

- ``models/<name>.json``, the program: graph targets are resolved by attribute lookup
  and shape expressions go through ``sympy.sympify`` (``eval``);
- ``data/sample_inputs/<name>.pt``: weights-only ``torch.load``, retried with full
  unpickling when that fails;
- ``data/weights/<name>_weights_config.json``: per weight, ``use_pickle`` says whether
  ``data/weights/<path_name>`` is unpickled with full pickle or read as raw bytes (a
  legacy ``data/weights/<name>.pt`` is unpickled instead, with the same fallback);
- ``data/constants/<name>_constants_config.json``: likewise, plus ``custom_obj_*``
  (TorchBind) and ``opaque_obj_*`` (``pickle.loads``) items;
- ``extra/*`` as text, and ``data/aotinductor/<model>/``: compiled libraries it loads.

``path_name`` is joined with ``os.path.join``, so an absolute name replaces the folder and
``..`` leaves it, and one path may be listed once raw and once pickled. So untrusted
archives never reach torch's loader: `load_program` reads the items of the one program
``torch.export.load`` returns (``model``) through the bounded zip reader of
`workbench.loaders.trust`, builds every weight, constant and sample input itself (pickled
items through torch's weights-only unpickler, with no fallback) and hands those objects,
with the checked program, to torch's deserializer, which unpickles nothing it is given as
an object.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from typing import TYPE_CHECKING, Any

from workbench.errors import ModelLoadError, UnsafeModelError, WorkbenchError
from workbench.loaders.trust import (
    MAX_JSON_BYTES,
    OPT_IN,
    check_program,
    is_identifier,
    is_module_path,
    open_zip,
    read_entry,
    refuse_code,
)

if TYPE_CHECKING:
    import torch

#: the program ``torch.export.load`` returns; other programs in an archive are not read
MODEL = "model"

# Entries torch loads as compiled code or Python objects, whoever asks for them.
_CODE_FOLDERS = ("data/aotinductor/", "data/executorch/", "data/mtia", "xl_model_weights/")

# The file names torch writes for a payload: a plain name inside its folder.
_PAYLOAD_NAMES = {
    "weights": re.compile(r"weight_[0-9]{1,9}"),
    "constants": re.compile(r"tensor_[0-9]{1,9}"),
}


class _Archive:
    """The entries under a ``.pt2`` archive's one root folder, read on demand within bounds."""

    def __init__(self, data: bytes, label: str, max_bytes: int | None) -> None:
        self.label = label
        self.max_bytes = max_bytes
        self.nested_left = max_bytes  # what pickled entries may still unpack to
        self.zip = open_zip(data, label, max_bytes, untrusted=True)
        infos = self.zip.infolist()
        self.entries = {i.filename.partition("/")[2]: i for i in infos}
        roots = {i.filename.partition("/")[0] for i in infos}
        if len(roots) != 1 or len(self.entries) != len(infos) or "" in self.entries:
            raise UnsafeModelError(
                f"{label} is a malformed torch.export archive (repeated or loose entries); {OPT_IN}"
            )

    def read(self, name: str, limit: int | None = None) -> bytes:
        info = self.entries.get(name)
        if info is None:
            raise ModelLoadError(f"{self.label} is not a torch.export archive (no {name})")
        if limit is not None and info.file_size > limit:
            raise ModelLoadError(
                f"{self.label} has an entry {name} of {info.file_size:,} bytes, over the "
                f"{limit:,} such an entry may hold"
            )
        return read_entry(self.zip, info, self.label)


def load_program(data: bytes, label: str, max_bytes: int | None) -> Any:
    """An ``ExportedProgram`` read from an untrusted ``.pt2`` archive, running none of its code.

    Args:
        data: the archive's bytes.
        label: the file's name, for messages.
        max_bytes: most bytes the archive may expand to and a tensor in it may describe
            (None: no limit).

    Returns:
        The ``torch.export.ExportedProgram`` that ``torch.export.load`` would return.

    Raises:
        UnsafeModelError: code, a pickle that is more than tensors, a graph node that is not
            a plain operator, a shape expression outside the grammar, a payload outside its
            folder or listed twice, or an entry that expands like a decompression bomb.
        ModelLoadError: not a loadable ``torch.export`` archive, or over the size limit.
    """
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass
    from torch.export.pt2_archive.constants import ARCHIVE_FORMAT_VALUE, ARCHIVE_VERSION_VALUE

    archive = _Archive(data, label, max_bytes)
    for name in archive.entries:
        if name.startswith(_CODE_FOLDERS):
            raise refuse_code(label, f"holds compiled code ({name[:80]!r})")
    if archive.read("archive_format", 64).strip() != ARCHIVE_FORMAT_VALUE.encode():
        raise ModelLoadError(f"{label} is not a torch.export (.pt2) archive")
    version = archive.read("archive_version", 64).decode(errors="replace")
    if version != ARCHIVE_VERSION_VALUE:
        raise ModelLoadError(
            f"{label} is a version {version[:20]!r} torch.export archive; this torch reads "
            f"version {ARCHIVE_VERSION_VALUE}"
        )
    program = check_program(archive.read(f"models/{MODEL}.json", MAX_JSON_BYTES), label)
    weights = _payloads(archive, "weights")
    constants = _payloads(archive, "constants")
    inputs = _weights_only(archive, f"data/sample_inputs/{MODEL}.pt")
    if not (isinstance(inputs, tuple) and len(inputs) == 2):
        raise ModelLoadError(f"{label} has sample inputs that are not (args, kwargs)")
    _check_bytes(archive, inputs, "sample inputs")
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        loaded = ExportedProgramDeserializer().deserialize(serialized, weights, constants, inputs)
        _check_generated_names(loaded, label)
        return loaded
    except WorkbenchError:
        raise
    except Exception as exc:  # torch's deserializer raises bare errors of many kinds
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelLoadError(
            f"{label} is not a loadable torch.export program ({type(exc).__name__}: {first})"
        ) from exc


def _check_generated_names(program: Any, label: str) -> None:
    """Refuse names that ``program.module()`` would paste into the Python it generates and
    runs (torch 2.13, ``torch/export/_unlift.py``): the forward's argument names (from the
    call graph's signature, or the keyword names of the input spec), placeholders, and the
    module paths of everything it reads as an attribute."""
    import torch

    signature = program.module_call_graph[0].signature if program.module_call_graph else None
    names = list(getattr(signature, "forward_arg_names", None) or [])
    spec = program.call_spec.in_spec
    if spec is not None and spec.num_children == 2 and spec.child(1).type is dict:
        names += list(spec.child(1).context)
    paths = [*program.state_dict, *program.constants]
    paths += [s.target for s in program.graph_signature.input_specs if s.target is not None]
    for module in program.graph_module.modules():
        if isinstance(module, torch.fx.GraphModule):
            for node in module.graph.nodes:
                if node.op == "placeholder":
                    names.append(node.target)
                elif node.op == "get_attr":
                    paths.append(node.target)
    bad = [n for n in names if not is_identifier(n)] + [p for p in paths if not is_module_path(p)]
    if bad:
        raise UnsafeModelError(
            f"{label} names {str(bad[0])[:60]!r}, which torch would paste into the code it "
            f"generates and runs; {OPT_IN}"
        )


def _payloads(archive: _Archive, kind: str) -> dict[str, Any]:
    """Weights or constants, item by item as the payload table says (as torch reads them)."""
    import json

    import torch
    from torch._export.serde import schema
    from torch._export.serde.serialize import _dict_to_dataclass

    folder = f"data/{kind}/"
    if f"{folder}{MODEL}.pt" in archive.entries:  # the legacy layout, which torch reads first
        legacy = _weights_only(archive, f"{folder}{MODEL}.pt")
        if not isinstance(legacy, dict):
            raise ModelLoadError(f"{archive.label} has {kind} that are not a dict")
        _check_bytes(archive, legacy, kind)
        return legacy
    table = f"{folder}{MODEL}_{kind}_config.json"
    try:
        config = _dict_to_dataclass(
            schema.PayloadConfig, json.loads(archive.read(table, MAX_JSON_BYTES))
        ).config
    except WorkbenchError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{archive.label} has a corrupt payload table ({table})") from exc
    encodings: dict[str, bool] = {}
    storages: dict[str, torch.Tensor] = {}
    loaded = {}
    for fqn, item in config.items():
        if not is_module_path(fqn):  # torch pastes it into the code module() generates
            raise UnsafeModelError(
                f"{archive.label} names a {kind[:-1]} {fqn[:60]!r}, which is not a module "
                f"path; {OPT_IN}"
            )
        path = item.path_name
        if isinstance(path, str) and path.startswith(("custom_obj_", "opaque_obj_")):
            raise refuse_code(archive.label, f"holds Python or TorchBind objects ({folder}{path})")
        if not (isinstance(path, str) and _PAYLOAD_NAMES[kind].fullmatch(path)):
            raise UnsafeModelError(
                f"{archive.label} names a payload {str(path)[:60]!r} for {fqn[:60]!r}, which "
                f"is not a file of {folder}; {OPT_IN}"
            )
        if encodings.setdefault(path, item.use_pickle) != item.use_pickle:
            raise UnsafeModelError(
                f"{archive.label} lists {folder}{path} both as raw bytes and as a pickle; {OPT_IN}"
            )
        if item.use_pickle:
            value = _weights_only(archive, folder + path)
            if type(value) not in (torch.Tensor, torch.nn.Parameter):
                raise refuse_code(
                    archive.label, f"holds a pickled {kind[:-1]} that is not a tensor"
                )
        else:
            if path not in storages:
                storages[path] = _raw(archive, folder + path, item.tensor_meta)
            value = _view(archive, storages[path], item, fqn)
        _check_bytes(archive, value, fqn)
        loaded[fqn] = value
    return loaded


def _raw(archive: _Archive, name: str, meta: Any) -> torch.Tensor:
    """A flat tensor of a raw payload's bytes (torch's ``_build_file_map``)."""
    import torch
    from torch._export.serde.serialize import (
        deserialize_device,
        deserialize_scalar_type,
        deserialize_size,
    )

    try:
        dtype = deserialize_scalar_type(meta.dtype)
        device = deserialize_device(meta.device)
        data = archive.read(name)
        if data:
            tensor = torch.frombuffer(bytearray(data), dtype=dtype)
        else:
            size = deserialize_size(meta.sizes)
            _check_numel(archive, math.prod(size) * torch._utils._element_size(dtype), name)
            tensor = torch.zeros(size, dtype=dtype)
        tensor.requires_grad_(bool(meta.requires_grad))
        return tensor if device == torch.device("cpu") else tensor.to(device)
    except WorkbenchError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{archive.label} has an unreadable payload {name}") from exc


def _view(archive: _Archive, storage: torch.Tensor, item: Any, fqn: str) -> torch.Tensor:
    """The strided view a payload table gives one weight or constant of a raw payload."""
    import torch
    from torch._export.serde.serialize import (
        deserialize_size,
        deserialize_storage_offset,
        deserialize_stride,
    )

    meta = item.tensor_meta
    try:
        view = torch.as_strided(
            storage,
            deserialize_size(meta.sizes),
            deserialize_stride(meta.strides),
            deserialize_storage_offset(meta.storage_offset),
        )
        if item.is_param:
            return torch.nn.Parameter(view, requires_grad=bool(meta.requires_grad))
        return view
    except Exception as exc:
        raise ModelLoadError(
            f"{archive.label} has a corrupt payload entry for {fqn[:60]!r}"
        ) from exc


def _weights_only(archive: _Archive, name: str) -> Any:
    """A pickled entry through torch's weights-only unpickler, and never anything else."""
    import pickle

    import torch

    data = archive.read(name)
    label = f"{archive.label} ({name})"
    if not zipfile.is_zipfile(io.BytesIO(data)):  # torch.save has written zip archives since 1.6
        raise ModelLoadError(f"{label} is not a torch.save archive")
    # torch inflates it next: bounded like the archive, and all pickled entries together
    # within the limit too (each could otherwise inflate up to the limit)
    with open_zip(data, label, archive.nested_left, untrusted=True) as nested:
        if archive.nested_left is not None:
            archive.nested_left -= sum(info.file_size for info in nested.infolist())
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError as exc:
        raise refuse_code(
            archive.label, f"holds a pickle that is more than weights ({name})"
        ) from exc
    except Exception as exc:
        raise ModelLoadError(f"{label} is unreadable ({type(exc).__name__})") from exc


def _check_bytes(archive: _Archive, value: Any, what: str) -> None:
    """Refuse tensors that describe more bytes than the limit (a stride-0 view can)."""
    import torch
    from torch.utils._pytree import tree_leaves

    for leaf in tree_leaves(value):
        if isinstance(leaf, torch.Tensor):
            _check_numel(archive, leaf.numel() * leaf.element_size(), what)


def _check_numel(archive: _Archive, size: int, what: str) -> None:
    if archive.max_bytes is not None and size > archive.max_bytes:
        raise ModelLoadError(
            f"{archive.label} describes a tensor of {size:,} bytes ({what[:60]!r}), over the "
            f"{archive.max_bytes:,}-byte limit; pass max_bytes= (CLI: --max-size MB)"
        )
