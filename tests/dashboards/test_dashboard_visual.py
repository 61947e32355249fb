"""Visual regression and the workbench flow in a real browser.

Walks every page of the served dashboard in Chromium (a short offline run on Serving;
the Sensitivity page's flow: Analyse, keep a layer in full precision, measure the recipe
on Optimize), takes one
screenshot per page with the measured numbers masked, and compares it with the committed
reference in ``references/`` (grayscale, a quarter of the size, mean absolute pixel
difference under `TOLERANCE`): a figure that stops drawing, a page that errors or a
layout that breaks fails; run-to-run timing noise does not. With ``WORKBENCH_UPDATE_
REFERENCES=1`` the references are rewritten instead (look at them before committing).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from tests.dashboards.test_dashboard_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    browser,
    open_page,
    server,
    wait_for_point,
)

REFERENCES = Path(__file__).parent / "references"
#: mean absolute difference (0-255 gray levels) a page may drift by; two different pages
#: differ by about 24, a page from one run to the next by 0-4, Compare (two profiles'
#: bars re-sorted by their change) by up to about 9
TOLERANCE = 12.0
LOOSER = {"compare": 16.0}
UPDATE = os.environ.get("WORKBENCH_UPDATE_REFERENCES") == "1"
#: what changes from run to run: the measured numbers, messages and table contents
VOLATILE = [".wb-cards", ".wb-note", ".wb-title", ".wb-volatile", ".tabulator", ".notyf__toast"]

pytestmark = pytest.mark.browser


def _small_gray(png: bytes) -> np.ndarray:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    return np.asarray(image.resize((image.width // 4, image.height // 4), Image.BILINEAR), float)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute gray-level difference of two screenshots (inf when sizes differ)."""
    return float(np.abs(a - b).mean()) if a.shape == b.shape else float("inf")


def shoot(page, name: str, shots: dict[str, np.ndarray]) -> None:
    page.mouse.move(0, 0)  # no hover label in the picture
    page.wait_for_timeout(800)  # plotly's transitions settle
    png = page.screenshot(mask=[page.locator(s) for s in VOLATILE], mask_color="#FF00FF")
    (ARTIFACTS / f"page-{name}.png").write_bytes(png)
    shots[name] = _small_gray(png)


def test_every_page_matches_its_reference_and_sensitivity_builds_the_recipe(server, browser):  # noqa: F811
    url, _ = server
    ARTIFACTS.mkdir(exist_ok=True)
    page, problems = open_page(browser, url)
    shots: dict[str, np.ndarray] = {}
    page.locator(".wb-title", has_text="bs=8").first.wait_for()
    shoot(page, "profile", shots)
    # a second profile, so that Compare has two to align
    page.locator("select:has(option[value='256'])").first.select_option("16")
    page.locator(".wb-title", has_text="bs=16").first.wait_for()

    def tab(name: str, ready: str) -> None:
        page.locator(".bk-tab", has_text=name).first.click()
        page.locator(".gtitle", has_text=ready).first.wait_for()

    tab("Compare", "Per-layer comparison")
    shoot(page, "compare", shots)
    tab("Devices", "Roofline")
    shoot(page, "devices", shots)
    tab("Graph", "Graph —")
    # nodes are drawn: one marker per layer node, coloured by latency
    assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 3
    shoot(page, "graph", shots)

    # Serving: a short offline run draws its per-query latencies
    page.locator(".bk-tab", has_text="Serving").first.click()
    page.locator("select:has(option[value='offline'])").first.select_option("offline")
    page.get_by_role("button", name="Run scenario").click()
    page.locator(".gtitle", has_text="cpu offline").first.wait_for()
    assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 10
    shoot(page, "serving", shots)

    # the sensitivity-to-recipe flow: analyse, keep one layer, measure on Optimize
    tab("Sensitivity", "Sensitivity per layer")
    page.get_by_role("button", name="Analyse").click()
    layer = sensitivity_layers(page)[-1]
    page.locator("label", has_text=layer).locator("input[type=checkbox]").first.check()
    page.get_by_text(f"except {layer}").first.wait_for()
    shoot(page, "sensitivity", shots)
    # unmasked, for the README (docs/dashboard.png is this picture, compressed)
    page.screenshot(path=str(ARTIFACTS / "dashboard-sensitivity.png"))
    page.get_by_role("button", name="Measure on Optimize").click()
    page.locator(".gtitle", has_text="accuracy vs latency").first.wait_for()
    wait_for_point(page, "accuracy vs latency", next_variant(page, layer))
    shoot(page, "optimize", shots)

    assert problems == [], problems
    page.close()
    compare_with_references(shots)


def sensitivity_layers(page) -> list[str]:
    """The layers of the sensitivity figure once it has bars (the analysis runs on the server)."""
    for _ in range(600):
        figures = page.locator(".js-plotly-plot").evaluate_all(
            "els => els.filter(e => String(((e.layout || {}).title || {}).text || '')"
            ".startsWith('Sensitivity')).flatMap(e => (e.data || []).filter(t => t.type === "
            "'bar').map(t => Array.from(t.x || [])))"
        )
        if figures and figures[0]:
            return [str(x) for x in figures[0]]
        page.wait_for_timeout(500)
    raise AssertionError("the sensitivity figure never showed bars")


def next_variant(page, layer: str) -> str:
    """The label of the measured recipe that keeps ``layer`` (as the Optimize page names it)."""
    for _ in range(480):
        labels = page.locator(".js-plotly-plot").evaluate_all(
            "els => els.flatMap(e => (e.data || []).flatMap(t => Array.from(t.customdata || [])"
            ".map(c => Array.isArray(c) ? String(c[0]) : String(c))))"
        )
        found = [x for x in labels if x.endswith(f"except {layer}")]
        if found:
            return found[0]
        page.wait_for_timeout(500)
    raise AssertionError(f"no variant keeping {layer} appeared on the Optimize page")


def compare_with_references(shots: dict[str, np.ndarray]) -> None:
    from PIL import Image

    REFERENCES.mkdir(exist_ok=True)
    drifts, missing = {}, []
    for name, shot in shots.items():
        path = REFERENCES / f"{name}.png"
        if UPDATE:
            Image.fromarray(shot.astype(np.uint8)).save(path, optimize=True)
            continue
        if not path.exists():
            missing.append(name)
            continue
        drifts[name] = difference(shot, np.asarray(Image.open(path).convert("L"), float))
    assert not missing, f"no reference for {missing}: run with WORKBENCH_UPDATE_REFERENCES=1"
    # the tolerance can see a change: two different pages are further apart than it
    assert difference(shots["profile"], shots["graph"]) > TOLERANCE
    assert all(d <= LOOSER.get(name, TOLERANCE) for name, d in drifts.items()), drifts
