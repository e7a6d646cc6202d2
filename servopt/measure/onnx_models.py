"""Small CNN-like ONNX graphs built with the ``onnx`` helper API, for profiling and tests (no downloads).

Every graph takes one float32 input ``input`` of shape ``[batch, 3, height, width]`` (all three dynamic, so
one file serves every batch and input size) and returns ``logits`` of shape ``[batch, num_classes]``. Weights
are random (He-normal, seeded), so the graphs time like real CNNs of that shape but classify nothing.

- :func:`resnet_like`: a ResNet-style network (3x3 stem, max-pool, stages of basic residual blocks with a
  strided 1x1 projection shortcut, global average pool, fully connected layer).
- :func:`mobilenet_like`: a MobileNetV2-style network (inverted residual blocks: 1x1 expansion, 3x3
  depthwise convolution, linear 1x1 projection; ReLU6 as ``Clip``).
- :func:`tiny_cnn`: one strided convolution and a classifier, a few milliseconds per batch (for tests).
- :func:`vit_like`: a small ViT-style transformer (patch embedding, self-attention blocks): FLOPs that grow
  faster than the pixels.

>>> from servopt.measure.onnx_models import tiny_cnn
>>> m = tiny_cnn()
>>> [d.dim_param for d in m.graph.input[0].type.tensor_type.shape.dim]
['batch', '', 'height', 'width']

Write a graph with :func:`save_model`, or from a shell::

    python -m servopt.measure.onnx_models resnet_like models/resnet_like.onnx
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servopt.atomic import atomic_write
from servopt.exceptions import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

__all__ = ["resnet_like", "mobilenet_like", "tiny_cnn", "vit_like", "save_model", "BUILDERS", "OPSET", "IR_VERSION"]

#: ONNX opset of the generated graphs (Clip takes min/max as inputs from opset 11 on).
OPSET = 17
#: IR version written into the files; 8 keeps them loadable by older ONNX Runtime builds (e.g. Triton's).
IR_VERSION = 8


class _GraphBuilder:
    """Accumulates nodes and initializers; names every tensor uniquely."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1, group: int = 1) -> str:
        import numpy as np

        fan_in = (c_in // group) * kernel * kernel
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(c_out, c_in // group, kernel, kernel))
        b = np.zeros(c_out)
        return self.node(
            "Conv",
            [x, self.const("w", w.astype(np.float32)), self.const("b", b.astype(np.float32))],
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[kernel // 2] * 4,
            group=group,
        )

    def relu(self, x: str) -> str:
        return self.node("Relu", [x])

    def relu6(self, x: str) -> str:
        import numpy as np

        lo = self.const("clip_min", np.array(0.0, dtype=np.float32))
        hi = self.const("clip_max", np.array(6.0, dtype=np.float32))
        return self.node("Clip", [x, lo, hi])

    def classifier(self, x: str, channels: int, num_classes: int) -> str:
        import numpy as np
        from onnx import helper

        pooled = self.node("GlobalAveragePool", [x])
        flat = self.node("Flatten", [pooled], axis=1)
        w = self.rng.normal(0.0, np.sqrt(1.0 / channels), size=(num_classes, channels)).astype(np.float32)
        b = np.zeros(num_classes, dtype=np.float32)
        self.nodes.append(
            helper.make_node("Gemm", [flat, self.const("fc_w", w), self.const("fc_b", b)], ["logits"],
                             name="fc", transB=1)
        )
        return "logits"

    def finish(self, name: str, num_classes: int, doc: str) -> onnx.ModelProto:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
            initializer=self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="servopt", doc_string=doc)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{name}: expected a positive integer, got {value!r}")
    return value


def resnet_like(
    width: int = 32,
    blocks: Sequence[int] = (2, 2, 2, 2),
    num_classes: int = 1000,
    seed: int = 0,
) -> onnx.ModelProto:
    """A ResNet-style CNN with random weights.

    Parameters
    ----------
    width : int
        Channels of the first stage; stage ``i`` has ``width * 2**i`` channels.
    blocks : sequence of int
        Basic residual blocks (two 3x3 convolutions) per stage; ResNet-18 is ``(2, 2, 2, 2)`` with width 64.
    num_classes : int
        Outputs of the final fully connected layer.
    seed : int
        Seed of the random weights.

    Returns
    -------
    onnx.ModelProto
        Checked model; input ``input`` ``[batch, 3, height, width]``, output ``logits``.

    Examples
    --------
    >>> m = resnet_like(width=8, blocks=(1, 1))
    >>> sum(n.op_type == "Add" for n in m.graph.node)
    2
    """
    width = _positive_int(width, "width")
    num_classes = _positive_int(num_classes, "num_classes")
    if not blocks:
        raise ValidationError("blocks: expected at least one stage, got an empty sequence")
    stages = [_positive_int(b, f"blocks[{i}]") for i, b in enumerate(blocks)]
    g = _GraphBuilder(seed)
    x = g.relu(g.conv("input", 3, width, 3, stride=2))
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = width
    for stage, n_blocks in enumerate(stages):
        c_out = width * 2**stage
        for block in range(n_blocks):
            stride = 2 if (stage > 0 and block == 0) else 1
            y = g.relu(g.conv(x, c_in, c_out, 3, stride=stride))
            y = g.conv(y, c_out, c_out, 3)
            shortcut = x if (stride == 1 and c_in == c_out) else g.conv(x, c_in, c_out, 1, stride=stride)
            x = g.relu(g.node("Add", [y, shortcut]))
            c_in = c_out
    g.classifier(x, c_in, num_classes)
    doc = f"servopt resnet_like(width={width}, blocks={tuple(stages)}, num_classes={num_classes}, seed={seed})"
    return g.finish("resnet_like", num_classes, doc)


#: MobileNetV2's inverted-residual settings (expansion t, channels c, repeats n, stride s), repeats trimmed.
_MOBILENET_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 2, 2),
    (6, 64, 2, 2),
    (6, 96, 1, 1),
    (6, 160, 1, 2),
    (6, 320, 1, 1),
)


