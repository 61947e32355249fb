"""``workbench profile``: one model on one backend and device, end to end and per layer."""

from __future__ import annotations

import argparse
from typing import Any

from workbench.argtypes import (
    add_model_options,
    batch_int,
    check_input_bytes,
    duration_s,
    input_shape,
    positive_int,
    threads_int,
)
from workbench.errors import InputError


def _profile(args: argparse.Namespace) -> int:
    from workbench.loaders import load
    from workbench.loaders.trust import max_bytes_of
    from workbench.profiling.run import profile

    options = {"threads": args.threads} if args.threads else None
    model = load(args.model, trust=args.trust, max_bytes=max_bytes_of(args.max_size))
    result = profile(
        model,
        inputs=inputs_for(model, args.batch_size, args.shape),
        backend=args.backend,
        device=args.device,
        batch_size=args.batch_size,
        layers=not args.no_layers,
        budget_s=args.budget,
        options=options,
        layer_view=args.layer_view,
        layer_method=args.layer_method,
    )
    print(result.summary(top=args.top))
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def inputs_for(
    model: Any, batch_size: int, shapes: list[tuple[str, tuple[int, ...]]]
) -> dict[str, Any] | None:
    """Inputs with the ``--shape`` values given, or None when generated ones will do.

    Raises:
        InputError: an unknown input name, a shape of the wrong rank, or an input with
            symbolic dimensions beyond the batch and no ``--shape`` (names what to give).
    """
    from dataclasses import replace
    from types import SimpleNamespace

    import numpy as np

    given = dict(shapes)
    specs = {spec.name: spec for spec in model.inputs}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise InputError(f"--shape names unknown input(s) {unknown}; inputs are {list(specs)}")
    missing = [
        f"{spec.name} {list(spec.shape)}"
        for spec in model.unsized_inputs()
        if spec.name not in given
    ]
    if missing:
        raise InputError(
            f"{model.name} has symbolic dimensions beyond the batch in {', '.join(missing)}; "
            "give each such input with --shape NAME=DIMxDIMx…"
        )
    if not given:
        return None
    for name, shape in given.items():
        if len(shape) != len(specs[name].shape):
            raise InputError(
                f"--shape {name} has {len(shape)} dimensions; {name} has "
                f"{len(specs[name].shape)} {list(specs[name].shape)}"
            )
    # every input counts, with the shape it will have, before anything is allocated
    sized = [replace(spec, shape=given.get(spec.name, spec.shape)) for spec in model.inputs]
    check_input_bytes(SimpleNamespace(name=model.name, inputs=sized), batch_size)
    arrays = {n: a for n, a in model.example_inputs(batch_size).items() if n not in given}
    rng = np.random.default_rng(0)
    for name, shape in given.items():
        arrays[name] = rng.random(shape).astype(specs[name].dtype)
    return {spec.name: arrays[spec.name] for spec in model.inputs}


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``profile`` to the ``workbench`` command line."""
    p = sub.add_parser("profile", help="profile a model file or sample on one backend/device")
    p.add_argument("model", help="a model file (.onnx, .pt2, TorchScript) or a sample name")
    p.add_argument("--backend", default="onnxruntime", help="backend name (default onnxruntime)")
    p.add_argument("--device", default="cpu", help="device, e.g. cpu or cuda:0 (default cpu)")
    p.add_argument("--batch-size", type=batch_int, default=1, help="batch size (default 1)")
    p.add_argument("--threads", type=threads_int, default=None, help="intra-op threads")
    p.add_argument("--budget", type=duration_s, default=2.0, help="timing budget in seconds")
    p.add_argument("--top", type=positive_int, default=10, help="layers to print (default 10)")
    p.add_argument(
        "--shape",
        type=input_shape,
        action="append",
        default=[],
        metavar="NAME=DIMxDIM…",
        help="an input's full shape (repeatable); needed for dimensions beyond the batch "
        "that the model leaves symbolic",
    )
    add_model_options(p)
    p.add_argument("--no-layers", action="store_true", help="end-to-end timing only")
    p.add_argument(
        "--layer-view",
        default="leaves",
        choices=["leaves", "containers"],
        help="torch models: leaf modules (default) or every module, inclusive",
    )
    p.add_argument(
        "--layer-method",
        default=None,
        help="per-layer timing method, e.g. torch.profiler (default: the backend's own)",
    )
    p.add_argument("--json", default=None, help="write the Profile as JSON to this path")
    p.set_defaults(func=_profile)
