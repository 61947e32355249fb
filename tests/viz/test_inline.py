"""The inline SVG figures of the notebook views: escaped text, nothing drawn without data,
the one style's palette, ink and font."""

from __future__ import annotations

from workbench.viz.inline import Bar, Point, bars_svg, colors_for, scatter_svg
from workbench.viz.style import FONT_FAMILY, INK, PALETTE


def test_the_figures_escape_text_and_draw_nothing_without_data():
    svg = bars_svg([("<i>", [Bar("<script>x</script>", 1.0)])], "a & b")
    assert "<script" not in svg and "&lt;script&gt;" in svg and "a &amp; b" in svg
    assert bars_svg([("", [Bar("x", None)])], "latency") == ""
    assert scatter_svg([Point(float("nan"), 0.5, "x")], "latency", "accuracy") == ""


def test_the_figures_draw_in_the_one_style():
    colors = colors_for(["Conv", "Gemm", "Conv", *(f"op{i}" for i in range(len(PALETTE)))])
    assert list(colors.values())[:2] == list(PALETTE[:2])  # first seen, first colour
    assert list(colors.values())[len(PALETTE)] == PALETTE[0]  # then the palette again
    svg = bars_svg([("", [Bar("conv1", 1.0, color=colors["Conv"])])], "latency")
    assert f"font-family:{FONT_FAMILY}" in svg and f"fill='{INK}'" in svg
    assert f"fill='{PALETTE[0]}'" in svg
