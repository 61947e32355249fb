"""Our accelerator path: an ONNX-graph executor with kernels written in Numba.

Two backends share one executor (`executor`) and graph compiler (`graph`):
``numba`` runs ``@njit`` kernels on the CPU (`cpu`, `cpu_ops`), ``numba-cuda`` runs
``@cuda.jit`` kernels on NVIDIA GPUs (`cuda`, `cuda_ops`), or in Numba's CUDA
simulator when ``NUMBA_ENABLE_CUDASIM=1`` (slow; for tests). Numba itself is imported
only when a model is compiled or availability is asked for.

Example:
    >>> import workbench as wb
    >>> m = wb.samples.load("digits-cnn")
    >>> session = wb.backend("numba").compile(m, "cpu")
    >>> (logits,) = session.run(m.example_inputs(batch_size=8))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from workbench.backends.base import (
    Availability,
    BackendOptionError,
    Support,
    check_device,
    once,
    parse_options,
    register,
)
from workbench.backends.numba.registry import register_kernel, unregister_kernel
from workbench.loaders.tree_graph import TREE_OPS
from workbench.model import Model

__all__ = [
    "NumbaBackend",
    "NumbaCudaBackend",
    "NumbaCudaOptions",
    "NumbaOptions",
    "register_kernel",
    "unregister_kernel",
]

#: Op types each device runs (kept here so `supports` needs no Numba import).
CPU_OPS = frozenset(
    [
        "Conv",
        "Gemm",
        "MatMul",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Softmax",
        "LayerNormalization",
        "BatchNormalization",
        "Resize",
        "Pad",
        "LRN",
        "Gelu",
        "Sum",
        "Max",
        "Min",
        "Clip",
        "Where",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Dropout",
        "Transpose",
        "Concat",
        "Gather",
        "Slice",
        "Cast",
        "CastLike",
        "Shape",
        "ConstantOfShape",
        "Expand",
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ArgMax",
        "ArgMin",
        "Split",
        "Tile",
        "Range",
        "Relu",
        "Sigmoid",
        "Tanh",
        "Erf",
        "Sqrt",
        "Exp",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Neg",
        "Abs",
        "Reciprocal",
        "Log",
        "Floor",
        "Ceil",
        "LeakyRelu",
        "HardSigmoid",
        "HardSwish",
        "Equal",
        "Less",
        "Greater",
        "LessOrEqual",
        "GreaterOrEqual",
        "And",
        "Or",
        "Xor",
        "Not",
        # index arithmetic (index_ops) and QDQ INT8 (quant_ops)
        "GatherND",
        "GatherElements",
        "ScatterND",
        "ScatterElements",
        "CumSum",
        "IsNaN",
        "IsInf",
        "ReduceL1",
        "ReduceL2",
        "ReduceSumSquare",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
    ]
    # ai.onnx.ml tree ensembles (tree_ops, tree_cuda): the graph checks support by the
    # domain-qualified name, the executor looks kernels up by the bare op type
    + [f"{domain}{op}" for op in TREE_OPS for domain in ("", "ai.onnx.ml.")]
    + ["LabelEncoder", "ai.onnx.ml.LabelEncoder"]
)
#: LabelEncoder (numeric keys, `label_encoder`) has no CUDA kernel.
CUDA_OPS = CPU_OPS - {"LabelEncoder", "ai.onnx.ml.LabelEncoder"}


def _supports(model: Model, ops: frozenset[str]) -> Support:
    from workbench.backends.numba.graph import unsupported_ops

    try:
        proto = model.to_onnx().proto
    except Exception as exc:  # an export failure is a reason, not a crash
        return Support(False, (f"cannot export to ONNX: {exc}",))
    bad = unsupported_ops(proto, dict.fromkeys(ops))
    if bad:
        return Support(False, (f"unsupported op(s): {', '.join(bad)}",))
    return Support(True)


def _start_numba() -> None:
    try:
        from workbench.backends.numba.startup import start
    except ImportError:  # not installed: `compile` says so in its own words
        return
    start()


_start = once(_start_numba)


@dataclass(frozen=True)
class NumbaOptions:
    """Options of the ``numba`` backend's ``compile``.

    Attributes:
        gemm: ``"blas"`` (default; NumPy's BLAS called from Numba, and, on AVX-512
            CPUs, MatMul/Gemm with a constant float32 weight and 2-128 rows on our
            kernel with the weight packed once, see
            `workbench.backends.numba.packed_gemm`) or ``"tiled"`` (our cache-blocked
            kernel).
        layout: ``"nhwc"`` (default; convolutions run channels-last, see
            `workbench.backends.numba.layout`) or ``"nchw"`` (the ONNX layout throughout).
        threads: threads the parallel loops run on and a big BLAS product is split
            over, one single-threaded BLAS call each (default: Numba's thread count
            capped by the CPUs free here, see `workbench.backends.cpus.default_threads`).
            1 keeps every kernel on one core.
        conv_strategy: ``"measure"`` (default; each channels-last convolution runs the
            fastest of its candidate kernels, timed on this machine at the first compile
            and cached on disk, see `workbench.backends.numba.strategy`) or ``"rules"``
            (fixed rules: plans that do not depend on timings).
    """

    gemm: Literal["blas", "tiled"] = "blas"
    layout: Literal["nhwc", "nchw"] = "nhwc"
    threads: int | None = None
    conv_strategy: Literal["measure", "rules"] = "measure"


@dataclass(frozen=True)
class NumbaCudaOptions:
    """Options of the ``numba-cuda`` backend's ``compile``: none yet."""


