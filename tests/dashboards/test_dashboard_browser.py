"""The served dashboard in a real browser: Debian's Chromium driven by Playwright.

Starts ``workbench serve`` on a free localhost port, loads the page, checks the console
stays clean, changes the batch size and waits for the figure to follow, and saves a
screenshot under ``test-artifacts/``. What the figures and tables show is checked against
the profiles the server saved in its results store (the slowest layer's bar, the
variant's point on the trade-off plot, the Runs table). Skips only when Chromium or
Playwright is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.profiling.profile import Profile
from workbench.store import Store

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TIMEOUT_MS = 120_000  # generous: other work shares the machine (no speed is asserted)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not found at {CHROMIUM}"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"workbench serve exited with {process.returncode}")
        try:
            # the first page builds a whole session: seconds on a loaded machine
            with urllib.request.urlopen(url, timeout=60) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"workbench serve did not answer on {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`workbench serve` on a free port; killed in the finalizer whatever happens."""
    port = free_port()
    store = tmp_path_factory.mktemp("store") / "runs.sqlite"
    log = (tmp_path_factory.mktemp("log") / "serve.log").open("w")
    command = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port),
               "--model", "digits-mlp", "--store", str(store), "--budget", "0.1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        wait_until_up(f"http://localhost:{port}/", process)
        yield f"http://localhost:{port}/", Store(store)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000}, timeout=TIMEOUT_MS,
        )  # fmt: skip
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(browser, url):
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"{e} at {e.stack}"))
    page.goto(url)
    title = page.locator(".gtitle", has_text="Per-layer latency")
    title.first.wait_for()
    return page, problems


def figure_title(page) -> str:
    return page.locator(".gtitle", has_text="Per-layer latency").first.text_content()


def figure_traces(page, title: str) -> list[dict]:
    """The traces of the Plotly figure whose title contains ``title``, as the browser holds them."""
    figures = page.locator(".js-plotly-plot").evaluate_all(
        """els => els.map(e => ({
            title: (e.layout && e.layout.title && e.layout.title.text) || "",
            traces: (e.data || []).map(t => ({
                type: t.type, mode: t.mode || "",
                x: t.x ? Array.from(t.x) : [], y: t.y ? Array.from(t.y) : [],
                customdata: t.customdata ? Array.from(t.customdata, c =>
                    (c !== null && typeof c === "object") ? Array.from(c) : c) : [],
            })),
        }))"""
    )
    found = [f["traces"] for f in figures if title in f["title"]]
    assert found, f"no figure titled {title!r} in {[f['title'] for f in figures]}"
    return found[0]


def stored_profile(store: Store, recipe: str = "baseline", batch_size: int = 8) -> Profile:
    runs = store.runs()
    runs = runs[(runs["kind"] == "profile") & (runs["batch_size"] == batch_size)]
    runs = runs[runs["recipe"] == recipe]
    assert len(runs), f"no stored {recipe} profile at batch {batch_size}"
    return store.load_profile(str(runs["run_id"].iloc[0]))


def wait_for_point(page, title: str, variant: str) -> list[float]:
    """(latency, metric) of ``variant``'s marker once the figure shows it."""
    for _ in range(240):  # the variant is measured on the server; polled, no time limit asserted
        for trace in figure_traces(page, title):
            for x, y, data in zip(trace["x"], trace["y"], trace["customdata"], strict=False):
                label = data[0] if isinstance(data, list) else data
                if "markers" in trace["mode"] and label == variant:
                    return [x, y]
        page.wait_for_timeout(500)
    raise AssertionError(f"{variant} never appeared on {title!r}")


