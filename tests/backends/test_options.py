"""Every backend's compile options are a typed dataclass; bad ones fail the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

import workbench as wb
from workbench.backends.base import parse_options
from workbench.errors import BackendOptionError
from workbench.testing import toy_mlp

#: backend -> (its options dataclass's field names, a good value for one of them)
BACKENDS = {
    "torch": ("threads", {"threads": 1}),
    "onnxruntime": (
        "threads, optimization, provider, profiling, spinning",
        {"optimization": "basic"},
    ),
    "numba": ("gemm, layout, threads, conv_strategy", {"layout": "nchw"}),
}


@pytest.mark.parametrize("name", BACKENDS, ids=list(BACKENDS))
def test_unknown_option_is_one_line_naming_the_known_ones(name: str) -> None:
    fields, _ = BACKENDS[name]
    with pytest.raises(BackendOptionError) as info:
        wb.backend(name).compile(toy_mlp(), "cpu", tile=3)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"unknown {name} option 'tile'; known options: ")
    known = [part.split(" (")[0] for part in message.split("known options: ")[1].split("), ")]
    assert ", ".join(known) == fields


@pytest.mark.parametrize("name", BACKENDS, ids=list(BACKENDS))
@pytest.mark.parametrize("value", [-1, "2", True, 1.5], ids=["negative", "text", "bool", "float"])
def test_badly_typed_value_is_rejected_alike(name: str, value: object) -> None:
    field = next(iter(BACKENDS[name][1]))
    with pytest.raises(BackendOptionError, match=rf"^{name} option {field}=.* is not "):
        wb.backend(name).compile(toy_mlp(), "cpu", **{field: value})


@pytest.mark.parametrize("name", BACKENDS, ids=list(BACKENDS))
def test_good_options_reach_the_session(name: str) -> None:
    good = BACKENDS[name][1]
    session = wb.backend(name).compile(toy_mlp(), "cpu", **good)
    try:
        model = toy_mlp()
        assert session.run(model.example_inputs(2))[0].shape[0] == 2
        if name != "numba":  # numba's options shape its graph; the others keep them
            ((field, value),) = good.items()
            assert getattr(session.options, field) == value
    finally:
        session.close()


def test_parse_options_checks_each_kind() -> None:
    @dataclass(frozen=True)
    class Options:
        count: int = 1
        level: Literal["low", "high"] = "low"
        flag: bool = False
        limit: int | None = None

    assert parse_options(Options, "demo", {}) == Options()
    assert parse_options(Options, "demo", {"count": 0, "limit": None}) == Options(count=0)
    assert parse_options(Options, "demo", {"level": "high", "flag": True}).level == "high"
    for bad in ({"count": None}, {"level": "mid"}, {"flag": 1}, {"limit": -2}):
        with pytest.raises(BackendOptionError, match=r"known options: count .* limit"):
            parse_options(Options, "demo", bad)


def test_cli_option_a_backend_lacks_is_one_line_and_exit_2(capsys) -> None:
    from workbench.cli import main

    # the reference plugin (installed by the set-up) takes no options; numba now takes threads
    argv = ["profile", "digits-cnn", "--backend", "onnx-reference", "--threads", "1", "--no-layers"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("workbench: error: onnx-reference takes no options, got ['threads']")