@register("numba")
class NumbaBackend:
    """ONNX graphs on the CPU with ``@njit(parallel=True)`` kernels.

    Compile options are the fields of `NumbaOptions` (``gemm``, ``layout``).
    """

    name = "numba"

    def availability(self) -> Availability:
        """Numba's version, the CPU threads it uses and its threading layer."""
        try:
            import numba
        except ImportError as exc:
            return Availability(False, reason=f"numba is not installed ({exc}); pip install numba")
        from workbench.backends.numba.pool import load_tbb

        load_tbb()  # before get_num_threads starts Numba's threads
        threads = numba.get_num_threads()
        details = {"cpu": f"{threads} threads ({numba.threading_layer()} layer)"}
        return Availability(True, version=numba.__version__, details=details)

    def devices(self) -> list[str]:
        """``["cpu"]`` when Numba imports."""
        return ["cpu"] if self.availability().ok else []

    def supports(self, model: Model) -> Support:
        """Whether every op of ``model`` (exported to ONNX if needed) has a CPU kernel."""
        return _supports(model, CPU_OPS)

    def start(self) -> float:
        """Numba's one-off start in this process (import, CPU target, BLAS; see
        `startup`), done here once rather than inside the first model's plan; the
        seconds it took, 0.0 after. `compile` calls it first."""
        return _start()

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> Any:
        """Compile ``model`` for the CPU; never changes ``model``.

        Raises:
            BackendOptionError: an unknown option or a badly typed value.
            DeviceUnavailableError: ``device`` is not ``"cpu"``.
            UnsupportedModelError: naming the ops without a kernel.
        """
        config = parse_options(NumbaOptions, self.name, options)
        self.start()
        check_device(self, device)
        from workbench.backends.numba.cpu_ops import make_kernels
        from workbench.backends.numba.executor import CpuDevice
        from workbench.backends.numba.session import NumbaSession

        threads = self._threads(config.threads)
        kernels = make_kernels(config.gemm, threads, config.conv_strategy)
        channels_last = config.layout == "nhwc"
        return NumbaSession(
            model, self.name, device, kernels, CpuDevice(), "cpu", channels_last, threads
        )

    def decoder(self, model: Any, device: str = "cpu", *, threads: int | None = None) -> Any:
        """A greedy `Decoder` of ``model`` (a ``transformers`` causal LM): its exported
        ONNX decoder run by the Numba executor, the KV cache preallocated to the model's
        context and written in place (`decoder.NumbaDecoder`; CPU). Never changes ``model``.

        Args:
            model: the causal LM object.
            device: ``"cpu"`` (the only one).
            threads: threads the kernels run on (default as `NumbaOptions.threads`).

        Raises:
            DeviceUnavailableError: ``device`` is not the CPU.
            UnsupportedModelError: not a causal LM, or ops the executor cannot run.
            BackendOptionError: ``threads`` below 1.
        """
        from workbench.backends.base import generation_device

        generation_device(self, device)
        check_device(self, device)
        from workbench.backends.numba.decoder import numba_decoder

        return numba_decoder(model, self._threads(threads))

    def _threads(self, threads: int | None) -> int:
        """``threads``, or Numba's count capped by the free CPUs; refused below 1."""
        import numba

        if threads is None:
            from workbench.backends.cpus import default_threads

            threads = default_threads(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        if threads < 1:
            raise BackendOptionError(f"numba: threads must be at least 1, got {threads}")
        return threads

    def register_kernel(
        self, op_type: str | None = None, fn: Any = None, *, node: str | None = None
    ) -> Any:
        """Register a custom CPU kernel for ``op_type`` (see `registry.register_kernel`)."""
        if node is not None:
            return register_kernel(fn, node=node, device="cpu")
        return register_kernel(fn, op_type=op_type, device="cpu")


@register("numba-cuda")
class NumbaCudaBackend:
    """ONNX graphs on NVIDIA GPUs with ``@cuda.jit`` kernels (or the CUDA simulator)."""

    name = "numba-cuda"

    def availability(self) -> Availability:
        """GPUs Numba-CUDA sees; the simulator when ``NUMBA_ENABLE_CUDASIM=1``."""
        try:
            import numba
            from numba import cuda
        except ImportError as exc:
            return Availability(False, reason=f"numba-cuda is not installed ({exc})")
        simulator = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
        try:
            ok = bool(cuda.is_available())
            gpus = list(cuda.gpus) if ok else []
        except Exception as exc:  # a broken driver must not break `workbench devices`
            return Availability(
                False, reason=f"CUDA driver error: {exc}", version=numba.__version__
            )
        if not ok or not gpus:
            return Availability(
                False,
                reason="no CUDA GPU found (set NUMBA_ENABLE_CUDASIM=1 for the slow simulator)",
                version=numba.__version__,
            )
        details = {}
        for i, gpu in enumerate(gpus):
            name = "Numba CUDA simulator (not a GPU)" if simulator else _gpu_name(gpu)
            details[f"cuda:{i}"] = name
        return Availability(True, version=numba.__version__, details=details)

    def devices(self) -> list[str]:
        """``["cuda:0", ...]`` for each GPU (one simulated device under the simulator)."""
        return list(self.availability().details)

    def supports(self, model: Model) -> Support:
        """Whether every op of ``model`` (exported to ONNX if needed) has a CUDA kernel."""
        return _supports(model, CUDA_OPS)

    def compile(self, model: Model, device: str = "cuda:0", **options: Any) -> Any:
        """Compile ``model`` for ``device``; weights go to the device once, here.

        Raises:
            BackendOptionError: any option (numba-cuda takes none).
            DeviceUnavailableError: no such CUDA device.
            UnsupportedModelError: naming the ops without a kernel.
        """
        parse_options(NumbaCudaOptions, self.name, options)
        check_device(self, device)
        from workbench.backends.numba.cuda_ops import CudaDevice, make_kernels
        from workbench.backends.numba.session import NumbaSession

        index = int(device.split(":")[1])
        return NumbaSession(model, self.name, device, make_kernels(), CudaDevice(index), "cuda")

    def register_kernel(
        self, op_type: str | None = None, fn: Any = None, *, node: str | None = None
    ) -> Any:
        """Register a custom CUDA launcher for ``op_type`` (see `registry.register_kernel`)."""
        if node is not None:
            return register_kernel(fn, node=node, device="cuda")
        return register_kernel(fn, op_type=op_type, device="cuda")


def _gpu_name(gpu: Any) -> str:
    name = gpu.name
    return name.decode() if isinstance(name, bytes) else str(name)