def test_dashboard_loads_updates_on_a_control_and_sessions_stay_apart(server, browser):
    url, store = server
    ARTIFACTS.mkdir(exist_ok=True)
    page, problems = open_page(browser, url)
    assert figure_title(page).endswith("bs=8")
    page.get_by_text("P50").first.wait_for()
    page.locator(".wb-title", has_text="bs=8").first.wait_for()
    p50_first = page.locator(".wb-v").first.text_content()
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

    # the bars show the saved profile: its slowest layer is the longest bar, at its value
    measured = stored_profile(store).top_layers(1).iloc[0]
    bars = {
        name: value
        for trace in figure_traces(page, "Per-layer latency")
        if trace["type"] == "bar"
        for name, value in zip(trace["y"], trace["x"], strict=True)
        if not name.startswith("(")
    }
    slowest = max(bars, key=bars.__getitem__)
    assert slowest == measured["layer"]
    assert bars[slowest] == pytest.approx(measured["latency_ms"], rel=1e-6)

    batch = page.locator("select:has(option[value='256'])").first
    batch.select_option("16")
    page.locator(".gtitle", has_text="bs=16").first.wait_for()
    assert figure_title(page).endswith("bs=16")
    page.screenshot(path=str(ARTIFACTS / "dashboard-batch16.png"))

    assert "batch_size=16" in page.url  # the pickers live in the URL, to share a view
    # a second, independent session, opened from a shared URL
    other, other_problems = open_page(browser, url + "?batch_size=4")
    other.locator(".gtitle", has_text="bs=4").first.wait_for()
    assert figure_title(page).endswith("bs=16")

    start = time.perf_counter()
    batch.select_option("8")  # measured before: the cached profile comes back
    page.locator(".wb-title", has_text="bs=8").first.wait_for()
    elapsed_s = time.perf_counter() - start
    assert page.locator(".wb-v").first.text_content() == p50_first  # same run, not a new one
    (ARTIFACTS / "browser-timings.json").write_text(
        json.dumps({"cached_update_in_browser_s": round(elapsed_s, 3)})
    )

    # every page renders without console errors
    page.locator(".bk-tab", has_text="Compare").first.click()
    page.locator(".gtitle", has_text="Per-layer comparison").first.wait_for()
    page.locator(".bk-tab", has_text="Devices").first.click()
    page.locator(".gtitle", has_text="Roofline").first.wait_for()
    page.locator(".bk-tab", has_text="Runs").first.click()
    page.get_by_text("runs in runs.sqlite").first.wait_for()
    page.get_by_text(stored_profile(store).created_at).first.wait_for()  # the stored run

    page.locator(".bk-tab", has_text="Optimize").first.click()
    # opening the page measures the baseline: its point joins the trade-off plot
    page.locator(".gtitle", has_text="accuracy vs latency").first.wait_for()
    page.locator("select:has(option[value='int8-dynamic'])").first.select_option("int8-dynamic")
    latency, accuracy = wait_for_point(page, "accuracy vs latency", "int8-dynamic")
    variant = stored_profile(store, recipe="int8-dynamic")
    assert latency == pytest.approx(variant.latency.median, rel=1e-6) and 0.5 < accuracy <= 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-optimize.png"))
    assert problems == [] and other_problems == [], problems + other_problems
    other.close()
    page.close()


def test_uploading_a_model_file_profiles_it_and_a_corrupt_one_is_explained(
    server, browser, tmp_path
):
    page, problems = open_page(browser, server[0])
    upload = page.locator("input[type=file]").first
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"definitely not a protobuf")
    upload.set_input_files(str(corrupt))
    page.get_by_text("broken.onnx is not a valid ONNX model").first.wait_for()

    page.reload()
    page.locator(".gtitle", has_text="Per-layer latency").first.wait_for()
    model = Path(__file__).resolve().parents[2] / "sample_models" / "digits-cnn" / "model.onnx"
    page.locator("input[type=file]").first.set_input_files(str(model))
    # the upload joins the model picker and is profiled at once (a file's model is "model")
    page.locator(".gtitle", has_text="Per-layer latency — model ").first.wait_for()
    assert "model.onnx (uploaded)" in page.locator("select").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-upload.png"))
    assert problems == [], problems
    page.close()


def test_the_plan_page_plans_uploaded_results_on_uploaded_machines(server, browser, tmp_path):
    from tests.plan.test_plan_fleet import measured
    from workbench.planning import plan
    from workbench.planning.what_if import cost_against_traffic

    machine = Path(__file__).resolve().parents[2] / "docs" / "machines" / "example-rented-cpu.toml"
    result = tmp_path / "slo.json"
    measured(5.0, ("baseline", 40.0), ("int8", 70.0)).to_json(result)
    page, problems = open_page(browser, server[0])
    page.locator(".bk-tab", has_text="Plan").first.click()
    page.locator("input[type=file][accept='.json']").first.set_input_files(str(result))
    page.locator("input[type=file][accept='.toml']").first.set_input_files(str(machine))
    # both offered in the pickers (the candidate pairs the picked two)
    page.locator("option[value='slo.json']").first.wait_for(state="attached")
    page.locator("option[value='example-rented-cpu']").first.wait_for(state="attached")
    page.locator("button", has_text="Add candidate").first.click()
    page.locator(".gtitle", has_text="3-year cost against traffic").first.wait_for()
    page.get_by_text("cheapest: example-rented-cpu int8 onnxruntime/cpu").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-plan-inputs.png"))
    # the figure draws the plan's own arithmetic: each candidate's cost at each rate
    expected = cost_against_traffic(plan([(machine, result)], 100.0, 5.0))
    traces = figure_traces(page, "3-year cost against traffic")
    for trace, (_, group) in zip(traces, expected.groupby("candidate", sort=False), strict=True):
        assert trace["x"] == pytest.approx(list(group["target_rate_per_s"]))
        assert trace["y"] == pytest.approx(list(group["tco_horizon"]))
    # the log axis spans the traffic drawn (a mislaid annotation once stretched it to 1e100)
    low, high = page.locator(".js-plotly-plot").evaluate_all(
        """els => els.filter(e => String(e.layout.title.text).includes("3-year cost"))
                     .map(e => e._fullLayout.xaxis.range)[0]"""
    )
    assert 0 < low < 1 and 3 < high < 4  # log10 of 10/s ... 1,000/s, with a margin
    page.locator(".gtitle", has_text="3-year cost").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-plan.png"))
    assert problems == [], problems
    page.close()
