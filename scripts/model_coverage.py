"""Which foreign model runs on which runtime: the table in docs/backends.md.

    python scripts/model_coverage.py           # rewrite the table in docs/backends.md
    python scripts/model_coverage.py --all     # every torchvision classifier, not one a family
    python scripts/model_coverage.py --print   # print the table only

Models: the light models of the ONNX model zoo shipped in the ``onnx`` wheel (random
weights; biases still made by their ``ConstantOfShape`` nodes) and torchvision's
classification models (random weights, batch-norm statistics measured on random images,
exported to ONNX by workbench). Each runs at batch 1 on every runtime of
`workbench.testing.foreign.RUNTIMES` (torch through the ONNX converter), and its outputs
are checked against ONNX Runtime's within the ``model`` tolerances of
workbench/tolerances.py. A cell says why not where a runtime refuses or fails.

torchvision is imported through `workbench.loaders.thirdparty`, so PyPI's CUDA build
works beside a CPU torch. Takes about half an hour on 2 busy cores (exports dominate).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "backends.md"
START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"

#: one torchvision classifier per family: the smallest
FAMILIES = (
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "resnet18",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "squeezenet1_0",
    "swin_t",
    "swin_v2_t",
    "vgg11",
    "vit_b_16",
    "wide_resnet50_2",
)


def _cell(ok: bool, detail: str, backend: str = "") -> str:
    if ok:
        return "reference" if backend == "onnxruntime" else f"yes ({detail})"
    return "no: " + re.sub(r"\s+", " ", detail).replace("|", "\\|")[:160]


def _row(model: str, source: str, nodes: int | str, coverage: list) -> str:
    cells = [_cell(c.ok, c.detail, c.backend) for c in coverage]
    return f"| {model} | {source} | {nodes} | " + " | ".join(cells) + " |"


def _light_rows(folder: Path) -> list[str]:
    import workbench as wb
    from workbench.testing.foreign import LIGHT_MODELS, light_model, runtime_coverage

    rows = []
    for name in LIGHT_MODELS:
        started = time.perf_counter()
        model = wb.load(light_model(name, folder / f"{name}.onnx", biases_as_shipped=True))
        assert model.proto is not None
        coverage = runtime_coverage(model)
        rows.append(_row(name, "onnx zoo (light)", len(model.proto.graph.node), coverage))
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows


def _torchvision_rows(names: list[str]) -> list[str]:
    from workbench.errors import WorkbenchError
    from workbench.testing.foreign import RUNTIMES, runtime_coverage, torchvision_classifier

    rows = []
    for name in names:
        started = time.perf_counter()
        try:
            model = torchvision_classifier(name)
            graph = model.to_onnx()
        except WorkbenchError as exc:  # an export that fails is a row, not a failed table
            reason = _cell(False, f"export failed: {exc}")
            rows.append(
                f"| {name} | torchvision | — | " + " | ".join([reason] * len(RUNTIMES)) + " |"
            )
            continue
        assert graph.proto is not None
        coverage = runtime_coverage(graph)
        rows.append(_row(name, "torchvision", len(graph.proto.graph.node), coverage))
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def table(all_torchvision: bool) -> str:
    """The coverage table and the versions it was made with, as markdown."""
    from workbench.errors import WorkbenchError
    from workbench.loaders.thirdparty import torchvision
    from workbench.testing.foreign import RUNTIMES

    header = ["model", "source", "ONNX nodes", *RUNTIMES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    with tempfile.TemporaryDirectory() as folder:
        lines += _light_rows(Path(folder))
    try:
        models = torchvision().models
        names = sorted(models.list_models(module=models)) if all_torchvision else list(FAMILIES)
        lines += _torchvision_rows(names)
        note = ""
    except WorkbenchError as exc:
        note = f"\ntorchvision's models are missing: {exc}\n"
    versions = ", ".join(
        f"{p} {_version(p)}" for p in ("onnx", "onnxruntime", "torch", "torchvision", "numba")
    )
    return (
        "\n".join(lines)
        + "\n"
        + note
        + f"\nMade by `python scripts/model_coverage.py` on {time.strftime('%Y-%m-%d')} "
        + f"with {versions}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every torchvision classifier")
    parser.add_argument("--print", action="store_true", help="print only; leave the docs")
    args = parser.parse_args()
    text = table(args.all)
    if args.print:
        print(text)
        return
    doc = DOC.read_text()
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    if not rest:
        sys.exit(f"{DOC} has no {START} ... {END} section")
    DOC.write_text(f"{head}{START}\n{text}{END}{tail}")
    print(f"wrote the table into {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
