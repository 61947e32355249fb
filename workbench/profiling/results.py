"""What every result class shares: its JSON contract and the figure of its notebook view.

**JSON.** Every result class (`Profile`, `GenerationProfile`, `TradeoffTable`,
`RuntimeComparison`, `ScenarioResult`, a fleet `Plan`...) has the same pair::

    result.to_json(path=None, *, indent=1) -> str        # also written to path when given
    type(result).from_json(text_or_path) -> the class    # the text, or a file holding it

built on its ``to_dict`` / ``from_dict`` with `dump_json` and `load_json` below.

**Figures.** A result's ``_repr_html_`` is a compact summary, its key figure and its
table. The summary and the table are plain formatting (`workbench.profiling.formatting`);
the figure is drawn by `workbench.viz`, which sits above every result class in the layer
order. So the figure is injected from above, like `html_export`'s report renderer: the
package root registers, by dotted path, the viz function that draws each class
(`register_figure`), and `figure_html` draws it when a notebook asks. Nothing here, nor
in the result classes, imports the drawing code; without a registered figure a result
shows its plain summary and table.

Example:
    >>> draw = "workbench.viz.reprs:measurement_svg"
    >>> register_figure("workbench.profiling.timer:Measurement", draw)
    >>> figure_html(measurement).startswith("<svg")
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import InputError

__all__ = ["dump_json", "figure_html", "json_default", "load_json", "register_figure"]

#: "module:Class" -> the figure's drawing function, or its "module:function" until first use
_figures: dict[str, Callable[[Any], str] | str] = {}


def register_figure(result_class: str, figure: str | Callable[[Any], str]) -> None:
    """Set the function that draws a result class's figure in its notebook view.

    Args:
        result_class: the class, as ``"module:QualifiedName"`` (subclasses inherit it).
        figure: ``"module:function"`` (imported on first use, so ``import workbench``
            loads no drawing code) or the function itself; it takes the result and
            returns an HTML fragment (an inline ``<svg>``), or "" when there is nothing
            to draw.
    """
    _figures[result_class] = figure


def figure_html(result: Any) -> str:
    """The key figure of ``result``'s notebook view, or "" when none is registered.

    Args:
        result: a result object; it is not changed.

    Returns:
        The figure's HTML fragment, drawn by the function registered for the result's
        class (or its nearest base class).
    """
    for cls in type(result).__mro__:
        key = f"{cls.__module__}:{cls.__qualname__}"
        figure = _figures.get(key)
        if figure is None:
            continue
        if isinstance(figure, str):
            module, _, name = figure.partition(":")
            figure = _figures[key] = getattr(importlib.import_module(module), name)
        return str(figure(result))
    return ""


def json_default(value: Any) -> Any:
    """What `json.dumps` writes for a value it does not know: a numpy scalar as its
    number, an array as a list, anything else as its text."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def dump_json(data: Any, path: str | Path | None = None, indent: int | None = 1) -> str:
    """``data`` (a result's ``to_dict``) as JSON text, also written to ``path`` (UTF-8).

    Args:
        data: JSON-ready data; numpy values are written by `json_default`.
        path: also write the text there when given.
        indent: spaces per nesting level (None: one compact line).

    Returns:
        The JSON text.
    """
    import json  # here: the package root imports this module for `register_figure`

    text = json.dumps(data, indent=indent, default=json_default)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def load_json(text_or_path: str | Path, what: str) -> Any:
    """The data in a result's JSON: the text itself, or the file it names.

    Args:
        text_or_path: JSON text (starting with ``{``), or a path to a file holding it.
        what: the result it should be, for the error (``"a profile"``).

    Returns:
        The parsed data (hand it to the class's ``from_dict``).

    Raises:
        InputError: no such file, or the text is not JSON.
    """
    import json

    text = str(text_or_path)
    if isinstance(text_or_path, Path) or not text.lstrip().startswith("{"):
        try:
            text = Path(text_or_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"cannot read {what} from {str(text_or_path)[:80]!r}: {exc.strerror or exc}; "
                "give the JSON text or the path of a file to_json wrote"
            ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} must be JSON as to_json writes it: {exc}") from exc
