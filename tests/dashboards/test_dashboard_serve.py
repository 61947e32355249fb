"""`workbench serve`: its options, localhost by default, and the websocket origins it allows."""

from __future__ import annotations

import pytest

from workbench.cli import build_parser
from workbench.dashboards.serve import DEFAULT_PORT, websocket_origins


def test_serve_defaults_to_localhost_on_port_5006():
    args = build_parser().parse_args(["serve"])
    assert (args.port, args.address, args.model) == (DEFAULT_PORT, "127.0.0.1", None)
    assert DEFAULT_PORT == 5006 and args.allow_websocket_origin == []


def test_serve_options_parse():
    args = build_parser().parse_args(
        ["serve", "--port", "8080", "--model", "digits-cnn", "--address", "0.0.0.0",
         "--allow-websocket-origin", "dash.example.org", "--allow-websocket-origin", "b:443"]
    )  # fmt: skip
    assert (args.port, args.model, args.address) == (8080, "digits-cnn", "0.0.0.0")
    assert args.allow_websocket_origin == ["dash.example.org", "b:443"]


@pytest.mark.parametrize(
    ("address", "extra", "expected"),
    [
        ("127.0.0.1", [], ["localhost:5006", "127.0.0.1:5006"]),
        ("0.0.0.0", [], ["localhost:5006", "127.0.0.1:5006"]),  # exposing needs an origin
        ("0.0.0.0", ["dash.example.org"], ["localhost:5006", "127.0.0.1:5006", "dash.example.org"]),
        ("10.0.0.5", [], ["localhost:5006", "127.0.0.1:5006", "10.0.0.5:5006"]),
    ],
)
def test_websocket_origins_are_local_unless_named(address, extra, expected):
    assert websocket_origins(5006, address, extra) == expected


def test_serve_refuses_a_model_it_cannot_load_before_serving(capsys):
    from workbench.cli import main

    assert main(["serve", "--model", "no-such-model.onnx", "--port", "1"]) == 2
    assert "no-such-model.onnx" in capsys.readouterr().err
