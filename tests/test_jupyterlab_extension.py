"""workbench-jupyterlab: only model files under the root open, and trust is never a URL.

The unit tests check the path rules and the grants; the server tests start a real
Jupyter server with the extension and check that a GET cannot confer trust (a page on
another site can make a logged-in browser GET anything) while a POST needs Jupyter's XSRF
token. The browser half (right-click, "Open in workbench", the dashboard in a tab, the
trust dialog) is in tests/test_notebooks_browser.py, which shares its JupyterLab.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from workbench.errors import ModelLoadError, UnsafeModelError

paths = pytest.importorskip("wb_jupyterlab.paths", reason="workbench-jupyterlab not installed")
# the JupyterLab and Chromium of the notebooks' browser tests (same folder: tests/)
from test_notebooks_browser import browser, lab  # noqa: E402, F401

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "extensions/workbench-jupyterlab"


@pytest.fixture
def root(tmp_path):
    (tmp_path / "root" / "models").mkdir(parents=True)
    (tmp_path / "root" / "models" / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "root" / "m.pt2").write_bytes(b"pt2")
    (tmp_path / "root" / "notes.txt").write_text("hi")
    (tmp_path / "outside.onnx").write_bytes(b"onnx")
    (tmp_path / "root" / "link.onnx").symlink_to(tmp_path / "outside.onnx")
    return tmp_path / "root"


def test_an_onnx_under_the_root_resolves(root):
    assert paths.model_path(root, "models/m.onnx") == (root / "models" / "m.onnx").resolve()
    assert paths.model_path(root, "/models/m.onnx") == (root / "models" / "m.onnx").resolve()


@pytest.mark.parametrize("relative", ["../outside.onnx", "models/../../outside.onnx", "link.onnx"])
def test_paths_leaving_the_root_are_refused(root, relative):
    with pytest.raises(UnsafeModelError, match="outside the Jupyter root"):
        paths.model_path(root, relative)


def test_a_pt2_opens_checked_without_trust(root):
    """Untrusted, the dashboard's loader inspects a .pt2 before torch reads it."""
    assert paths.model_path(root, "m.pt2").name == "m.pt2"


@pytest.mark.parametrize(
    ("relative", "message"),
    [("notes.txt", "not an .onnx or .pt2"), ("models/none.onnx", "not a file"), ("", "not an")],
)
def test_other_files_are_refused_with_the_reason(root, relative, message):
    with pytest.raises(ModelLoadError, match=message):
        paths.model_path(root, relative)


# ---- grants of trust --------------------------------------------------------------------------


def test_a_grant_names_one_file_and_is_used_once(root, tmp_path):
    folder = paths.grants_folder(tmp_path / "runtime")
    assert folder.stat().st_mode & 0o777 == 0o700
    pt2 = paths.model_path(root, "m.pt2")
    grant = paths.grant_trust(folder, pt2)
    assert (folder / grant).stat().st_mode & 0o777 == 0o600
    assert not paths.granted(folder, grant, paths.model_path(root, "models/m.onnx"))
    assert paths.granted(folder, grant, pt2)  # checking does not use it up
    assert paths.granted(folder, grant, pt2, consume=True)
    assert not paths.granted(folder, grant, pt2, consume=True)  # used


def test_an_expired_unknown_or_malformed_grant_grants_nothing(root, tmp_path):
    folder = paths.grants_folder(tmp_path / "runtime")
    pt2 = paths.model_path(root, "m.pt2")
    old = paths.grant_trust(folder, pt2, now=time.time() - paths.GRANT_TTL_S - 1)
    assert not paths.granted(folder, old, pt2)
    (tmp_path / "runtime" / "forged").write_text(json.dumps({"path": str(pt2), "created": 0}))
    for grant in ("", "1", "../forged", "trust", "x" * 43):
        assert not paths.granted(folder, grant, pt2)
    assert not paths.granted(None, paths.grant_trust(folder, pt2), pt2)


# ---- the frontend and the versions it needs ---------------------------------------------------


def test_the_prebuilt_frontend_is_committed_with_what_it_loads():
    """What ``pip install`` ships: the built package.json and the entry point it names."""
    built = json.loads((FOLDER / "wb_jupyterlab/labextension/package.json").read_text())
    source = json.loads((FOLDER / "package.json").read_text())
    assert (built["name"], built["version"]) == (source["name"], source["version"])
    assert (FOLDER / "wb_jupyterlab/labextension" / built["jupyterlab"]["_build"]["load"]).is_file()
    # the build is of the current source: trust is asked for by POST, never put in a URL
    bundle = "".join(p.read_text() for p in (FOLDER / "wb_jupyterlab/labextension").rglob("*.js"))
    assert "workbench/trust" in bundle and '"1":"0"' not in bundle


def _lower_bound(requirements: list[str], name: str) -> tuple[int, ...]:
    (spec,) = [r for r in requirements if re.match(rf"{name}\b", r)]
    return tuple(int(p) for p in re.search(r">=([\d.]+)", spec).group(1).split("."))


