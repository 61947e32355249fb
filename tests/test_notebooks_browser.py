"""Notebooks in a real JupyterLab and Chromium with no internet (every non-local request fails).

Starts JupyterLab on a free localhost port over copies of notebooks 01 and 05, runs all
cells through the Run menu, and checks what a person would see: plotly figures drawn in
01; in 05 the inline dashboard rendered, redrawn when a cell changes its batch size, and
no script error (notably no "Notyf is not defined"). The same JupyterLab checks the
workbench-jupyterlab extension: "Open in workbench" on an .onnx in the file browser opens
the dashboard on it in a tab. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "workbench-test"
TIMEOUT_MS = 240_000
# Known gap (docs/notebooks.md): components built after the first render name four small
# Panel stylesheets on its CDN; offline they fail to load. Nothing else may fail.
CSS_GAP = ("loading.css", "markdown.css", "default.css", "native.css")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not found at {CHROMIUM}"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab over copies of notebooks 01 and 05; stopped whatever happens."""
    pytest.importorskip("jupyterlab")
    folder = tmp_path_factory.mktemp("lab")
    for name in ("01_quick_start.ipynb", "05_dashboard_inline.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, folder / name)
    from workbench.testing.fuzz import sample_onnx, sample_pt2

    (folder / "tiny-digits.onnx").write_bytes(sample_onnx())
    (folder / "tiny-export.pt2").write_bytes(sample_pt2())
    port = _free_port()
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={folder}", f"--LabApp.workspaces_dir={folder / '.workspaces'}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = (folder / "lab.log").open("w")
    env = {**os.environ, "WORKBENCH_STORE": str(folder / "runs.sqlite")}
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
                    raise RuntimeError(f"no JupyterLab; see {folder / 'lab.log'}") from None
                time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


def _page(browser, base: str):
    """A page that blocks every non-local request; the page, its script errors, the URLs."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    remote: list[str] = []

    def route(request_route):
        if request_route.request.url.startswith(base):
            request_route.continue_()
        else:  # no internet: anything else fails, as it would behind a firewall
            remote.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    return page, problems, remote


def _run_all(browser, base: str, notebook: str):
    """Open ``notebook``, run all cells, wait until each has run; the page and its log."""
    page, problems, remote = _page(browser, base)
    # ?reset: a fresh workspace, so only this notebook is open
    page.goto(f"{base}/lab/tree/{notebook}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-Notebook", timeout=TIMEOUT_MS)
    select_kernel = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        select_kernel.wait_for(timeout=5_000)
        select_kernel.click()
    except Exception:  # no kernel dialog: the notebook's kernelspec was taken as is
        pass
    idle = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
    page.locator(f"{idle} >> visible=true").first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("menuitem", name="Run").click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(
        """() => {
            const open = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt';
            const prompts = [...document.querySelectorAll(open)];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=TIMEOUT_MS,
    )
    return page, problems, remote


# Known dashboard race, not a resource problem: two profiles finishing on the worker thread
# in quick succession can send Bokeh a patch naming a model the page has not received yet
# ("reference ... isn't known"); the page recovers with the next update.
KNOWN_RACE = "isn't known"


def _unexpected(problems: list[str], remote: list[str]) -> tuple[list[str], list[str]]:
    remote = [url for url in remote if not url.split("?")[0].endswith(CSS_GAP)]
    problems = [
        p
        for p in problems
        if "Failed to load resource: net::ERR_FAILED" not in p and KNOWN_RACE not in p
    ]
    return problems, remote


def test_notebook_01_draws_its_plotly_figures(lab, browser):
    page, problems, remote = _run_all(browser, lab, "01_quick_start.ipynb")
    page.wait_for_function(
        "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4", timeout=60_000
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab-01-quick-start.png"))
    assert page.locator(".jp-OutputArea-output[data-mime-type*='stderr']").count() == 0
    assert _unexpected(problems, remote) == ([], [])
    page.close()


def test_notebook_05_dashboard_renders_and_redraws_offline(lab, browser):
    page, problems, remote = _run_all(browser, lab, "05_dashboard_inline.ipynb")
    # the first profile (batch 8) is drawn, then the cell's change to batch 32 redraws it
    page.get_by_text("digits-cnn onnxruntime/cpu bs=32").first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator(".js-plotly-plot").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab-05-dashboard-inline.png"), full_page=True)
    assert not [p for p in problems if "Notyf" in p]
    assert _unexpected(problems, remote) == ([], [])
    page.close()


def test_open_in_workbench_opens_an_onnx_in_a_tab_and_asks_before_a_pt2(lab, browser):
    pytest.importorskip("wb_jupyterlab", reason="extensions/workbench-jupyterlab not installed")
    page, problems, remote = _page(browser, lab)
    page.goto(f"{lab}/lab?reset&token={TOKEN}")
    menu_item = page.get_by_role("menuitem", name="Open in workbench")

    def kernels() -> int:
        return len(page.request.get(f"{lab}/api/kernels").json())

    before = kernels()
    # a .pt2 may run code when loaded: the command asks first, and cancelling opens nothing
    page.locator(".jp-DirListing-item", has_text="tiny-export.pt2").click(button="right")
    menu_item.click()
    page.locator(".jp-Dialog", has_text="Trust this model file?").wait_for()
    page.get_by_role("button", name="Cancel").click()
    page.locator(".jp-DirListing-item", has_text="tiny-digits.onnx").click(button="right")
    menu_item.click()
    page.locator(".lm-TabBar-tab", has_text="workbench: tiny-digits.onnx").wait_for()
    assert page.locator(".lm-TabBar-tab", has_text="tiny-export.pt2").count() == 0
    # the dashboard, run by a kernel of this Jupyter server, profiles the file it was given
    dashboard = page.frame_locator("iframe[src*='workbench/open']")
    dashboard.get_by_text("tiny-digits onnxruntime/cpu").first.wait_for(timeout=TIMEOUT_MS)
    page.locator(".jp-DirListing-item", has_text="tiny-digits.onnx").click(button="right")
    menu_item.click()  # again: its tab comes forward, no second dashboard (and kernel) starts
    tab = page.locator(".lm-TabBar-tab", has_text="workbench: tiny-digits.onnx")
    assert tab.count() == 1 and kernels() == before + 1  # the dashboard's own kernel
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab-open-in-workbench.png"))
    assert _unexpected(problems, remote) == ([], [])
    outside = page.request.get(f"{lab}/workbench/open?path=../tiny-digits.onnx")
    assert outside.status == 403 and "outside the Jupyter root" in outside.text()
    tab.locator(".lm-TabBar-tabCloseIcon").click()  # closing the tab shuts its kernel down
    deadline = time.monotonic() + 30
    while kernels() != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert kernels() == before
    page.close()
