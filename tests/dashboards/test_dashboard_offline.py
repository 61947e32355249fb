"""The served dashboard asks nothing of the internet: Chromium with every non-local request failed.

Panel links its stylesheets on its CDN while a session's document is built; a stylesheet
sent after the page was written (``loading.css``, when a pane re-renders as a profile
arrives) still pointed there, so the page asked cdn.holoviz.org for it. Here every request
to a host other than localhost is aborted and recorded, and the test fails on any.
(The inline dashboard in a notebook is checked the same way in test_notebooks_browser.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 180_000
LOCAL_HOSTS = {"localhost", "127.0.0.1"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not found at {CHROMIUM}"),
]


@pytest.fixture
def served(tmp_path):
    from test_dashboard_browser import free_port, wait_until_up

    port = free_port()
    command = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port),
               "--model", "digits-mlp", "--store", str(tmp_path / "runs.sqlite"),
               "--budget", "0.1"]  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    try:
        wait_until_up(f"http://localhost:{port}/", process)
        yield f"http://localhost:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_the_served_dashboard_requests_nothing_off_this_machine(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    remote: list[str] = []

    def route(request_route) -> None:
        url = request_route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in LOCAL_HOSTS:
            request_route.continue_()
        else:
            remote.append(url)
            request_route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", route)
            page.goto(served)
            page.locator(".gtitle", has_text="Per-layer latency").first.wait_for()
            for name in ("Compare", "Devices", "Graph", "Profile"):
                page.locator(".bk-tab", has_text=name).first.click()
                page.wait_for_timeout(1_000)
            # a new profile re-renders panes in place: their stylesheets are sent again
            batch = page.locator("select").filter(has=page.locator("option", has_text="16"))
            batch.first.select_option(label="16")
            page.locator(".gtitle", has_text="bs=16").first.wait_for()
            page.wait_for_timeout(2_000)  # late stylesheet requests still count
        finally:
            browser.close()
    assert remote == []
