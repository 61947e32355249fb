#!/usr/bin/env bash
# Installs workbench and everything its tests and dashboard need, printing a line per step
# with its duration (and pip's own lines as it collects and installs). Idempotent: each step
# checks what is installed first, so a second run takes seconds. Sourced by run.sh and
# test.sh; `bash scripts/setup.sh` runs it on its own.
#
# PyTorch comes from PyTorch's CPU index (WORKBENCH_TORCH_INDEX; "none" skips it): the public
# index's torch is the CUDA build with gigabytes of nvidia libraries. Where that index cannot
# be reached within a few seconds, the plain pin is installed from the configured indexes.
# An installed torch >= 2.4 is always kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

wb_torch_pin=2.13.0
wb_torch_index=${WORKBENCH_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

wb_now() { date +%s%N; }
wb_elapsed() {  # seconds since $1 (a wb_now), to a tenth
    local tenths=$((($(wb_now) - $1) / 100000000))
    echo "$((tenths / 10)).$((tenths % 10)) s"
}
wb_setup_start=$(wb_now)
wb_say() { echo "setup: $*"; }

# pip with its collecting/downloading/installing lines shown (indented) and the rest kept in
# a log that is printed only when pip fails
wb_pip() {
    local log status
    log=$(mktemp)
    set +e
    python -m pip install --disable-pip-version-check "$@" 2>&1 | tee "$log" |
        { grep --line-buffered -E '^(Collecting|Downloading|Installing collected|Successfully)' || true; } |
        sed -u 's/^/    /'
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" != 0 ]; then
        echo "setup: pip failed; its last lines:" >&2
        grep -v "^WARNING: Location" "$log" | tail -n 30 >&2
    fi
    rm -f "$log"
    return "$status"
}

# whether PyTorch's CPU index answers within 5 seconds (it is unreachable on some networks,
# where pip would otherwise wait for minutes); asked once
wb_torch_index_reachable() {
    if [ -z "${wb_index_answer:-}" ]; then
        wb_index_answer=no
        if [ "$wb_torch_index" != "none" ] && python -c "
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=5).close()
except Exception:
    sys.exit(1)" "$wb_torch_index"; then
            wb_index_answer=yes
        fi
    fi
    [ "$wb_index_answer" = yes ]
}

# 1. torch, CPU build
wb_t=$(wb_now)
# (its installed version, read without importing it: importing torch takes seconds)
if wb_version=$(python -c "import importlib.metadata as m; print(m.version('torch'))" 2>/dev/null); then
    wb_say "torch $wb_version already installed, kept ($(wb_elapsed "$wb_t"))"
else
    wb_say "torch $wb_torch_pin (CPU build) ..."
    if wb_torch_index_reachable; then
        wb_pip "torch==$wb_torch_pin" --index-url "$wb_torch_index"
    else
        wb_say "  PyTorch's CPU index is unreachable; installing torch==$wb_torch_pin from the" \
            "configured indexes (on the public index alone that is the CUDA build)"
        wb_pip "torch==$wb_torch_pin"
    fi
    wb_say "torch done ($(wb_elapsed "$wb_t"))"
fi

# 2. workbench itself, editable, under its distribution name (an install under the project's
#    former name, "workbench", is someone else's package on PyPI and is removed)
wb_t=$(wb_now)
python scripts/installed.py . workbench --forget
if wb_problems=$(python scripts/installed.py . dev,dashboard,lab --editable); then
    wb_say "workbench and its dev, dashboard and lab extras already installed ($(wb_elapsed "$wb_t"))"
else
    wb_say "workbench, editable, with its dev, dashboard and lab extras (${wb_problems%%$'\n'*}) ..."
    wb_pip -e ".[dev,dashboard,lab]"
    wb_say "workbench done ($(wb_elapsed "$wb_t"))"
fi

# 3. the plugins in extensions/: the example plugin (the tests exercise the entry points the
#    way a third party would), OpenVINO's backend (pulls the openvino wheel) and "Open in
#    workbench" for JupyterLab (not -e: see its README)
for wb_plugin in workbench-reference workbench-openvino workbench-jupyterlab; do
    wb_t=$(wb_now)
    wb_dir=extensions/$wb_plugin
    if [ "$wb_plugin" = workbench-jupyterlab ]; then
        wb_flags=(--stamp) wb_pip_args=("$wb_dir")
    else
        wb_flags=(--editable) wb_pip_args=(-e "$wb_dir")
    fi
    if python scripts/installed.py "$wb_dir" "" "${wb_flags[@]}" >/dev/null; then
        wb_say "$wb_plugin already installed ($(wb_elapsed "$wb_t"))"
    else
        wb_say "$wb_plugin ..."
        wb_pip "${wb_pip_args[@]}"
        [ "$wb_plugin" = workbench-jupyterlab ] && python scripts/installed.py "$wb_dir" --record
        wb_say "$wb_plugin done ($(wb_elapsed "$wb_t"))"
    fi
