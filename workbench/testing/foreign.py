"""Foreign models for tests: not made by workbench, named by their own authors.

The ``onnx`` wheel ships the light models of the ONNX model zoo under
``backend/test/data/light/`` (Caffe2 exports, opset 9, nodes ``n0``...), with every weight
replaced by a ``ConstantOfShape`` of 0.02 to keep the files small. `light_model` puts
seeded random weights back (He-scaled convolutions, near-identity batch norms) and makes
the batch dimension symbolic, so that runtimes can be compared on real, full-size graphs
whose layer names come from their own node names; `foreign_resnet50` is its ResNet-50.
`torchvision_classifier` is one of torchvision's classification models with random
weights, imported through `workbench.loaders.thirdparty` so that PyPI's CUDA build of
torchvision loads beside a CPU torch.

Example:
    >>> path = foreign_resnet50(tmp_path / "resnet50.onnx")
    >>> m = wb.load(path)
    >>> net = torchvision_classifier("mobilenet_v3_small")   # a torch Model, batch 1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from workbench.model import Model

#: the light models of the ONNX model zoo shipped in the ``onnx`` wheel (opset 9, Caffe2
#: exports), each ``backend/test/data/light/light_<name>.onnx``
LIGHT_MODELS = (
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
)


def light_model_path(name: str) -> Path:
    """The shipped file of light model ``name`` (weights: ``ConstantOfShape`` of 0.02)."""
    import onnx

    return Path(onnx.__file__).parent / f"backend/test/data/light/light_{name}.onnx"


def foreign_resnet50(path: str | Path, seed: int = 0) -> Path:
    """Write a ResNet-50 ONNX file (25.6 M random parameters, batch ``N``) to ``path``.

    Args:
        path: where to write the ``.onnx`` file (about 100 MB).
        seed: seed of the random weights.

    Returns:
        ``path``. Inputs ``gpu_0/data_0`` (N, 3, 224, 224) float32; output softmax
        probabilities (N, 1000).
    """
    return light_model("resnet50", path, seed)


def light_model(
    name: str, path: str | Path, seed: int = 0, *, biases_as_shipped: bool = False
) -> Path:
    """Write light model ``name`` with seeded random weights and a symbolic batch ``N``.

    The shipped weights are all 0.02, so every class scores alike and any runtime's
    output is the uniform distribution: a comparison on them proves little. Convolution
    and dense weights are He-scaled, norm scales and variances near one, the rest
    (biases, shifts, means) small.

    Args:
        name: one of `LIGHT_MODELS`.
        path: where to write the ``.onnx`` file.
        seed: seed of the random weights.
        biases_as_shipped: keep the biases, shifts and means as the file makes them (its
            ``ConstantOfShape`` nodes), so that the graph still holds that op.

    Returns:
        ``path``; the graph's one input and output have batch dimension ``N``.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(light_model_path(name)))
    graph = proto.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    produced = {o for node in graph.node for o in node.output}
    rng = np.random.default_rng(seed)
    weights = []
    for node in list(graph.node):
        if node.op_type == "ConstantOfShape":
            name_ = node.output[0]
            values = _init(name_, shapes[node.input[0]], rng)
            if biases_as_shipped and _role(name_, values.ndim) == "shift":
                continue
            weights.append(numpy_helper.from_array(values, name_))
            graph.node.remove(node)
        elif node.op_type == "Reshape" and node.input[1] in shapes:
            target = shapes[node.input[1]]
            if target.size and target[0] == 1:  # a leading 1 is the batch: copy it
                shapes[node.input[1]] = np.concatenate([[0], target[1:]]).astype(np.int64)
    used = {n for node in graph.node for n in node.input}
    kept = [numpy_helper.from_array(shapes[t.name], t.name) for t in graph.initializer]
    del graph.initializer[:]
    graph.initializer.extend([t for t in kept if t.name in used] + weights)
    # the rest of the inputs were the weights and their shapes
    data = [i for i in graph.input if i.name not in shapes and i.name not in produced]
    del graph.input[:]
    graph.input.extend(data)
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    proto.ir_version = max(proto.ir_version, 4)  # initializers need not be graph inputs
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return Path(path)


def torchvision_classifier(name: str, batch_size: int = 1, seed: int = 0) -> Model:
    """torchvision's classification model ``name`` with seeded random weights, loaded.

    Args:
        name: a name from ``torchvision.models.list_models(module=torchvision.models)``.
        batch_size: the batch of the example input (224 x 224 RGB; 299 for inception_v3).
        seed: seed of the weights and of the example input. Batch-norm statistics are
            measured on random images, so that activations keep their scale.

    Raises:
        ModelLoadError: torchvision is not installed or does not import.
    """
    import torch

    from workbench.loaders import load
    from workbench.loaders.thirdparty import torchvision

    models = torchvision().models
    torch.manual_seed(seed)
    # googlenet and inception_v3 warn that their default init will change: it is random anyway
    extra = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    net = models.get_model(name, weights=None, **extra)
    with torch.no_grad():
        for weight in net.parameters():
            if weight.dim() >= 2 and not weight.any():  # ViT's head starts at zero:
                weight.normal_(0.0, weight[0].numel() ** -0.5)  # every output would be 0
    side = 299 if name == "inception_v3" else 224
    _calibrate_norms(net, torch.randn(4, 3, side, side))
    example = torch.randn(batch_size, 3, side, side)
    return load(net.eval(), example_inputs=(example,), name=name)


