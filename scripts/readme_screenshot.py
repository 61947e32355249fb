"""Rewrite docs/dashboard.png, the README's screenshot: the Sensitivity page building a
per-layer channel-pruning recipe on the digits-cnn sample, in Debian's Chromium.

Run from the repository root: ``python scripts/readme_screenshot.py``. Starts
``workbench serve`` on a free port (a throwaway results store), analyses channel
pruning one layer at a time, ticks the two most sensitive layers with their own ratios,
and saves the page as a 256-colour PNG (the README keeps it under 300 KB).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from tests.dashboards.test_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    wait_until_up,
)
from tests.dashboards.test_dashboard_visual import sensitivity_layers

OUT = Path(__file__).resolve().parents[1] / "docs" / "dashboard.png"


def main() -> int:
    port = free_port()
    url = f"http://localhost:{port}/"
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port),
                   "--model", "digits-cnn", "--store", f"{folder}/runs.sqlite",
                   "--budget", "0.2"]  # fmt: skip
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_up(url, server)
            png = shoot(url)
        finally:
            server.terminate()
            server.wait(timeout=20)
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, dither=Image.Dither.NONE)
    image.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB)")
    return 0


def shoot(url: str) -> bytes:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.locator(".gtitle", has_text="Per-layer latency").first.wait_for()
        page.locator(".bk-tab", has_text="Sensitivity").first.click()
        page.locator("select:has(option[value='prune-channels'])").first.select_option(
            "prune-channels"
        )
        page.get_by_role("button", name="Analyse").click()
        layers = sensitivity_layers(page)
        ratio = page.locator(".bk-input-group", has_text="Ratio for ticked layers")
        for layer, value in zip(layers[:2], ("0.2", "0"), strict=False):
            ratio.locator("input").first.fill(value)
            ratio.locator("input").first.press("Enter")
            page.locator("label", has_text=layer).locator("input[type=checkbox]").first.check()
            page.get_by_text(f"{layer} {float(value):.0%}").first.wait_for()
        page.mouse.move(0, 0)
        page.locator(".notyf__toast").evaluate_all("els => els.forEach(e => e.remove())")
        page.wait_for_timeout(1500)  # plotly's transitions settle
        png = page.screenshot()
        browser.close()
        return png


if __name__ == "__main__":
    raise SystemExit(main())
