"""Backend specs: a backend name with an option set, written as one string.

A sweep (or anything else that lists backends) can compare one runtime under several
option sets by naming each as ``"name[key=value,key=value]"``:
``["onnxruntime", "onnxruntime[optimization=basic]", "torch-compile[mode=max-autotune]"]``.
The string stays the row's ``backend`` label everywhere (tables, the store, figures), so
each option set is its own row with its own per-layer view.

Values are read as the option types need them: whole numbers as ``int``, ``true`` /
``false`` as ``bool``, ``none`` as None, anything else as text; the backend's own
`workbench.backends.base.parse_options` then checks them.
"""

from __future__ import annotations

import re
from typing import Any

from workbench.errors import BackendOptionError

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*$")


def parse_backend(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name[key=value,...]"`` into the backend name and its options.

    Args:
        spec: a backend name, optionally with options in square brackets.

    Returns:
        ``(name, options)``; options are empty for a plain name.

    Raises:
        BackendOptionError: the spec is malformed (the message shows the expected form).

    Example:
        >>> parse_backend("onnxruntime[optimization=basic,threads=1]")
        ('onnxruntime', {'optimization': 'basic', 'threads': 1})
    """
    match = _SPEC.match(spec)
    if match is None:
        raise BackendOptionError(
            f"backend spec {spec!r} is malformed; write name or name[key=value,key=value], "
            "e.g. onnxruntime[optimization=basic]"
        )
    name, body = match.group(1), match.group(2)
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (body or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BackendOptionError(
                f"backend spec {spec!r}: {item!r} is not key=value, "
                "e.g. onnxruntime[optimization=basic]"
            )
        options[key.strip()] = _value(value.strip())
    return name, options


def backend_spec(name: str, options: dict[str, Any] | None = None) -> str:
    """The spec string of ``name`` with ``options`` (the inverse of `parse_backend`).

    Example:
        >>> backend_spec("onnxruntime", {"optimization": "basic"})
        'onnxruntime[optimization=basic]'
    """
    if not options:
        return name
    body = ",".join(f"{k}={_text(v)}" for k, v in options.items())
    return f"{name}[{body}]"


def _value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    return int(text) if text.isdigit() else text


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return str(value)
