"""``workbench sweep MODEL``: a headless trade-off sweep, written as JSON.

Variants are registry names, optionally with fields: ``int8-static:method=minmax``,
``prune-channels:sparsity=0.5,finetune_epochs=3``; ``baseline`` is the model itself.

Example:
    workbench sweep digits-mlp --variants baseline int8-dynamic fp16 \\
        --backends onnxruntime torch --json tradeoffs.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from workbench.argtypes import add_model_options, batch_int, duration_s, threads_int


def parse_variant(text: str) -> Any:
    """``"name:field=value,field=value"`` -> ``"baseline"`` or a transform config.

    Values are read as JSON when they parse (``0.5``, ``true``, ``["fc1"]``), else as text.

    Raises:
        TransformError: unknown transform or field.
    """
    from workbench.optimize.base import make_config

    name, _, rest = text.partition(":")
    if name == "baseline":
        return "baseline"
    fields: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            fields[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            fields[key.strip()] = value
    return make_config(name, **fields)


def load_data(path: str, batch_size: int = 64) -> Any:
    """A `Dataset` from an ``.npz`` file holding ``x`` and ``y`` arrays (or ``inputs``/``labels``).

    Raises:
        InputError: the file lacks the arrays.
    """
    import numpy as np

    from workbench.data import Dataset
    from workbench.errors import InputError

    try:
        arrays = np.load(path)  # allow_pickle stays off: an .npz never runs code
    except (ValueError, EOFError) as exc:  # not an .npz (a text file, a pickle)
        raise InputError(f"{path} is not an .npz file of arrays x and y ({exc})") from exc
    if not hasattr(arrays, "files"):  # a single .npy array
        raise InputError(f"{path} is not an .npz file of arrays x and y (it holds one array)")
    with arrays:
        keys = ("x", "y") if "x" in arrays else ("inputs", "labels")
        if not set(keys) <= set(arrays.files):
            raise InputError(
                f"{path} needs arrays x and y (or inputs and labels); has {arrays.files}"
            )
        x, y = arrays[keys[0]], arrays[keys[1]]
    return Dataset.from_arrays(x, y, batch_size=batch_size, name=str(path))


def _output(text: str | None) -> str | int | None:
    """``--output``: an index when it is a whole number, else an output name."""
    return int(text) if text is not None and text.lstrip("-").isdigit() else text


def _run(args: argparse.Namespace) -> int:
    from workbench.cluster import sweep
    from workbench.loaders import load
    from workbench.loaders.trust import max_bytes_of

    # errors reach `workbench.cli.main`, which prints them in one line with status 2
    variants = [parse_variant(v) for v in args.variants] if args.variants else None
    table = sweep(
        load(args.model, trust=args.trust, max_bytes=max_bytes_of(args.max_size)),
        variants=variants,
        data=load_data(args.data, args.batch_size) if args.data else None,
        backends=args.backends,
        devices=args.devices,
        batch_size=args.batch_size,
        metric=args.metric,
        output=_output(args.output),
        budget_s=args.budget_s,
        options={"threads": args.threads} if args.threads else None,
        store=args.store,
        sweep_id=args.sweep_id,
        resume=not args.no_resume,
        retry_failed=args.retry_failed,
        cluster=args.cluster,
        per_host=args.per_host,
        trust=args.trust,  # a trusted model may also travel to the workers pickled
    )
    if args.json:
        table.to_json(args.json)
    columns = ["variant", "backend", "device", "latency_ms", "size_bytes", "metric_value"]
    where = ["host"] if "host" in table.df else []  # on a cluster: the machine of each row
    from workbench.profiling.formatting import frame_text

    # "~" marks a noisy row's numbers; its verdict says why, below the table
    print(frame_text(table.df[[*columns, "delta", "pareto", *where, "noisy"]]))
    for row in table.df[table.df["noisy"].fillna(False).astype(bool)].itertuples():
        verdict = getattr(row, "verdict", None)
        said = verdict if isinstance(verdict, str) and verdict else "noisy"
        print(f"{row.variant} on {row.backend}/{row.device}: {said}")
    failed = table.failed()
    for row in failed.itertuples():
        print(f"failed: {row.variant} on {row.backend}/{row.device}: {row.error}")
    # Ctrl+C: the points stored so far were printed; the status still says it was cut short
    if any(" interrupted; " in note for note in table.notes):
        return 130
    return 1 if len(failed) == len(table.df) else 0  # not one point measured


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the ``workbench`` command line."""
    p = subparsers.add_parser(
        "sweep",
        help="quantize/prune a model, evaluate and time every variant; write a trade-off table",
    )
    p.add_argument("model", help="model file or sample name (e.g. digits-mlp)")
    p.add_argument(
        "--variants",
        nargs="+",
        help="baseline and transforms, e.g. int8-dynamic int8-static:method=minmax "
        "prune-channels:sparsity=0.5,finetune_epochs=3 (default: the standard set)",
    )
    p.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"])
    p.add_argument("--devices", nargs="+", default=["cpu"])
    p.add_argument("--batch-size", type=batch_int, default=32)
    p.add_argument("--metric", default="accuracy")
    p.add_argument(
        "--output",
        default=None,
        help="model output the metric scores, by name or index (default: the first it "
        "fits, probabilities or logits before predicted labels)",
    )
    p.add_argument(
        "--data", default=None, help=".npz with arrays x and y (default: a sample's test split)"
    )
    p.add_argument("--budget-s", type=duration_s, default=0.5, help="seconds of timing per point")
    p.add_argument("--threads", type=threads_int, default=None, help="intra-op threads per backend")
    p.add_argument("--store", default=None, help="results database (default $WORKBENCH_STORE)")
    p.add_argument("--sweep-id", default=None, help="resume or name this sweep")
    p.add_argument(
        "--fresh",
        "--no-resume",
        dest="no_resume",
        action="store_true",
        help="measure every point again (by default a sweep with the same settings resumes "
        "from the store, reusing the points it holds)",
    )
    p.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="run the points on a Dask cluster, e.g. tcp://scheduler:8786 (docs/cluster.md)",
    )
    p.add_argument(
        "--per-host",
        action="store_true",
        help="with --cluster: measure every point on every host, to compare machines",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="on resume, measure failed points again"
    )
    add_model_options(p)
    p.add_argument("--json", default=None, help="write the table as JSON to this path")
    p.set_defaults(func=_run)
