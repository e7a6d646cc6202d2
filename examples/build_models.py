"""Build the small ONNX models the examples deploy (examples/models/*.onnx), with the onnx helper API.

    python examples/build_models.py            # (re)writes examples/models/
    python examples/build_models.py --check    # exit 1 when a committed model differs from what this builds

No downloads: every graph is built here with seeded random weights, so the bytes are the same on every run. The
models classify nothing; they have the tensors of the real models the examples plan for, so that the written
Triton repositories load and answer on a real server:

- ``image_classifier.onnx``: ``input`` FP32 [batch, 3, 224, 224] -> ``logits`` FP32 [batch, 1000]
  (servopt.measure.onnx_models.tiny_cnn with fixed image dims): EfficientNet / ResNet examples.
- ``detector.onnx``: ``IMAGE`` FP32 [batch, 3, 160, 160] -> ``BOXES`` FP32 [batch, 16, 4] (x0, y0, x1, y1 in 0..1)
  and ``SCORES`` FP32 [batch, 16]: the YOLO stage.
- ``roi_classifier.onnx``: ``IMAGE`` FP32 [batch, 3, 160, 160] and ``BOXES`` FP32 [batch, 16, 4] -> ``LOGITS`` FP32
  [batch, 16, 1000]: the ResNet stage, classifying each detected box.
- ``language_id.onnx``: ``input_ids`` INT64 [batch, 32] -> ``language`` INT64 [batch, 1].
- ``translate.onnx``: ``input_ids`` INT64 [batch, 32] and ``language`` INT64 [batch, 1] -> ``output_ids`` INT64
  [batch, 32].
- ``summarize.onnx``: ``input_ids`` INT64 [batch, 32] -> ``summary_ids`` INT64 [batch, 8].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
OPSET = 17
IR_VERSION = 8  # loadable by the ONNX Runtime builds Triton ships
VOCAB, SEQ, SUMMARY, WIDTH, LANGUAGES = 1000, 32, 8, 16, 4
IMAGE, BOXES, CLASSES = 160, 16, 1000


def _finish(name: str, nodes: list, inputs: list, outputs: list, inits: list) -> Any:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="servopt",
                              doc_string=f"servopt example model {name} (random weights; examples/build_models.py)")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


class _G:
    """Nodes and seeded weights of one graph."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def const(self, array: Any) -> str:
        from onnx import numpy_helper

        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def weight(self, *shape: int) -> str:
        import numpy as np

        return self.const(self.rng.normal(0.0, 1.0 / np.sqrt(shape[0]), size=shape).astype(np.float32))

    def ints(self, values: list[int]) -> str:
        import numpy as np

        return self.const(np.array(values, dtype=np.int64))

    def op(self, op: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        self.n += 1
        out = out or f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n{self.n}", **attrs))
        return out


def _image_features(g: _G, image: str, channels: int) -> str:
    """[b, 3, H, W] -> pooled features [b, channels]."""
    import numpy as np

    w = g.const(g.rng.normal(0.0, np.sqrt(2.0 / 27), size=(channels, 3, 3, 3)).astype(np.float32))
    conv = g.op("Conv", [image, w], kernel_shape=[3, 3], strides=[4, 4], pads=[1, 1, 1, 1])
    pooled = g.op("GlobalAveragePool", [g.op("Relu", [conv])])
    return g.op("Flatten", [pooled], axis=1)


def image_classifier() -> Any:
    from servopt.measure.onnx_models import tiny_cnn

    model = tiny_cnn(channels=8, num_classes=1000, seed=1)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = 224
    dims[3].dim_value = 224
    return model


def detector() -> Any:
    from onnx import TensorProto, helper

    g = _G(2)
    feats = _image_features(g, "IMAGE", 16)
    raw = g.op("MatMul", [feats, g.weight(16, BOXES * 5)])
    grid = g.op("Reshape", [raw, g.ints([-1, BOXES, 5])])
    split = g.ints([4, 1])
    from onnx import helper as h

    g.nodes.append(h.make_node("Split", [grid, split], ["box_raw", "score_raw"], name="split", axis=2))
    g.op("Sigmoid", ["box_raw"], "BOXES")
    g.op("Sigmoid", [g.op("Squeeze", ["score_raw", g.ints([2])])], "SCORES")
    return _finish("detector", g.nodes,
                   [helper.make_tensor_value_info("IMAGE", TensorProto.FLOAT, ["batch", 3, IMAGE, IMAGE])],
                   [helper.make_tensor_value_info("BOXES", TensorProto.FLOAT, ["batch", BOXES, 4]),
                    helper.make_tensor_value_info("SCORES", TensorProto.FLOAT, ["batch", BOXES])], g.inits)


def roi_classifier() -> Any:
    from onnx import TensorProto, helper

    g = _G(3)
    feats = g.op("Unsqueeze", [_image_features(g, "IMAGE", 16), g.ints([1])])  # [b, 1, 16]
    boxes = g.op("MatMul", ["BOXES", g.weight(4, 16)])  # [b, 16, 16]
    hidden = g.op("Relu", [g.op("Add", [feats, boxes])])
    g.op("MatMul", [hidden, g.weight(16, CLASSES)], "LOGITS")
    return _finish("roi_classifier", g.nodes,
                   [helper.make_tensor_value_info("IMAGE", TensorProto.FLOAT, ["batch", 3, IMAGE, IMAGE]),
                    helper.make_tensor_value_info("BOXES", TensorProto.FLOAT, ["batch", BOXES, 4])],
                   [helper.make_tensor_value_info("LOGITS", TensorProto.FLOAT, ["batch", BOXES, CLASSES])], g.inits)


def _embed(g: _G, ids: str) -> str:
    """Token ids [b, n] -> embeddings [b, n, WIDTH]."""
    return g.op("Gather", [g.weight(VOCAB, WIDTH), ids])


def language_id() -> Any:
    from onnx import TensorProto, helper

    g = _G(4)
    pooled = g.op("ReduceMean", [_embed(g, "input_ids")], axes=[1], keepdims=0)  # [b, WIDTH]
    logits = g.op("MatMul", [pooled, g.weight(WIDTH, LANGUAGES)])
    g.op("ArgMax", [logits], "language", axis=1, keepdims=1)
    return _finish("language_id", g.nodes,
                   [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", SEQ])],
                   [helper.make_tensor_value_info("language", TensorProto.INT64, ["batch", 1])], g.inits)


def translate() -> Any:
    from onnx import TensorProto, helper

    g = _G(5)
    lang = g.op("Gather", [g.weight(LANGUAGES, WIDTH), "language"])  # [b, 1, WIDTH]
    hidden = g.op("Tanh", [g.op("Add", [_embed(g, "input_ids"), lang])])
    logits = g.op("MatMul", [hidden, g.weight(WIDTH, VOCAB)])
    g.op("ArgMax", [logits], "output_ids", axis=2, keepdims=0)
    return _finish("translate", g.nodes,
                   [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", SEQ]),
                    helper.make_tensor_value_info("language", TensorProto.INT64, ["batch", 1])],
                   [helper.make_tensor_value_info("output_ids", TensorProto.INT64, ["batch", SEQ])], g.inits)


def summarize() -> Any:
    from onnx import TensorProto, helper

    g = _G(6)
    head = g.op("Slice", [_embed(g, "input_ids"), g.ints([0]), g.ints([SUMMARY]), g.ints([1])])
    logits = g.op("MatMul", [g.op("Tanh", [head]), g.weight(WIDTH, VOCAB)])
    g.op("ArgMax", [logits], "summary_ids", axis=2, keepdims=0)
    return _finish("summarize", g.nodes,
                   [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", SEQ])],
                   [helper.make_tensor_value_info("summary_ids", TensorProto.INT64, ["batch", SUMMARY])], g.inits)


BUILDERS = {"image_classifier": image_classifier, "detector": detector, "roi_classifier": roi_classifier,
            "language_id": language_id, "translate": translate, "summarize": summarize}


def build() -> dict[str, bytes]:
    """File name -> bytes of every example model."""
    return {f"{name}.onnx": builder().SerializeToString() for name, builder in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed models are current")
    args = parser.parse_args(argv)
    stale = []
    for name, data in build().items():
        path = MODELS / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
            continue
        from servopt.atomic import atomic_write

        with atomic_write(path, "wb", make_parents=True) as fh:
            fh.write(data)
        print(f"wrote {path} ({len(data):,} bytes)")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python examples/build_models.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
