"""Notebooks in a real JupyterLab and Chromium with no internet (every non-local request fails).

Starts one Jupyter server on a free localhost port over copies of notebooks 01 and 05, runs
all cells through the Run menu, and checks what a person would see: plotly figures drawn in
01; in 05 the inline dashboard rendered, redrawn when a cell changes its batch size, and
no script error (notably no "Notyf is not defined"), both in JupyterLab and in classic
Notebook 7 (its /notebooks/ pages on the same server). Any request to a host other than
localhost fails the test: the dashboard must need nothing from the internet, not even a
stylesheet. The same server checks the workbench-jupyterlab extension: "Open in workbench"
on an .onnx in the file browser opens the dashboard on it in a tab. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "workbench-test"
TIMEOUT_MS = 240_000
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# notebook 05 again under another name, for Notebook 7: its own session and kernel
NB7_COPY = "nb7-05_dashboard_inline.ipynb"

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
    """JupyterLab (and Notebook 7) over copies of notebooks 01 and 05; stopped whatever happens."""
    pytest.importorskip("jupyterlab")
    folder = tmp_path_factory.mktemp("lab")
    for name in ("01_quick_start.ipynb", "05_dashboard_inline.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, folder / name)
    shutil.copy(ROOT / "notebooks/05_dashboard_inline.ipynb", folder / NB7_COPY)
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
    # without PYTEST_CURRENT_TEST, kernels show what C code writes on stderr, as for a person
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["WORKBENCH_STORE"] = str(folder / "runs.sqlite")
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
    """A page that blocks every request off localhost; the page, its script errors, the URLs."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    remote: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if urlparse(url).hostname in LOCAL_HOSTS:
            request_route.continue_()
        else:  # no internet: it fails, as it would behind a firewall, and fails the test
            remote.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc} {exc.stack}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    return page, problems, remote


def _run_all(browser, base: str, notebook: str, *, classic: bool = False):
    """Open ``notebook`` (in Notebook 7 if ``classic``), run all cells, wait until each has
    run; the page and its log."""
    page, problems, remote = _page(browser, base)
    # ?reset: a fresh JupyterLab workspace, so only this notebook is open
    where = f"notebooks/{notebook}?" if classic else f"lab/tree/{notebook}?reset&"
    page.goto(f"{base}/{where}token={TOKEN}")
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
# The same race one step earlier: Panel's comm handler (msg_handler) drops the parts of a
# patch that arrive before its view is registered, so its bokeh Receiver reassembles the
# rest out of step and bokeh's _apply_json_patch gets no event list ("s is not iterable").
# Seen once in CI under load, when "Run All" changes the dashboard's state right after
# displaying it; the next update renders.
DROPPED_PARTS_RACE = ("is not iterable", "_apply_json_patch", "msg_handler")
# The same race seen by the Receiver itself: the parts it gets are out of step with the
# header it expects ("Expected binary fragment but received text fragment", and the
# reverse). Seen once in a fresh-clone CI run (Notebook 7, notebook 05), not in 3 reruns;
# the test still checks that the figures draw and redraw afterwards.
OUT_OF_STEP_RACE = ("fragment but received", "msg_handler")
# Thrown by Notebook 7.6's own bundle (notebook_core.js), whatever the notebook holds: its
# keyboard-shortcuts plugin on every /notebooks/ page (an empty notebook's too: the race
# reported upstream as jupyter/notebook#7862, "registry.plugins[shortcuts.id] is
# undefined", open in 7.6.5, the newest release on PyPI), and, on a server where
# JupyterLab ran first, JupyterLab's file-browser restore on a page that has no file
# browser.
NOTEBOOK7_OWN = ("(reading 'schema')", "Command 'filebrowser:open-path' not registered")


def _unexpected(problems: list[str], remote: list[str]) -> tuple[list[str], list[str]]:
    """Script errors other than the known ones, and every request that left localhost."""
    problems = [
        p
        for p in problems
        if KNOWN_RACE not in p
        and not all(part in p for part in DROPPED_PARTS_RACE)
        and not all(part in p for part in OUT_OF_STEP_RACE)
        and not ("/static/notebook/notebook_core." in p and any(e in p for e in NOTEBOOK7_OWN))
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


@pytest.mark.parametrize(
    ("notebook", "classic"),
    [("05_dashboard_inline.ipynb", False), (NB7_COPY, True)],
    ids=["jupyterlab", "notebook7"],
)
def test_notebook_05_dashboard_renders_and_redraws_offline(lab, browser, notebook, classic):
    page, problems, remote = _run_all(browser, lab, notebook, classic=classic)
    # the first profile (batch 8) is drawn, then the cell's change to batch 32 redraws it
    figure = page.locator(".js-plotly-plot")
    figure.filter(has_text="bs=32").first.wait_for(timeout=TIMEOUT_MS)
    # a control, changed as a person would: the batch-size picker profiles and redraws again
    option = page.locator("option", has_text=re.compile(r"^16$"))
    page.locator("select").filter(has=option).first.select_option(label="16")
    figure.filter(has_text="bs=16").first.wait_for(timeout=TIMEOUT_MS)
    # updates arrive after the first render: give their stylesheets time to be asked for
    page.wait_for_timeout(2_000)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = "nb7-05-dashboard-inline.png" if classic else "lab-05-dashboard-inline.png"
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
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
