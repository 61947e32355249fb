#!/usr/bin/env bash
# The main job on a fresh machine: set up, then open the dashboard on a sample model.
# WORKBENCH_MAIN=profile prints a quick-start profile table instead; WORKBENCH_MAIN=lab opens
# JupyterLab on notebooks/ (localhost only; the address with its token is printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORKBENCH_SKIP_BROWSER=1 source scripts/setup.sh

case "${WORKBENCH_MAIN:-dashboard}" in
lab)
    # Jupyter refuses to run as root unless told; containers and CI machines often are root
    root_flag=()
    [ "$(id -u)" = "0" ] && root_flag=(--allow-root)
    exec jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks --no-browser \
        "${root_flag[@]}" "$@"
    ;;
profile)
    main=profile
    ;;
*)
    main=dashboard
    ;;
esac
if [ "$main" = "profile" ] || ! python -c "import workbench.dashboards" 2>/dev/null; then
    workbench devices
    exec workbench profile digits-cnn --backend onnxruntime --device cpu --batch-size 32
fi
exec workbench serve --model digits-cnn "$@"
