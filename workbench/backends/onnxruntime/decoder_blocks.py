"""An exported decoder cut into blocks, each run by a plain ORT session, as a timed chain.

The per-layer pass of the ORT decoder (`workbench.backends.onnxruntime.decoder`) needs
times of its parts measured without ORT's node profiler, whose own cost inflates every
kernel by more than a fixed amount. Its graph, its nodes labelled with module paths
(`workbench.loaders.causal_lm.label_modules`), is cut into **blocks**: each numbered
module (a decoder layer, ``model.layers.3``) with everything under it, and each other
top-level piece on its own (the embeddings, the rotary tables, the final norm, the head,
the root's own code). Every block becomes a sub-graph with its own session at the
decoder's threads and optimisation, and the blocks run one after another on the real
inputs of a call (the prompt, or a decode step with its bound cache), each block's
outputs bound as the next blocks' inputs, so the chain computes exactly what the whole
graph does and each block call is timed alone (`BlockChain.run`).

**One thread pool for all blocks.** Each ORT session has its own intra-op thread pool,
asleep when the session is called; the whole graph's kernels share one pool that stays
awake between them. Blocks in sessions of their own paid a pool's wake each: on the
2-core VM the chain of llama-100m's 19 sub-graphs added up to 1.5-1.7x the whole graph's
call (0.5 ms a call), whatever the spinning settings. So `time_blocks` times the chain
in a process of its own that makes ORT's global thread pool, at the decoder's threads,
before any session, and runs every block's session on it (``use_per_session_threads``
off): there the chain added up to 0.98-1.01x the whole graph's call run in the same way
(`docs/generate.md`). A process that has made per-session pools cannot make the global
one, and one that has made it cannot make per-session ones, so it is never the caller's.

Blocks, not leaf modules: a call to a session costs a fixed few microseconds (and wakes
its thread pool); a Llama of 12 layers has about 20 blocks but more than 200 runs of leaf
modules, whose call costs alone added 20-70% to a decode step when each was a session
(`docs/generate.md`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import BackendError

if TYPE_CHECKING:
    import onnx


def block_of(layer: str) -> str:
    """The block a module path belongs to: the path up to its first numbered part
    (``model.layers.3.mlp.up_proj`` -> ``model.layers.3``), else the path itself."""
    parts = layer.split(".")
    for index, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: index + 1])
    return layer


@dataclass(frozen=True)
class BlockGraph:
    """One run of consecutive nodes of one block, as a graph of its own.

    Attributes:
        block: the block's name (`block_of` its nodes' layers).
        graph: the sub-graph: its nodes, the constant nodes they read (ORT folds them
            at load, as in the whole graph) and the initializers they use.
        inputs: the tensors it reads from the graph's inputs or from earlier blocks.
        outputs: the tensors later blocks read, or the graph's outputs it writes.
    """

    block: str
    graph: onnx.ModelProto
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def cut_blocks(proto: onnx.ModelProto) -> list[BlockGraph]:
    """Cut a labelled graph into sub-graphs, one per run of a block's nodes.

    The nodes are put in a topological order that keeps a block's nodes together
    wherever the data allows, then cut where the block changes; a block whose nodes
    cannot all come together (the root's code before and after the layers) gives
    several sub-graphs.

    Raises:
        BackendError: a tensor crossing a cut has no element type ONNX or ORT can tell.
    """
    import onnx

    from workbench.backends.onnxruntime.trace import dynamic_nodes
    from workbench.loaders.onnx import canonical_layer_name

    graph = proto.graph
    blocks = [block_of(canonical_layer_name(n, i)) for i, n in enumerate(graph.node)]
    live = dynamic_nodes(proto)
    producer = {t: i for i, n in enumerate(graph.node) for t in n.output if t}
    runs = _block_runs(graph, blocks, live, producer)
    run_of = {i: k for k, run in enumerate(runs) for i in run}
    wanted = {o.name for o in graph.output}
    for i in live:
        for t in graph.node[i].input:
            source = producer.get(t)
            if source in run_of and run_of[source] != run_of[i]:
                wanted.add(t)
    initializers = {t.name: t for t in graph.initializer}
    pieces = []
    for k, run in enumerate(runs):
        nodes = _constant_sources(run, graph, live, producer) + run
        made = {t for i in nodes for t in graph.node[i].output}
        inputs = _unique(
            t
            for i in nodes
            for t in graph.node[i].input
            if t and t not in made and t not in initializers
        )
        outputs = _unique(t for i in run for t in graph.node[i].output if t in wanted)
        if outputs:  # else nothing reads it: ORT would not run it in the whole graph either
            pieces.append((k, run, nodes, inputs, outputs))
    types = _element_types(proto, {t for piece in pieces for t in piece[3]})
    cut = []
    for k, run, nodes, inputs, outputs in pieces:
        used = _unique(t for i in nodes for t in graph.node[i].input if t in initializers)
        sub = onnx.helper.make_graph(
            [graph.node[i] for i in nodes],
            f"{blocks[run[0]]}#{k}",
            [onnx.helper.make_tensor_value_info(t, types[t], None) for t in inputs],
            # ORT infers the outputs' types
            [onnx.ValueInfoProto(name=t) for t in outputs],
            [initializers[t] for t in used],
        )
        model = onnx.helper.make_model(
            sub,
            opset_imports=list(proto.opset_import),
            ir_version=proto.ir_version,
            functions=list(proto.functions),
        )
        cut.append(BlockGraph(blocks[run[0]], model, tuple(inputs), tuple(outputs)))
    return cut


def _block_runs(
    graph: onnx.GraphProto, blocks: list[str], live: set[int], producer: dict[str, int]
) -> list[list[int]]:
    """The graph's input-dependent nodes in runs of one block each, in an order that
    respects the data: among the ready nodes, one of the current block's first, else
    the earliest in the file."""
    needs = {i: {producer[t] for t in graph.node[i].input if producer.get(t) in live} for i in live}
    readers: dict[int, list[int]] = defaultdict(list)
    for i, sources in needs.items():
        for source in sources:
            readers[source].append(i)
    waiting = {i: len(sources) for i, sources in needs.items()}
    ready = {i for i, count in waiting.items() if count == 0}
    runs: list[list[int]] = []
    current = None
    while ready:
        same = [i for i in ready if blocks[i] == current]
        node = min(same) if same else min(ready)
        ready.discard(node)
        if blocks[node] != current or not runs:
            runs.append([])
            current = blocks[node]
        runs[-1].append(node)
        for reader in readers[node]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.add(reader)
    return runs


def _constant_sources(
    run: list[int], graph: onnx.GraphProto, live: set[int], producer: dict[str, int]
) -> list[int]:
    """The constant nodes (no graph input upstream) whose outputs ``run`` reads, in
    file order: each block folds them at load, as the whole graph does."""
    found: set[int] = set()
    stack = [t for i in run for t in graph.node[i].input]
    while stack:
        source = producer.get(stack.pop())
        if source is None or source in live or source in found:
            continue
        found.add(source)
        stack.extend(graph.node[source].input)
    return sorted(found)


#: ORT's type names (``NodeArg.type``) -> ONNX element types
_ORT_TYPES = {
    "tensor(float)": 1,
    "tensor(uint8)": 2,
    "tensor(int8)": 3,
    "tensor(int32)": 6,
    "tensor(int64)": 7,
    "tensor(bool)": 9,
    "tensor(float16)": 10,
    "tensor(double)": 11,
    "tensor(bfloat16)": 16,
}


def _element_types(proto: onnx.ModelProto, names: set[str]) -> dict[str, int]:
    """The element type of each tensor in ``names``: from ONNX shape inference, else
    (e.g. behind a contrib op it does not know, ``MatMulNBits``) from ORT, which types
    every tensor of a graph it loads.

    Raises:
        BackendError: neither knows one of them.
    """
    import onnx

    graph = proto.graph
    # types need no weights: inference on the graph with its initializers as typed inputs
    # (a 400 MB decoder serialised for the inference took most of the cut's seconds)
    light = onnx.helper.make_model(
        onnx.helper.make_graph(
            graph.node,
            graph.name,
            [
                *graph.input,
                *(
                    onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims)
                    for t in graph.initializer
                ),
            ],
            graph.output,
            value_info=graph.value_info,
        ),
        opset_imports=list(proto.opset_import),
        ir_version=proto.ir_version,
        functions=list(proto.functions),
    )
    inferred = onnx.shape_inference.infer_shapes(light).graph
    values = [*inferred.input, *inferred.output, *inferred.value_info]
    types = {v.name: v.type.tensor_type.elem_type for v in values if v.type.tensor_type.elem_type}
    missing = sorted(names - set(types))
    if missing:
        from workbench.backends.onnxruntime.plain import plain_session

        probe = type(proto)()
        probe.CopyFrom(proto)
        probe.graph.output.extend(onnx.ValueInfoProto(name=t) for t in missing)
        outputs = plain_session(probe, optimization="disabled").get_outputs()
        types.update({o.name: _ORT_TYPES[o.type] for o in outputs if o.type in _ORT_TYPES})
    unknown = sorted(names - set(types))
    if unknown:
        raise BackendError(
            f"cannot cut the decoder into blocks: no element type known for {unknown[0]!r}; "
            "per-layer tables need a graph ONNX or ORT can type"
        )
    return types


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


class BlockChain:
    """The blocks of a labelled decoder graph, each a plain ORT session, run in order.

    Every session has the decoder's optimisation level and threads: on the process's
    global pool with ``shared_pool`` (`time_blocks`' process), else a pool of its own
    whose idle threads sleep (so sessions run one after another never spin against each
    other; the times then carry a pool's wake per block: for checking the cut).

    Args:
        proto: the decoder graph, its nodes labelled with module paths.
        threads: intra-op threads of every block's session (the global pool's, shared).
        shared_pool: run every session on the global thread pool, which this process
            made before its first session.

    Example:
        >>> values, block_ms = BlockChain(proto, threads=2).run(feeds)
    """

    def __init__(self, proto: onnx.ModelProto, threads: int, shared_pool: bool = False) -> None:
        from workbench.backends.onnxruntime.plain import plain_session

        self.graphs = cut_blocks(proto)
        # a pool of its own sleeps when idle; the shared one spins, as ORT's default
        self.sessions = [
            plain_session(g.graph, threads=threads, shared_pool=shared_pool, spinning=shared_pool)
            for g in self.graphs
        ]

    @property
    def blocks(self) -> list[str]:
        """The blocks, in the order of their first sub-graph."""
        return _unique(g.block for g in self.graphs)

    def run(self, feeds: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
        """Run every block on ``feeds`` (the whole graph's inputs: numpy arrays or ORT
        values); each block's call is timed alone, its binding made before the clock.

        Returns:
            (every tensor the blocks wrote, as ORT values: the graph's outputs among
            them; each block's time in ms, its sub-graphs' calls added).
        """
        import onnxruntime as ort

        values = {
            name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v))
            if isinstance(v, np.ndarray)
            else v
            for name, v in feeds.items()
        }
        times: dict[str, float] = defaultdict(float)
        clock = time.perf_counter
        for graph, session in zip(self.graphs, self.sessions, strict=True):
            binding = session.io_binding()
            for name in graph.inputs:
                binding.bind_ortvalue_input(name, values[name])
            for name in graph.outputs:
                binding.bind_output(name, "cpu")
            began = clock()
            session.run_with_iobinding(binding)
            times[graph.block] += (clock() - began) * 1000.0
            values.update(zip(graph.outputs, binding.get_outputs(), strict=True))
        return values, dict(times)

    def median_run(self, feeds: Mapping[str, Any], repeats: int) -> dict[str, float]:
        """Each block's median time (ms) over ``repeats`` runs of the chain on ``feeds``."""
        runs = [self.run(feeds)[1] for _ in range(repeats)]
        return {block: float(np.median([r[block] for r in runs])) for block in runs[0]}


def time_blocks(
    labelled: Path, threads: int, calls: Sequence[Mapping[str, Any]], repeats: int
) -> tuple[list[str], int, list[dict[str, float]]]:
    """Each block's median time (ms) over ``repeats`` chains on each of ``calls``, the
    chain timed in a new Python process whose block sessions share ORT's global thread
    pool (the module's docstring says why).

    Args:
        labelled: the decoder graph's file, its nodes labelled with module paths.
        threads: intra-op threads of the pool (the decoder's).
        calls: each a call's feeds: the graph's inputs as numpy arrays or ORT values
            (copied to the process through a file beside ``labelled``).
        repeats: chains per call.

    Returns:
        (the blocks in order, the sub-graphs, per call each block's median ms).

    Raises:
        BackendError: the process failed (its last line said why).
    """
    with tempfile.TemporaryDirectory(prefix="wb-blocks-", dir=labelled.parent) as folder:
        where = Path(folder)
        names: list[list[str]] = []
        arrays: dict[str, np.ndarray] = {}
        for k, feeds in enumerate(calls):
            names.append(list(feeds))
            for i, value in enumerate(feeds.values()):
                arrays[f"c{k}_{i}"] = value if isinstance(value, np.ndarray) else value.numpy()
        np.savez(where / "feeds.npz", **arrays)  # type: ignore[arg-type]
        (where / "job.json").write_text(
            json.dumps(
                {"graph": str(labelled), "threads": threads, "repeats": repeats, "names": names}
            ),
            encoding="utf-8",
        )
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BackendError(f"timing the decoder's blocks failed: {last}")
        result = json.loads((where / "times.json").read_text(encoding="utf-8"))
    return result["blocks"], result["subgraphs"], result["times"]


def _time_blocks_here(folder: Path) -> None:
    """`time_blocks`' process: the global pool first, then the chain on every call."""
    import onnx
    import onnxruntime.capi._pybind_state as ort_state

    job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    # before any session: ORT makes the global pool with the process's environment
    ort_state.set_global_thread_pool_sizes(job["threads"], 1)
    chain = BlockChain(onnx.load(job["graph"]), job["threads"], shared_pool=True)
    with np.load(folder / "feeds.npz") as stored:
        calls = [
            {name: stored[f"c{k}_{i}"] for i, name in enumerate(names)}
            for k, names in enumerate(job["names"])
        ]
    times = [chain.median_run(feeds, job["repeats"]) for feeds in calls]
    (folder / "times.json").write_text(
        json.dumps({"blocks": chain.blocks, "subgraphs": len(chain.graphs), "times": times}),
        encoding="utf-8",
    )


if __name__ == "__main__":
    _time_blocks_here(Path(sys.argv[1]))
