"""Fuzz the loaders and `Session.run` for longer than the test command does.

Coverage-guided with atheris when it is installed (``pip install atheris``), else the
property-based tests of ``tests/test_fuzz.py`` with ``--scale`` times their examples.
Either way it prints how many cases ran; a crash stops it with the input that caused it
(make that input a regression case in tests/test_fuzz.py).

Usage:
    python benchmarks/fuzz_long.py --scale 20          # hypothesis, 20x the test command
    python benchmarks/fuzz_long.py --seconds 600       # atheris, when installed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_hypothesis(scale: int) -> int:
    """Run tests/test_fuzz.py with ``scale`` times the examples; print the case counts."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "cases.json"
        env = {
            **os.environ,
            "WORKBENCH_FUZZ_SCALE": str(scale),
            "WORKBENCH_FUZZ_REPORT": str(report),
        }
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_fuzz.py",
        ]
        code = subprocess.call(command, cwd=ROOT, env=env)
        cases = json.loads(report.read_text()) if report.exists() else {}
    print(f"hypothesis x{scale}: {sum(cases.values())} cases {cases}; exit status {code}")
    return code


def run_atheris(seconds: int) -> int:
    """Coverage-guided fuzzing of the ONNX and .pt2 loaders from the sample files."""
    import atheris

    # instrument the code under test (imported here first), not the libraries below it
    with atheris.instrument_imports(include=["workbench"]):
        import workbench.loaders.onnx
        import workbench.loaders.pt2
        import workbench.loaders.torch
        import workbench.loaders.trust  # noqa: F401
        from workbench.testing import fuzz

    folder = Path(tempfile.mkdtemp(prefix="workbench-fuzz-"))
    corpus = folder / "corpus"
    corpus.mkdir()
    (corpus / "sample.onnx").write_bytes(b"o" + fuzz.sample_onnx())
    (corpus / "sample.pt2").write_bytes(b"p" + fuzz.sample_pt2())

    def one_input(data: bytes) -> None:
        if data:  # the first byte picks the loader, the rest is the file
            fuzz.load_bytes(data[1:], ".onnx" if data[0] % 2 else ".pt2", folder)

    # libFuzzer prints the cases it ran ("Done N runs in S second(s)") and exits itself
    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={seconds}"], one_input)
    atheris.Fuzz()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20, help="hypothesis: examples x this")
    parser.add_argument("--seconds", type=int, default=600, help="atheris: time to fuzz")
    parser.add_argument("--hypothesis", action="store_true", help="even if atheris is installed")
    args = parser.parse_args()
    try:
        import atheris  # noqa: F401
    except ImportError:
        return run_hypothesis(args.scale)
    return run_hypothesis(args.scale) if args.hypothesis else run_atheris(args.seconds)


if __name__ == "__main__":
    sys.exit(main())
