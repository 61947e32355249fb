"""AlexNet-, ZFNet- and Inception-v1-style ONNX graphs with LRN, small and randomly weighted.

Built with ``onnx.helper`` (torch exports ``LocalResponseNorm`` as a 3-D average pool,
not as LRN): the layer sequence, kernel sizes, strides, groups and LRN settings follow
the originals, the channel counts and the input are shrunk (``width`` scales them) so a
CPU test, or the CUDA simulator at ``width=1``, runs them quickly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.model import Model


class GraphBuilder:
    """Appends nodes to one NCHW float32 graph; every method returns its output's name.

    Args:
        image: the input's [C, H, W] (its batch is dynamic).
        opset: the default domain's opset.
        seed: for the random weights (He-scaled, so activations stay near unit size).
    """

    def __init__(self, image: tuple[int, int, int], opset: int, seed: int) -> None:
        self.image, self.opset = image, opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.initializers: dict[str, np.ndarray] = {}

    def _node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        name = f"{op.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def _weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        name = f"w{len(self.initializers)}"
        scale = np.sqrt(2.0 / fan_in)
        self.initializers[name] = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        return name

    def _bias(self, n: int) -> str:
        name = f"b{len(self.initializers)}"
        self.initializers[name] = (0.1 * self.rng.standard_normal(n)).astype(np.float32)
        return name

    def conv_relu(
        self, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, group: int = 1
    ) -> str:
        """Conv (square kernel, symmetric pads) with bias, then Relu."""
        w = self._weight((cout, cin // group, k, k), cin // group * k * k)
        y = self._node(
            "Conv",
            [x, w, self._bias(cout)],
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=group,
        )
        return self._node("Relu", [y])

    def lrn(self, x: str, size: int = 5, bias: float = 1.0) -> str:
        return self._node("LRN", [x], size=size, alpha=1e-4, beta=0.75, bias=bias)

    def max_pool(self, x: str, k: int, stride: int, pad: int = 0, ceil: bool = False) -> str:
        attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [stride, stride]}
        if pad:
            attrs["pads"] = [pad] * 4
        if ceil:
            attrs["ceil_mode"] = 1
        return self._node("MaxPool", [x], **attrs)

    def pad(self, x: str, pads: list[int]) -> str:
        """An explicit constant Pad (opset 11+ form: pads as an input)."""
        name = f"pads{len(self.initializers)}"
        self.initializers[name] = np.array(pads, np.int64)
        return self._node("Pad", [x, name])

    def classifier(self, x: str, hidden: list[int], classes: int) -> str:
        """Flatten, then Gemm + Relu + Dropout per hidden size, a last Gemm and Softmax."""
        y = self._node("Flatten", [x], axis=1)
        features = self.shape(y)[1]
        for n in [*hidden, classes]:
            w = self._weight((n, features), features)
            y = self._node("Gemm", [y, w, self._bias(n)], transB=1)
            if n != classes:
                y = self.dropout(self._node("Relu", [y]))
            features = n
        return self._node("Softmax", [y], axis=1)

    def inception(self, x: str, cin: int, widths: tuple[int, int, int, int, int, int]) -> str:
        """GoogLeNet's module: 1x1 | 1x1-3x3 | 1x1-5x5 | 3x3 max pool-1x1, concatenated."""
        c1, r3, c3, r5, c5, cp = widths
        branches = [
            self.conv_relu(x, cin, c1, 1),
            self.conv_relu(self.conv_relu(x, cin, r3, 1), r3, c3, 3, pad=1),
            self.conv_relu(self.conv_relu(x, cin, r5, 1), r5, c5, 5, pad=2),
            self.conv_relu(self.max_pool(x, 3, 1, pad=1), cin, cp, 1),
        ]
        return self._node("Concat", branches, axis=1)

    def average_pool(self, x: str, k: int) -> str:
        return self._node("AveragePool", [x], kernel_shape=[k, k])

    def dropout(self, x: str) -> str:
        return self._node("Dropout", [x])

    def shape(self, value: str) -> list[int]:
        """The static shape of ``value`` so far (ONNX shape inference at batch 1)."""
        proto = self._proto(value, batch=1)
        (info,) = [v for v in proto.graph.output if v.name == value]
        return [d.dim_value for d in info.type.tensor_type.shape.dim]

    def _proto(self, output: str, batch: int | str = "N") -> Any:
        from onnx import TensorProto, helper, numpy_helper, shape_inference

        graph = helper.make_graph(
            self.nodes,
            "classic",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, *self.image])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, k) for k, v in self.initializers.items()],
        )
        proto = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=7
        )
        return shape_inference.infer_shapes(proto, strict_mode=True)

    def model(self, name: str, output: str) -> Model:
        """The graph so far, ending at ``output``, as a `Model` with a dynamic batch."""
        from workbench.loaders.onnx import model_from_proto

        return model_from_proto(self._proto(output), name=name)


