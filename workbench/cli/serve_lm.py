"""``workbench serve-lm``: a language model on a workbench runtime behind the OpenAI API.

A target for the load generator and for trying things, not a production server.

Example:
    workbench serve-lm llama-tiny --backend onnxruntime --port 8000
    workbench lm-load http://127.0.0.1:8000 --rate 4 --requests 32
"""

from __future__ import annotations

import argparse

from workbench.argtypes import count_int, nonnegative_float, port_int, positive_int, threads_int
from workbench.cli.generate import GenerationBackends


def _serve_lm(args: argparse.Namespace) -> int:
    from workbench.cli.lm_server import serve_lm

    serve_lm(
        args.model,
        args.backend,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        batch_window_ms=args.batch_window_ms,
        threads=args.threads,
        tokenizer=args.tokenizer,
        seed=args.seed,
    )
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``serve-lm`` on the ``workbench`` command."""
    p = sub.add_parser(
        "serve-lm",
        help="serve a language model behind the OpenAI streaming completions API (for testing)",
    )
    p.add_argument("model", help="a trained sample, a random config or a transformers folder")
    p.add_argument(
        "--backend",
        default="torch",
        choices=GenerationBackends(),
        metavar="NAME",
        help="a runtime that generates: torch (default), torch-compile, onnxruntime, a plugin's",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=port_int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--max-batch", type=positive_int, default=8, help="requests decoded together (default 8)"
    )
    p.add_argument(
        "--batch-window-ms",
        type=nonnegative_float,
        default=5.0,
        help="how long the oldest request waits for others to batch with (default 5)",
    )
    p.add_argument("--threads", type=threads_int, default=None, help="the runtime's threads")
    p.add_argument(
        "--tokenizer",
        default=None,
        metavar="FOLDER",
        help="a tokenizer folder or 'bytes' (default: the model folder's, else bytes)",
    )
    p.add_argument("--seed", type=count_int, default=0, help="weights seed of a random config")
    p.set_defaults(func=_serve_lm)
