"""The dashboard as a workbench, driven through its parameters: report download,
sensitivity to recipe, graph view and estimate-then-measure."""

from __future__ import annotations


def test_the_profile_page_downloads_the_current_profile_as_one_report(make_app):
    app = make_app("digits-mlp")
    text = app.profile._report().getvalue()
    assert text.startswith("<!DOCTYPE html>")
    assert f"Profile — {app.state.current.label}" in text
    assert "Per-layer latency" in text and "<script src" not in text
    assert app.profile.report.filename.endswith(".html")
