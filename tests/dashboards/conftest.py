"""Dashboard fixtures: an app per test on a temporary results store, closed afterwards."""

from __future__ import annotations

import pytest

from workbench.dashboards.cache import RESULTS


@pytest.fixture
def make_app(tmp_path):
    """Build `App`s on a fresh cache and a temporary store; close them after the test."""
    from workbench.dashboards.app import App

    RESULTS.clear()
    apps = []

    def build(model="digits-mlp", **options):
        options = {"store": tmp_path / "runs.sqlite", "budget_s": 0.05, **options}
        app = App(model, **options)
        apps.append(app)
        app.state.jobs.wait()
        return app

    yield build
    for app in apps:
        app.close()