done

# 4. torchvision for the tests of its models: the build that matches torch from PyTorch's
#    CPU index where it is reachable. Else PyPI's wheel of the matching release, without its
#    dependencies, in an overlay environment (.venv-torchvision: this one's packages plus
#    torchvision) where only the tests of torchvision's models run (scripts/test.sh). That
#    wheel is a CUDA build: beside a CPU torch its compiled operators do not load and a
#    plain `from transformers import BertModel` fails, so it stays out of this environment;
#    the model definitions need none of those operators (docs/backends.md).
wb_t=$(wb_now)
wb_overlay=.venv-torchvision
if python -c "import importlib.util, sys; sys.exit(not importlib.util.find_spec('torchvision'))"; then
    wb_say "torchvision already installed, kept ($(wb_elapsed "$wb_t"))"
elif [ -x "$wb_overlay/bin/python" ] && "$wb_overlay/bin/python" -c "import torchvision" 2>/dev/null; then
    wb_say "torchvision already in $wb_overlay, kept ($(wb_elapsed "$wb_t"))"
else
    wb_torch_release=$(python -c "import torch; print(torch.__version__.split('+')[0])")
    if wb_torch_index_reachable; then
        wb_say "torchvision (CPU build, matching torch) ..."
        wb_pip torchvision "torch==$wb_torch_release" --index-url "$wb_torch_index"
    else
        # torchvision 0.(N+15) goes with torch 2.N
        wb_vision=$(python -c "import sys; print(f'0.{int(sys.argv[1].split(\".\")[1]) + 15}.*')" "$wb_torch_release")
        wb_say "torchvision $wb_vision from PyPI into $wb_overlay (PyTorch's CPU index is unreachable) ..."
        python -m venv --system-site-packages "$wb_overlay"
        "$wb_overlay/bin/python" -m pip install -q --disable-pip-version-check --no-deps "torchvision==$wb_vision" ||
            wb_say "torchvision not installed (the tests of torchvision's models skip)"
    fi
    wb_say "torchvision done ($(wb_elapsed "$wb_t"))"
fi

# 5. optimum's exporter for the test against a real optimum export
#    (tests/loaders/test_optimum_folders.py): optimum-onnx pins transformers < 4.58, so it
#    goes into an overlay environment (.venv-optimum: this one's packages, its own
#    transformers) whose command line the test runs; nothing imports it here.
wb_t=$(wb_now)
wb_optimum=.venv-optimum
if [ -x "$wb_optimum/bin/optimum-cli" ]; then
    wb_say "optimum already in $wb_optimum, kept ($(wb_elapsed "$wb_t"))"
else
    wb_say "optimum-onnx 0.1.0 with transformers 4.57.6 into $wb_optimum ..."
    python -m venv --system-site-packages "$wb_optimum"
    "$wb_optimum/bin/python" -m pip install -q --disable-pip-version-check \
        "optimum-onnx==0.1.0" "transformers==4.57.6" 2>&1 | grep -v "^WARNING: Location" |
        grep -v "dependency resolver\|requires huggingface-hub" || true
    [ -x "$wb_optimum/bin/optimum-cli" ] ||
        wb_say "optimum not installed (the test against a real optimum export skips)"
    wb_say "optimum done ($(wb_elapsed "$wb_t"))"
fi

# 6. Browser tests drive Debian's Chromium; Playwright cannot download its own browsers here.
wb_t=$(wb_now)
if [ "${WORKBENCH_SKIP_BROWSER:-0}" = "1" ]; then
    wb_say "chromium not needed (WORKBENCH_SKIP_BROWSER=1)"
elif command -v chromium >/dev/null 2>&1; then
    wb_say "chromium already installed"
elif [ "$(id -u)" = "0" ]; then
    wb_say "chromium (Debian's package) ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null || echo "setup: could not install chromium; browser tests will skip" >&2
    wb_say "chromium done ($(wb_elapsed "$wb_t"))"
else
    echo "setup: chromium missing and not root; browser tests will skip" >&2
fi
wb_say "ready in $(wb_elapsed "$wb_setup_start")"
