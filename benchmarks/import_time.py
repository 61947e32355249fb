"""How long ``import workbench`` takes in a fresh interpreter (target: under 0.5 s).

Moved here from tests/test_package.py: a wall-clock limit in a unit test fails on a
loaded machine for reasons that are not bugs. The unit test keeps the part that cannot
be noisy: importing workbench loads none of the heavy libraries (torch, onnxruntime,
numba, panel, plotly), which is what makes the import fast.

    python benchmarks/import_time.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from _common import write_results

TARGET_S = 0.5
_CODE = "import time; s = time.perf_counter(); import workbench; print(time.perf_counter() - s)"


def import_seconds() -> float:
    """One ``import workbench`` in a new interpreter, in seconds."""
    done = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    times = [import_seconds() for _ in range(args.runs)]
    median = statistics.median(times)
    verdict = "meets" if median < TARGET_S else "MISSES"
    table = (
        "| runs | median s | min s | max s | target |\n|---|---|---|---|---|\n"
        f"| {len(times)} | {median:.3f} | {min(times):.3f} | {max(times):.3f} | "
        f"< {TARGET_S} s ({verdict}) |"
    )
    print(table)
    write_results(
        "import_time", {"seconds": times, "median_s": median, "target_s": TARGET_S}, table
    )


if __name__ == "__main__":
    main()
