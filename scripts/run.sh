#!/usr/bin/env bash
# The main job on a fresh machine: set up, then open the dashboard on a sample model.
# WORKBENCH_MAIN=profile prints a quick-start profile table instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORKBENCH_SKIP_BROWSER=1 source scripts/setup.sh

if [ "${WORKBENCH_MAIN:-dashboard}" = "profile" ] || ! python -c "import workbench.dashboards" 2>/dev/null; then
    workbench devices
    exec workbench profile digits-cnn --backend onnxruntime --device cpu --batch-size 32
fi
exec workbench serve --model digits-cnn "$@"
