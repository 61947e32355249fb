"""binder/ builds the environment of the README's set-up (what repo2docker reads)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_binder_has_the_files_repo2docker_reads():
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"
    assert (ROOT / "binder/requirements.txt").is_file()
    post_build = (ROOT / "binder/postBuild").read_text()
    assert post_build.startswith("#!/usr/bin/env bash")


def test_binder_pins_the_same_torch_as_setup():
    (setup,) = re.findall(r"^wb_torch_pin=([\d.]+)$", (ROOT / "scripts/setup.sh").read_text(), re.M)
    (binder,) = re.findall(r"torch==([\d.]+)", (ROOT / "binder/requirements.txt").read_text())
    assert binder == setup


def test_binder_installs_the_setup_extras_less_the_test_tools():
    extras = re.compile(r'-e "\.\[([a-z,]+)\]"')
    (setup,) = extras.findall((ROOT / "scripts/setup.sh").read_text())
    (binder,) = extras.findall((ROOT / "binder/postBuild").read_text())
    assert set(binder.split(",")) == set(setup.split(",")) - {"dev"}


def test_the_binder_link_opens_notebook_01():
    readme = (ROOT / "README.md").read_text()
    assert "labpath=notebooks%2F01_quick_start.ipynb" in readme
    assert (ROOT / "notebooks/01_quick_start.ipynb").is_file()


def test_binder_measures_no_ceilings_at_build_time():
    """The image is built on another machine than the one the notebooks run on."""
    commands = [
        line
        for line in (ROOT / "binder/postBuild").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands and not [c for c in commands if "ceilings" in c or "python -c" in c]


def test_the_readme_has_no_placeholder_binder_badge():
    readme = (ROOT / "README.md").read_text()
    assert "mybinder.org/v2/gh/<owner>" not in readme and "badge_logo" not in readme