def _calibrate_norms(net: Any, images: Any) -> None:
    """Set ``net``'s batch-norm statistics to those of its activations on ``images``.

    With the initial ones (mean 0, variance 1) activations shrink layer by layer: a fresh
    mobilenet_v3_small's logits are about 1e-9, which any runtime matches within any
    absolute tolerance, so a comparison would prove nothing.
    """
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches seen
    net.train()
    with torch.no_grad():
        net(images)


def _role(name: str, ndim: int) -> str:
    """What a Caffe2 blob is: ``weight``, norm ``scale``, ``variance`` or ``shift``."""
    if ndim >= 2:
        return "weight"
    if name.endswith(("_bn_s_0", "_bn_scale_0", "_sc_w_0", "_bn_w_0")):
        return "scale"
    if name.endswith(("_bn_riv_0", "_bn_var_0")):
        return "variance"
    return "shift"  # biases, norm shifts and running means


def _init(name: str, shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random value for a Caffe2 blob of ``shape``, by its role (`_role`)."""
    dims = tuple(int(d) for d in shape)
    role = _role(name, len(dims))
    if role == "weight":
        fan_in = int(np.prod(dims[1:]))
        values = rng.standard_normal(dims) * np.sqrt(2.0 / fan_in)
    elif role == "scale":
        # the last norm of each residual branch starts small, so the sum stays bounded
        values = rng.uniform(0.5, 1.0, dims) * (0.2 if "branch2c" in name else 1.0)
    elif role == "variance":
        values = rng.uniform(0.8, 1.2, dims)
    else:
        values = rng.standard_normal(dims) * 0.05
    return values.astype(np.float32)


@dataclass(frozen=True)
class Coverage:
    """How one runtime did on one model against ONNX Runtime.

    Attributes:
        backend: the runtime (``torch`` runs an ONNX model through the converter).
        ok: it ran and its outputs match ONNX Runtime's within the ``model`` tolerances.
        detail: the largest absolute difference and output when it ran, else why not
            (one line).
    """

    backend: str
    ok: bool
    detail: str


#: the runtimes every ONNX model is tried on, ONNX Runtime (the reference) first
RUNTIMES = ("onnxruntime", "torch", "numba")


def runtime_coverage(model: Model, batch_size: int = 1, seed: int = 0) -> list[Coverage]:
    """Run ``model``'s ONNX graph on each of `RUNTIMES`, each checked against ONNX Runtime.

    Args:
        model: any `Model` (a torch one is exported first).
        batch_size: the batch of the seeded random inputs.
        seed: seed of the inputs.

    Returns:
        One `Coverage` per runtime, in `RUNTIMES` order; a runtime that refuses the model
        (``supports``) or fails says so, naming the ops it lacks.
    """
    from workbench.backends.base import get_backend
    from workbench.errors import WorkbenchError
    from workbench.tolerances import allclose

    graph = model.to_onnx()
    rng = np.random.default_rng(seed)
    inputs = {
        name: rng.standard_normal(value.shape).astype(value.dtype)
        if np.issubdtype(value.dtype, np.floating)
        else value
        for name, value in graph.example_inputs(batch_size).items()
    }
    reference: list[np.ndarray] | None = None
    rows = []
    for name in RUNTIMES:
        backend = get_backend(name)
        support = backend.supports(graph)
        if not support.ok:
            rows.append(Coverage(name, False, "; ".join(support.reasons)))
            continue
        try:
            session = backend.compile(graph, "cpu")
            try:
                outputs = [np.asarray(o) for o in session.run(inputs)]
            finally:
                session.close()
        except (WorkbenchError, RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
            rows.append(Coverage(name, False, f"{type(exc).__name__}: {exc}".splitlines()[0]))
            continue
        if name == "onnxruntime":
            reference = outputs
        if reference is None:
            rows.append(Coverage(name, False, "ran; no reference (ONNX Runtime failed)"))
            continue
        matches = len(outputs) == len(reference) and all(
            allclose(o, r, "model") for o, r in zip(outputs, reference, strict=False)
        )
        pairs = list(zip(outputs, reference, strict=False))
        error = max((float(np.max(np.abs(o - r))) for o, r in pairs), default=0.0)
        scale = max((float(np.max(np.abs(r))) for _, r in pairs), default=0.0)
        rows.append(Coverage(name, matches, f"max abs diff {error:.1e}, outputs up to {scale:.2g}"))
    return rows
