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

from pathlib import Path
from typing import TYPE_CHECKING

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
        seed: seed of the weights and of the example input.

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
    net = models.get_model(name, weights=None, **extra).eval()
    side = 299 if name == "inception_v3" else 224
    example = torch.randn(batch_size, 3, side, side)
    return load(net, example_inputs=(example,), name=name)


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