def alexnet(width: int = 4, size: int = 63) -> Model:
    """AlexNet's layers (opset 9): 11x11/4 conv, LRN, pool, grouped 5x5 conv, LRN, pool,
    three 3x3 convs (the 2nd and 3rd grouped), pool, three fully connected layers."""
    b = GraphBuilder((3, size, size), opset=9, seed=1)
    c = [2 * width, 4 * width, 6 * width, 6 * width, 4 * width]
    y = b.max_pool(b.lrn(b.conv_relu("image", 3, c[0], 11, stride=4, pad=2), bias=2.0), 3, 2)
    y = b.max_pool(b.lrn(b.conv_relu(y, c[0], c[1], 5, pad=2, group=2), bias=2.0), 3, 2)
    y = b.conv_relu(y, c[1], c[2], 3, pad=1)
    y = b.conv_relu(y, c[2], c[3], 3, pad=1, group=2)
    y = b.max_pool(b.conv_relu(y, c[3], c[4], 3, pad=1, group=2), 3, 2)
    return b.model("alexnet-style", b.classifier(y, [8 * width, 8 * width], 10))


def zfnet(width: int = 4, size: int = 63) -> Model:
    """ZFNet's layers (opset 13): 7x7/2 conv after an explicit Pad, pool, LRN, 5x5/2 conv,
    pool, LRN, three 3x3 convs, pool, three fully connected layers."""
    b = GraphBuilder((3, size, size), opset=13, seed=2)
    c = [2 * width, 4 * width, 6 * width, 6 * width, 4 * width]
    y = b.conv_relu(b.pad("image", [0, 0, 1, 1, 0, 0, 1, 1]), 3, c[0], 7, stride=2)
    y = b.lrn(b.max_pool(y, 3, 2, pad=1))
    y = b.lrn(b.max_pool(b.conv_relu(y, c[0], c[1], 5, stride=2), 3, 2, pad=1))
    y = b.conv_relu(y, c[1], c[2], 3, pad=1)
    y = b.conv_relu(y, c[2], c[3], 3, pad=1)
    y = b.max_pool(b.conv_relu(y, c[3], c[4], 3, pad=1), 3, 2)
    return b.model("zfnet-style", b.classifier(y, [8 * width, 8 * width], 10))


def inception_v1(width: int = 4, size: int = 64) -> Model:
    """GoogLeNet's stem and two inception modules (opset 12): 7x7/2 conv, pool, LRN, 1x1
    and 3x3 convs, LRN, pool, modules, pool, a global-size average pool, classifier."""
    b = GraphBuilder((3, size, size), opset=12, seed=3)
    w = width
    y = b.conv_relu("image", 3, 4 * w, 7, stride=2, pad=3)
    y = b.lrn(b.max_pool(y, 3, 2, ceil=True))
    y = b.conv_relu(y, 4 * w, 4 * w, 1)
    y = b.max_pool(b.lrn(b.conv_relu(y, 4 * w, 8 * w, 3, pad=1)), 3, 2, ceil=True)
    y = b.inception(y, 8 * w, (4 * w, 4 * w, 6 * w, w, 2 * w, 2 * w))
    y = b.inception(y, 14 * w, (6 * w, 4 * w, 6 * w, w, 3 * w, 2 * w))
    y = b.max_pool(y, 3, 2, ceil=True)
    side = b.shape(y)[-1]
    y = b.dropout(b.average_pool(y, side))
    return b.model("inception-v1-style", b.classifier(y, [], 10))


def lrn_block(size: int = 6) -> Model:
    """The classic CNNs' ops in one tiny graph (for the CUDA simulator): 3x3 conv, LRN,
    pool, Pad, an inception module, LRN again, average pool, classifier (opset 13)."""
    b = GraphBuilder((3, size, size), opset=13, seed=4)
    y = b.max_pool(b.lrn(b.conv_relu("image", 3, 4, 3, pad=1), size=3, bias=2.0), 2, 2)
    y = b.inception(b.pad(y, [0, 0, 1, 0, 0, 0, 0, 1]), 4, (2, 1, 2, 1, 1, 1))
    y = b.average_pool(b.lrn(y, size=5), size // 2 + 1)
    return b.model("lrn-block", b.classifier(y, [], 5))


#: The builders, by name.
CLASSIC_CNNS = {"alexnet": alexnet, "zfnet": zfnet, "inception-v1": inception_v1}
