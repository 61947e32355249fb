#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, then every test (CPU, the Numba
# CUDA simulator, dashboard in a real browser, notebooks). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

python -m ruff check workbench tests benchmarks extensions
python -m ruff format --check workbench tests benchmarks extensions
# mypy (about a minute from a cold cache, one core) checks beside the tests; its verdict
# is waited for and fails the run like any other step
mypy_log=$(mktemp)
python -m mypy workbench >"$mypy_log" 2>&1 &
mypy_pid=$!
python -m pytest -q -p no:cacheprovider --durations=25 "$@"
if ! wait "$mypy_pid"; then
    cat "$mypy_log"
    exit 1
fi
cat "$mypy_log"
# torchvision's models, where setup put a PyPI torchvision in an overlay environment (they
# skip in the run above, which has no torchvision)
if [ -x .venv-torchvision/bin/python ] && [ "$#" = 0 ]; then
    .venv-torchvision/bin/python -m pytest -q -p no:cacheprovider -m torchvision tests/backends/torch
fi