def test_the_lab_extra_and_the_extension_need_the_same_jupyterlab():
    """The prebuilt frontend shares JupyterLab's packages at the versions it was built on."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extension = tomllib.loads((FOLDER / "pyproject.toml").read_text())["project"]
    needed = _lower_bound(project["optional-dependencies"]["lab"], "jupyterlab")
    assert needed == _lower_bound(extension["dependencies"], "jupyterlab")
    # the file browser's version is JupyterLab's: what the build asks for (^4.6.6 -> [1,4,6,6])
    (entry,) = (FOLDER / "wb_jupyterlab/labextension/static").glob("remoteEntry.*.js")
    built = re.search(r'"@jupyterlab/filebrowser",!1,\[1,(\d+),(\d+)', entry.read_text())
    assert needed >= (int(built.group(1)), int(built.group(2)))


# ---- a real Jupyter server --------------------------------------------------------------------

TOKEN = "workbench-extension-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """A Jupyter server with the extension over a folder holding m.onnx and m.pt2."""
    pytest.importorskip("jupyter_server")
    folder = tmp_path_factory.mktemp("jupyter")
    (folder / "root").mkdir()
    (folder / "root" / "m.onnx").write_bytes(b"onnx")
    (folder / "root" / "m.pt2").write_bytes(b"pt2")
    port = _free_port()
    command = [
        sys.executable, "-m", "jupyter", "server", "--no-browser", f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={folder / 'root'}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(folder / "runtime")}
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no Jupyter server; see {folder / 'server.log'}") from None
                time.sleep(0.3)
        yield base, folder
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _browser(base: str) -> tuple[urllib.request.OpenerDirector, dict[str, str]]:
    """A logged-in browser: Jupyter's login cookie and its _xsrf cookie, no token after."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    opener.open(f"{base}/login").read()  # the login form sets the _xsrf cookie it needs
    xsrf = {c.name: c.value for c in jar}["_xsrf"]
    try:
        opener.open(f"{base}/login", data=f"password={TOKEN}&_xsrf={xsrf}".encode())
    except urllib.error.HTTPError as exc:
        assert exc.code == 302, exc.read()
    return opener, {c.name: c.value for c in jar}


def _call(opener, method: str, url: str, body: bytes | None = None, **headers: str):
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        response = opener.open(request)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()
    return response.status, dict(response.headers), response.read().decode()


@pytest.mark.slow
def test_a_get_with_trust_1_does_not_trust(jupyter):
    base, _ = jupyter
    opener, _ = _browser(base)
    status, headers, _ = _call(opener, "GET", f"{base}/workbench/open?path=m.pt2&trust=1")
    assert status == 302
    query = headers["Location"].split("?", 1)[1]
    assert "trust" not in query and "grant=&" not in query and query.endswith("grant=")


@pytest.mark.slow
def test_a_post_without_the_xsrf_token_is_refused(jupyter):
    base, _ = jupyter
    opener, _ = _browser(base)
    body = json.dumps({"path": "m.pt2"}).encode()
    # what a page on another site can send with the user's cookie: no X-XSRFToken
    status, _, _ = _call(opener, "POST", f"{base}/workbench/trust", body, Origin=base)
    assert status == 403
    forged = f"{base}/workbench/open?path=m.pt2&grant=made-up-grant-xxxxxxxxxxxx"
    assert _call(opener, "GET", forged)[0] == 403


@pytest.mark.slow
def test_a_confirmed_post_with_the_xsrf_token_grants_trust_once(jupyter):
    base, folder = jupyter
    opener, cookies = _browser(base)
    body = json.dumps({"path": "m.pt2"}).encode()
    xsrf = {"X-XSRFToken": cookies["_xsrf"], "Content-Type": "application/json"}
    status, _, text = _call(opener, "POST", f"{base}/workbench/trust", body, **xsrf)
    assert status == 200, text
    grant = json.loads(text)["grant"]
    outside = json.dumps({"path": "../m.pt2"}).encode()
    assert _call(opener, "POST", f"{base}/workbench/trust", outside, **xsrf)[0] == 403
    status, headers, _ = _call(opener, "GET", f"{base}/workbench/open?path=m.pt2&grant={grant}")
    assert status == 302 and f"grant={grant}" in headers["Location"]
    other = f"{base}/workbench/open?path=m.onnx&grant={grant}"
    assert _call(opener, "GET", other)[0] == 403  # a grant names one file
    # the dashboard's kernel consumes it: trusted once, never again
    grants = paths.grants_folder(folder / "runtime")
    pt2 = (folder / "root" / "m.pt2").resolve()
    assert paths.granted(grants, grant, pt2, consume=True)
    assert not paths.granted(grants, grant, pt2, consume=True)


# ---- the dialog, in a real JupyterLab and Chromium --------------------------------------------


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Chromium not found")
def test_the_dialog_opens_a_pt2_checked_or_trusted_by_a_post(lab, browser):  # noqa: F811
    """'Open checked' carries no grant; 'Trust and open' POSTs with the XSRF token first."""
    from test_notebooks_browser import TOKEN, _page

    page, _, remote = _page(browser, lab)
    page.goto(f"{lab}/lab?reset&token={TOKEN}")

    def open_pt2(button: str) -> None:
        page.locator(".jp-DirListing-item", has_text="tiny-export.pt2").click(button="right")
        page.get_by_role("menuitem", name="Open in workbench").click()
        page.locator(".jp-Dialog", has_text="Trust this model file?").wait_for()
        page.get_by_role("button", name=button).click()

    open_pt2("Open checked")
    page.locator(".lm-TabBar-tab", has_text=re.compile(r"tiny-export\.pt2$")).wait_for()
    with page.expect_request(lambda r: "/workbench/trust" in r.url) as posted:
        open_pt2("Trust and open")
    assert posted.value.method == "POST" and posted.value.headers.get("x-xsrftoken")
    page.locator(".lm-TabBar-tab", has_text="tiny-export.pt2 (trusted)").wait_for()
    sources = page.locator("iframe[src*='workbench/open']").evaluate_all(
        "frames => frames.map(f => f.getAttribute('src'))"
    )
    queries = sorted(s.split("?", 1)[1] for s in sources)
    assert queries[0] == "path=tiny-export.pt2"
    assert queries[1].startswith("path=tiny-export.pt2&grant=")
    assert not [q for q in queries if "trust" in q] and remote == []
    page.close()
