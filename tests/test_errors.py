"""Mistakes a user can make through the public API are `WorkbenchError`s in one line.

Each error that replaced a bare builtin is also that builtin, so code written against
the old exception keeps catching it. The count of bare builtin raises left in the
package is checked in tests/test_architecture.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.errors import (
    InvalidArgumentError,
    NotFoundError,
    TransformError,
    WorkbenchError,
)
from workbench.optimize import ChannelPrune, Int8Static, MagnitudePrune
from workbench.optimize.base import Transform
from workbench.scenarios import VirtualClock
from workbench.store import Store
from workbench.testing import toy_mlp


@dataclasses.dataclass(frozen=True)
class _NoApply(Transform):
    """A plugin's config that forgot its ``apply``."""


def _store(folder: Path) -> Store:
    return Store(folder / "runs.sqlite")


#: (case, the call (given a scratch folder), the builtin it raised before, its line's start)
CASES: list[tuple[str, Callable[[Path], Any], type[Exception], str]] = [
    ("sparsity", lambda _: MagnitudePrune(sparsity=1.5), ValueError, "sparsity must be in"),
    ("scope", lambda _: MagnitudePrune(scope="row"), ValueError, "scope must be global"),
    ("norm", lambda _: ChannelPrune(norm="l3"), ValueError, "norm must be l1 or l2"),
    (
        "a layer twice",
        lambda _: MagnitudePrune(layer_sparsity=(("fc1", 0.1), ("fc1", 0.2))),
        ValueError,
        "layer_sparsity names a layer twice",
    ),
    ("method", lambda _: Int8Static(method="median"), ValueError, "method must be minmax"),
    ("format", lambda _: Int8Static(quant_format="qx"), ValueError, "quant_format must be"),
    ("compare one", lambda _: wb.compare([]), ValueError, "compare needs at least two"),
    ("time back", lambda _: VirtualClock().advance(-1), ValueError, "time cannot go back"),
    ("layer", lambda _: toy_mlp().layer("fc9"), KeyError, "toy-mlp has no layer named 'fc9'"),
    ("run", lambda tmp: _store(tmp).load_profile("r-1"), KeyError, "no saved profile with run id"),
    ("sweep", lambda tmp: _store(tmp).sweep_meta("s-1"), KeyError, "no sweep 's-1' in"),
]


@pytest.mark.parametrize(
    ("call", "builtin", "start"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_user_mistake_is_one_workbench_line_and_still_its_old_builtin(
    call: Callable[[Path], Any], builtin: type[Exception], start: str, tmp_path: Path
) -> None:
    with pytest.raises(WorkbenchError) as error:
        call(tmp_path)
    assert isinstance(error.value, builtin)
    assert isinstance(error.value, InvalidArgumentError | NotFoundError)
    line = str(error.value)
    assert line.startswith(start) and "\n" not in line, line
    assert "; " in line or ", got " in line  # what to do, or what was given against what


def test_a_missing_name_reads_as_its_message_not_a_quoted_key() -> None:
    # KeyError's own str() quotes its message: 'no layer ...' in the CLI's one line
    error = NotFoundError("no layer named 'fc9'")
    assert str(error) == "no layer named 'fc9'"
    assert str(KeyError("no layer named 'fc9'")) != str(error)


def test_a_transform_without_apply_says_what_a_transform_defines() -> None:
    with pytest.raises(TransformError, match=r"_NoApply does not implement apply; .*apply\("):
        _NoApply().apply(toy_mlp())


def test_a_bad_setting_given_by_name_is_a_transform_error_naming_the_settings() -> None:
    with pytest.raises(TransformError, match=r"prune-magnitude .* sparsity must be in") as error:
        wb.prune(toy_mlp(), sparsity=1.5)
    assert "\n" not in str(error.value)
