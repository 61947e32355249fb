"""``workbench generate``: a causal LM's greedy generation, timed token by token.

Example:
    workbench generate llama-tiny --backend onnxruntime --prompt-length 32 --output-length 16
    workbench generate llama-stdlib --backend onnxruntime --layers
    workbench generate llama-stdlib --prompt "def main(args):" --output-length 24
    workbench generate ./my-llama-folder --json gen.json
    workbench generate ./my-llama-onnx --reference ./my-llama-folder   # optimum's export
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from workbench.argtypes import batch_int, count_int, positive_int, threads_int


def _generate(args: argparse.Namespace) -> int:
    from workbench.loaders.language import language_model
    from workbench.profiling.generate import generate_profile

    model = language_model(args.model, seed=args.seed, trust=args.trust, reference=args.reference)
    # an ONNX folder (onnxruntime-genai's, optimum's) runs on its own runtimes only
    backend = args.backend or next(iter(getattr(model, "runtimes", ())), "torch")
    result = generate_profile(
        model,
        backend=backend,
        prompt=args.prompt,
        tokenizer=args.tokenizer,
        prompt_length=args.prompt_length,
        output_length=args.output_length,
        batch_size=args.batch_size,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        check_tokens=not args.no_check,
        seed=args.seed,
        roofline=args.roofline,
        depth=args.depth,
        layers=args.layers,
    )
    print(result.summary())
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    if args.save:
        from workbench.store import Store

        store = Store(args.store)
        print(f"\nsaved as run {store.save_generation(result)} in {store.path}")
    return 0


class GenerationBackends:
    """``--backend``'s choices: every registered backend that can generate, plugins
    included (`generation_backends`), looked up only when the option is checked or
    listed, so building the parser loads no backend."""

    def __init__(self) -> None:
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        if self._names is None:
            from workbench.backends.base import generation_backends

            self._names = generation_backends()
        return self._names

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``generate`` on the ``workbench`` command."""
    from workbench.loaders.language import RANDOM_LLAMAS, TRAINED_LLAMAS

    p = sub.add_parser("generate", help="time a language model's generation token by token")
    p.add_argument(
        "model",
        help="a local transformers folder (config.json + *.safetensors), an ONNX decoder "
        "folder (optimum's export: config.json + model.onnx; onnxruntime-genai's: "
        f"genai_config.json), a trained sample ({', '.join(TRAINED_LLAMAS)}) or a "
        f"random-weight config for speed only: {', '.join(sorted(RANDOM_LLAMAS))}",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=GenerationBackends(),
        metavar="NAME",
        help="a runtime that generates: torch (the default), torch-compile, onnxruntime, "
        "numba, genai, or a plugin's (`workbench devices` marks them in its generates "
        "column); an ONNX folder's default is its first runtime (onnxruntime, genai)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="load an ONNX decoder folder that holds files other than data, or reads "
        "external data outside itself (only if you trust its author)",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="FOLDER",
        help="the transformers folder an ONNX decoder folder was exported from: its greedy "
        "tokens are checked against it (default: the folder's own safetensors, if any)",
    )
    p.add_argument(
        "--prompt",
        action="append",
        default=None,
        metavar="TEXT",
        help="a text prompt (repeat for a batch; all must encode to one length), encoded by "
        "the model folder's tokenizer or --tokenizer; replaces the random --prompt-length ids",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        metavar="FOLDER",
        help="a local tokenizer folder (tokenizer.json, ...) or 'bytes' (token id = byte "
        "value); default: the model folder's own",
    )
    p.add_argument("--prompt-length", type=positive_int, default=32, help="random prompt tokens")
    p.add_argument("--output-length", type=positive_int, default=16, help="tokens to generate")
    p.add_argument(
        "--depth", type=count_int, default=0, help="tokens cached before the prompt (default 0)"
    )
    p.add_argument("--batch-size", type=batch_int, default=1, help="sequences (default 1)")
    p.add_argument("--runs", type=positive_int, default=3, help="timed generations (default 3)")
    p.add_argument("--warmup", type=count_int, default=1, help="untimed generations first")
    p.add_argument(
        "--threads",
        type=threads_int,
        default=None,
        help="the runtime's intra-op threads (default: its own)",
    )
    p.add_argument("--seed", type=count_int, default=0, help="random prompt and weights seed")
    p.add_argument(
        "--no-check", action="store_true", help="do not check the tokens against torch's"
    )
    p.add_argument(
        "--layers",
        action="store_true",
        help="per-layer tables of the prefill and of a decode step (module paths; torch, "
        "torch-compile eager-equivalent, onnxruntime, numba)",
    )
    p.add_argument(
        "--roofline",
        action="store_true",
        help="decode's memory traffic as a fraction of this machine's measured bandwidth",
    )
    p.add_argument("--json", default=None, help="write the generation profile as JSON here")
    p.add_argument(
        "--save",
        action="store_true",
        help="also save it in the results store (the dashboard's Runs page lists it)",
    )
    p.add_argument("--store", default=None, help="results database (default $WORKBENCH_STORE)")
    p.set_defaults(func=_generate)
