"""A report written by ``workbench report`` opens in Chromium with no network at all.

The file is opened from disk with every non-file request refused; the page must raise no
console error and draw every figure the report holds (plotly.js comes inline).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dashboards.test_dashboard_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not found at {CHROMIUM}"),
]


def test_a_cli_report_opens_offline_without_console_errors_and_draws_its_figures(tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    out = tmp_path / "report.html"
    store = str(tmp_path / "runs.sqlite")
    command = [sys.executable, "-m", "workbench.cli", "report", "digits-cnn", "--out", str(out),
               "--batch-size", "4", "--budget", "0.1", "--store", store]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    profile_dir = tmp_path / "chromium-profile"
    requested: list[str] = []
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile_dir), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1300, "height": 900}, timeout=TIMEOUT_MS, offline=True,
        )  # fmt: skip
        try:
            # anything but the file itself is refused, so a missing inline asset would fail
            context.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith("file://")
                    else (requested.append(route.request.url), route.abort())
                ),
            )
            page = context.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(out.as_uri())
            page.locator(".js-plotly-plot .main-svg").first.wait_for()
            drawn = page.locator(".js-plotly-plot").evaluate_all(
                "els => els.map(e => [(e.layout.title || {}).text || '', (e.data || []).length])"
            )
            titles = [title for title, _ in drawn]
            for expected in ("Per-layer latency", "Roofline", "Memory per layer",
                             "End-to-end latency distribution"):  # fmt: skip
                assert any(expected in t for t in titles), titles
            assert all(traces > 0 for title, traces in drawn if "Roofline" not in title), drawn
            assert page.get_by_text("Cold start").first.is_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"))
        finally:
            context.close()
    shutil.rmtree(profile_dir, ignore_errors=True)
    assert problems == [], problems
    assert requested == [], requested