def mobilenet_like(width_mult: float = 0.5, num_classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """A MobileNetV2-style CNN with random weights (depthwise separable inverted residual blocks).

    Parameters
    ----------
    width_mult : float
        Multiplier on every layer's channels (MobileNetV2's alpha), > 0.
    num_classes : int
        Outputs of the final fully connected layer.
    seed : int
        Seed of the random weights.

    Returns
    -------
    onnx.ModelProto
        Checked model; input ``input`` ``[batch, 3, height, width]``, output ``logits``.

    Examples
    --------
    >>> m = mobilenet_like(width_mult=0.25)
    >>> any(n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute) for n in m.graph.node)
    True
    """
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ValidationError(f"width_mult: expected a positive number, got {width_mult!r}")
    num_classes = _positive_int(num_classes, "num_classes")

    def ch(c: int) -> int:
        return max(8, int(round(c * width_mult / 8)) * 8)

    g = _GraphBuilder(seed)
    c_in = ch(32)
    x = g.relu6(g.conv("input", 3, c_in, 3, stride=2))
    for t, c, n, s in _MOBILENET_SETTINGS:
        c_out = ch(c)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c_in * t
            y = g.relu6(g.conv(x, c_in, hidden, 1)) if t != 1 else x
            y = g.relu6(g.conv(y, hidden, hidden, 3, stride=stride, group=hidden))
            y = g.conv(y, hidden, c_out, 1)
            x = g.node("Add", [x, y]) if (stride == 1 and c_in == c_out) else y
            c_in = c_out
    c_last = max(ch(1280), 1280 // 4)
    x = g.relu6(g.conv(x, c_in, c_last, 1))
    g.classifier(x, c_last, num_classes)
    doc = f"servopt mobilenet_like(width_mult={width_mult}, num_classes={num_classes}, seed={seed})"
    return g.finish("mobilenet_like", num_classes, doc)


def tiny_cnn(channels: int = 4, num_classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """A one-convolution CNN that runs in milliseconds (for tests of the profiler).

    Parameters
    ----------
    channels : int
        Output channels of the strided 3x3 convolution.
    num_classes : int
        Outputs of the classifier.
    seed : int
        Seed of the random weights.
    """
    channels = _positive_int(channels, "channels")
    num_classes = _positive_int(num_classes, "num_classes")
    g = _GraphBuilder(seed)
    x = g.relu(g.conv("input", 3, channels, 3, stride=2))
    g.classifier(x, channels, num_classes)
    return g.finish("tiny_cnn", num_classes, f"servopt tiny_cnn(channels={channels}, seed={seed})")


def vit_like(dim: int = 64, depth: int = 2, patch: int = 8, mlp_ratio: int = 2, num_classes: int = 10,
             seed: int = 0) -> onnx.ModelProto:
    """A ViT-style transformer: a ``patch x patch`` strided patch embedding, ``depth`` pre-norm blocks of
    single-head self-attention and a ReLU MLP over the ``(size / patch)^2`` tokens, mean pooling and a classifier.

    Its FLOPs grow with pixels (embedding, projections, MLP) *and* with tokens squared (the attention scores and
    their product with the values), like ViT-B/16 at larger input sizes. Input sizes must be multiples of
    ``patch``.

    Examples
    --------
    >>> from servopt.performance.work import onnx_work
    >>> m = vit_like()
    >>> f = [onnx_work(m, 1, s)["flops"] for s in (64, 128)]
    >>> bool(f[1] / f[0] > 4.0)   # attention: more than the pixel ratio
    True
    """
    import numpy as np
    from onnx import helper

    dim, depth, patch = (_positive_int(v, n) for v, n in ((dim, "dim"), (depth, "depth"), (patch, "patch")))
    mlp_ratio = _positive_int(mlp_ratio, "mlp_ratio")
    num_classes = _positive_int(num_classes, "num_classes")
    g = _GraphBuilder(seed)

    def weight(rows: int, cols: int) -> str:
        return g.const("w", g.rng.normal(0.0, np.sqrt(1.0 / rows), size=(rows, cols)).astype(np.float32))

    def norm(x: str) -> str:
        scale = g.const("ln_scale", np.ones(dim, dtype=np.float32))
        bias = g.const("ln_bias", np.zeros(dim, dtype=np.float32))
        return g.node("LayerNormalization", [x, scale, bias], axis=-1)

    embed = g.rng.normal(0.0, np.sqrt(2.0 / (3 * patch * patch)), size=(dim, 3, patch, patch)).astype(np.float32)
    x = g.node("Conv", ["input", g.const("w", embed), g.const("b", np.zeros(dim, dtype=np.float32))],
               kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.node("Reshape", [x, g.const("shape", np.array([0, dim, -1], dtype=np.int64))])
    x = g.node("Transpose", [x], perm=[0, 2, 1])  # [batch, tokens, dim]
    for _ in range(depth):
        h = norm(x)
        q, k, v = (g.node("MatMul", [h, weight(dim, dim)]) for _ in range(3))
        scores = g.node("MatMul", [q, g.node("Transpose", [k], perm=[0, 2, 1])])
        scores = g.node("Mul", [scores, g.const("scale", np.array(1.0 / np.sqrt(dim), dtype=np.float32))])
        attended = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
        x = g.node("Add", [x, g.node("MatMul", [attended, weight(dim, dim)])])
        h = g.node("Relu", [g.node("MatMul", [norm(x), weight(dim, dim * mlp_ratio)])])
        x = g.node("Add", [x, g.node("MatMul", [h, weight(dim * mlp_ratio, dim)])])
    pooled = g.node("ReduceMean", [norm(x)], axes=[1], keepdims=0)
    w = g.rng.normal(0.0, np.sqrt(1.0 / dim), size=(num_classes, dim)).astype(np.float32)
    g.nodes.append(helper.make_node("Gemm", [pooled, g.const("fc_w", w),
                                             g.const("fc_b", np.zeros(num_classes, dtype=np.float32))],
                                    ["logits"], name="fc", transB=1))
    return g.finish("vit_like", num_classes, f"servopt vit_like(dim={dim}, depth={depth}, patch={patch}, "
                                             f"seed={seed})")


#: name -> builder, for the command line and for scripts that pick a graph by name.
BUILDERS: dict[str, Callable[..., Any]] = {
    "resnet_like": resnet_like,
    "mobilenet_like": mobilenet_like,
    "tiny_cnn": tiny_cnn,
    "vit_like": vit_like,
}


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    with atomic_write(path, make_parents=True) as fh:
        fh.write(model.SerializeToString())
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m servopt.measure.onnx_models NAME OUT.onnx``: build a graph with default settings and save it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in BUILDERS:
        print(f"usage: python -m servopt.measure.onnx_models {{{','.join(BUILDERS)}}} OUT.onnx", file=sys.stderr)
        return 2
    out = save_model(BUILDERS[args[0]](), args[1])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
