"""`workbench serve`: options, origins, the access policy, and a real server on loopback."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.cli import build_parser
from workbench.dashboards.serve import DEFAULT_PORT, access_policy, websocket_origins
from workbench.errors import WorkbenchError


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


# ---- access policy -------------------------------------------------------------------------


def test_a_loopback_server_answers_local_hosts_only_and_needs_no_token():
    origins = websocket_origins(5006, "127.0.0.1")
    policy = access_policy("127.0.0.1", origins, [], None)
    assert policy.token is None and policy.hosts == {"localhost", "127.0.0.1"}
    assert policy.refusal("localhost:5006", {}, None, None) == ""
    assert "not served here" in policy.refusal("evil.example:5006", {}, None, None)
    websocket = {"Upgrade": "websocket"}
    assert "without an Origin" in policy.refusal("localhost:5006", websocket, None, None)


def test_an_exposed_server_without_an_origin_gets_a_generated_token():
    policy = access_policy("0.0.0.0", websocket_origins(5006, "0.0.0.0"), [], None)
    assert policy.hosts is None and policy.token is not None and len(policy.token) >= 16
    assert policy.refusal("10.0.0.5:5006", {}, None, None) == "no valid access token"
    assert policy.refusal("10.0.0.5:5006", {}, "wrong-token-xxxxxxxxx", None) != ""
    assert policy.refusal("10.0.0.5:5006", {}, policy.token, None) == ""
    assert policy.refusal("10.0.0.5:5006", {}, None, policy.token) == ""


def test_an_exposed_server_with_a_named_origin_checks_the_host():
    origins = websocket_origins(5006, "0.0.0.0", ["dash.example.org"])
    policy = access_policy("0.0.0.0", origins, ["dash.example.org"], None)
    assert policy.token is None
    assert policy.refusal("dash.example.org", {}, None, None) == ""
    assert policy.refusal("rebound.attacker.example", {}, None, None) != ""


def test_a_short_token_is_refused():
    with pytest.raises(WorkbenchError, match="at least 16 characters"):
        access_policy("127.0.0.1", [], [], "abc")


# ---- a real server on loopback --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, path: str = "/", **headers: str) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", path, headers={"Host": f"localhost:{port}", **headers})
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        connection.close()


@pytest.fixture
def server(tmp_path):
    """Start `workbench serve` on loopback (its temporary files under tmp_path)."""
    started = []

    def start(*options: str) -> tuple[subprocess.Popen, int]:
        port = _free_port()
        env = {**os.environ, "TMPDIR": str(tmp_path), "WORKBENCH_STORE": str(tmp_path / "s.db")}
        command = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port)]
        process = subprocess.Popen(
            [*command, "--model", "digits-mlp", *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        banner = process.stdout.readline()  # printed once the model is loaded
        assert banner.startswith("workbench dashboard: http://localhost:"), banner
        for _ in range(600):  # the port opens just after the banner
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        return process, port

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def _upload_folders(root: Path) -> list[Path]:
    return list(root.glob("workbench-upload-*"))


WEBSOCKET = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_served_requests_are_checked_and_uploads_removed_on_shutdown(server, tmp_path, stop):
    process, port = server()
    assert _request(port)[0] == 200  # a session, with its upload folder
    assert len(_upload_folders(tmp_path)) == 1
    assert _request(port, Host=f"evil.example:{port}")[0] == 403
    assert _request(port, "/ws", **WEBSOCKET)[0] == 403  # no Origin
    assert _request(port, "/ws", **WEBSOCKET, Origin="http://evil.example")[0] == 403
    process.send_signal(stop)
    assert process.wait(timeout=60) == 0
    assert _upload_folders(tmp_path) == []


@pytest.mark.slow
def test_a_token_is_required_then_kept_in_a_cookie(server):
    token = "t" * 24
    _, port = server("--token", token)
    assert _request(port)[0] == 403
    status, headers = _request(port, f"/?token={token}&model_name=digits-mlp")
    assert status == 302 and headers["Location"] == "/?model_name=digits-mlp"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert cookie == f"workbench_token={token}" and "HttpOnly" in headers["Set-Cookie"]
    assert _request(port, Cookie=cookie)[0] == 200
    assert _request(port, Cookie="workbench_token=" + "x" * 24)[0] == 403


@pytest.mark.slow
def test_panel_serve_of_the_module_serves_no_dashboard(tmp_path):
    """`panel serve serve.py` has none of the access policy: it must not serve the app."""
    from workbench.dashboards import serve as serve_module

    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "WORKBENCH_STORE": str(tmp_path / "s.db")}
    process = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", serve_module.__file__, "--port", str(port),
         "--address", "127.0.0.1", "--allow-websocket-origin", f"localhost:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        for _ in range(1200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("GET", "/serve", headers={"Host": f"localhost:{port}"})
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200  # the session ran the script (its content comes later)
        assert _upload_folders(tmp_path) == []  # and built no App
    finally:
        process.kill()
        output = process.communicate()[0]
    assert "not `panel serve`" in output
