#!/usr/bin/env bash
# Installs workbench and everything its tests and dashboard need. Idempotent: a second run
# takes seconds. Sourced by run.sh and test.sh; not meant to be called on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pip_install() { python -m pip install --disable-pip-version-check -q "$@"; }

# Torch first, pinned to the CPU build: left to resolve `torch>=2.4` on its own, pip would
# fetch a multi-GB CUDA build. Elsewhere, install any torch >= 2.4 first and this is skipped.
if ! python -c "import torch" 2>/dev/null; then
    pip_install "torch==2.13.0"
fi
pip_install -e ".[dev,dashboard,lab]"
# the example plugin, so the tests exercise the entry points the way a third party would
pip_install -e extensions/workbench-reference
pip_install -e extensions/workbench-openvino  # OpenVINO backend plugin (pulls the openvino wheel)
pip_install extensions/workbench-jupyterlab  # "Open in workbench" in JupyterLab (not -e: see its README)

# Browser tests drive Debian's Chromium; Playwright cannot download its own browsers here.
if [ "${WORKBENCH_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
            >/dev/null || echo "setup: could not install chromium; browser tests will skip" >&2
    else
        echo "setup: chromium missing and not root; browser tests will skip" >&2
    fi
fi
