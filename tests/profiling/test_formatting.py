"""Readable units in `Profile`'s notebook view (workbench.profiling.formatting)."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from workbench.profiling.formatting import (
    MISSING,
    format_bytes,
    format_count,
    format_flops,
    format_ms,
    format_share,
    profile_html,
)
from workbench.profiling.memory import ProfileMemory
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (7.55, "7.55 ms"),
        (0.486653, "487 µs"),
        (0.0004, "0.4 µs"),
        (1234.5, "1.23 s"),
        (0, "0"),
        (float("nan"), MISSING),
        (None, MISSING),
        ("n/a", MISSING),
    ],
)
def test_times_have_three_significant_figures_and_a_unit(value, text):
    assert format_ms(value) == text


@pytest.mark.parametrize(
    ("fmt", "value", "text"),
    [
        (format_flops, 7.55e7, "75.5 MFLOP"),
        (format_flops, 2.5e9, "2.5 GFLOP"),
        (format_flops, 640, "640 FLOP"),
        (format_flops, math.inf, MISSING),
        (format_bytes, 512, "512 B"),
        (format_bytes, 12_800, "12.5 KiB"),
        (format_bytes, 478 * 2**20, "478 MiB"),
        (format_share, 0.1234, "12.3%"),
        (format_share, float("nan"), MISSING),
        (format_count, 31_166.4, "31,166"),
    ],
)
def test_counts_sizes_and_shares(fmt, value, text):
    assert fmt(value) == text


@pytest.fixture
def profile():
    layers = pd.DataFrame(
        {
            "layer": ["features.0", "features.1", "features.2", "classifier.0"],
            "op_type": ["Conv", "BatchNormalization", "Relu", "Gemm"],
            "latency_ms": [0.486653, 0.0, 0.0, 0.0123],
            "share": [0.9, 0.0, 0.0, 0.05],
            "flops": [7.55e7, 131072.0, float("nan"), 20480.0],
            "bytes": [1.5e6, 2.0e5, 1.0e5, 4096.0],
            "params_bytes": [2368.0, 128.0, 0.0, float("nan")],
            "fused_into": [None, "features.0", "features.0", None],
        }
    )
    return Profile(
        "digits-cnn",
        "onnxruntime",
        "cpu",
        32,
        Measurement((0.45, 0.5, 0.55, 7.0)),
        layers=layers,
        memory=ProfileMemory(model_peak_bytes=3 * 2**19, process_rss_bytes=478 * 2**20),
        notes=("per-layer times are instrumented",),
    )


def test_profile_html_shows_units_not_raw_floats(profile):
    text = profile._repr_html_()
    cells = re.findall(r"<td[^>]*>(.*?)</td>", text)
    assert "75.5 MFLOP" in cells and "487 µs" in cells and "478 MiB" in cells
    assert "12.3 µs" in cells and "2.31 KiB" in cells
    # no scientific notation, no NaN, no long raw float anywhere in the cells
    assert not [c for c in cells if re.search(r"\de[+-]\d|nan|\d\.\d{4,}", c, re.I)]
    assert cells.count(MISSING) == 2  # the missing FLOPs and parameter bytes


def test_fused_layers_say_where_their_time_went(profile):
    text = profile._repr_html_()
    assert text.count("fused into features.0") == 2
    assert "<td>0</td><td>0%</td>" not in text  # no zero-time row for a fused layer


def test_rows_have_one_height_and_text_escaped(profile):
    profile.layers.loc[3, "layer"] = "<head>"
    text = profile._repr_html_()
    assert "height: 22px" in text and "white-space: nowrap" in text
    assert "&lt;head&gt;" in text and "<head>" not in text


def test_a_profile_without_layers_shows_the_headline_only():
    bare = Profile("m", "torch", "cpu", 1, Measurement((1.0, 1.1, 0.9)))
    text = profile_html(bare)
    assert "1 ms" in text and "Slowest layers" not in text
    assert f"<td>{MISSING}</td>" in text  # no peak memory measured
