"""A foreign ONNX ResNet-50 for tests: not exported by workbench, no layer metadata.

The ``onnx`` wheel ships ``backend/test/data/light/light_resnet50.onnx``: the ResNet-50
graph of the ONNX model zoo (Caffe2 export, opset 9, nodes ``n0``...), with every weight
replaced by a ``ConstantOfShape`` of 0.02 to keep the file small. `foreign_resnet50` puts
seeded random weights back (He-scaled convolutions, near-identity batch norms) and makes
the batch dimension symbolic, so that runtimes can be compared on a real, full-size
ResNet-50 graph whose layer names come from its own node names.

Example:
    >>> path = foreign_resnet50(tmp_path / "resnet50.onnx")
    >>> m = wb.load(path)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_LIGHT = "backend/test/data/light/light_resnet50.onnx"


def foreign_resnet50(path: str | Path, seed: int = 0) -> Path:
    """Write a ResNet-50 ONNX file (25.6 M random parameters, batch ``N``) to ``path``.

    Args:
        path: where to write the ``.onnx`` file (about 100 MB).
        seed: seed of the random weights.

    Returns:
        ``path``. Inputs ``gpu_0/data_0`` (N, 3, 224, 224) float32; output softmax
        probabilities (N, 1000).
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(Path(onnx.__file__).parent / _LIGHT))
    graph = proto.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    rng = np.random.default_rng(seed)
    weights = []
    for node in list(graph.node):
        if node.op_type == "ConstantOfShape":
            name = node.output[0]
            weights.append(numpy_helper.from_array(_init(name, shapes[node.input[0]], rng), name))
            graph.node.remove(node)
        elif node.op_type == "Reshape":  # the flatten before the classifier keeps the batch
            shapes[node.input[1]] = np.array([0, -1], dtype=np.int64)
    kept = [numpy_helper.from_array(shapes[t.name], t.name) for t in graph.initializer]
    del graph.initializer[:]
    graph.initializer.extend([t for t in kept if not t.name.endswith("__SHAPE")] + weights)
    data = graph.input[0]
    data.type.tensor_type.shape.dim[0].dim_param = "N"
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    del graph.input[1:]  # the rest were the weights and their shapes
    proto.ir_version = max(proto.ir_version, 4)  # initializers need not be graph inputs
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return Path(path)


def _init(name: str, shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A weight for a Caffe2 blob name: ``*_w_0`` weights, ``*_bn_{s,b,rm,riv}_0`` norms."""
    dims = tuple(int(d) for d in shape)
    if name.endswith("_w_0"):
        fan_in = int(np.prod(dims[1:]))
        values = rng.standard_normal(dims) * np.sqrt(2.0 / fan_in)
    elif name.endswith("_bn_s_0"):
        # the last norm of each residual branch starts small, so the sum stays bounded
        values = rng.uniform(0.5, 1.0, dims) * (0.2 if "branch2c" in name else 1.0)
    elif name.endswith("_bn_riv_0"):
        values = rng.uniform(0.8, 1.2, dims)
    else:  # biases, norm shifts and running means
        values = rng.standard_normal(dims) * 0.05
    return values.astype(np.float32)
