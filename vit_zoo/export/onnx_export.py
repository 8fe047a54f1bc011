"""ONNX export through tf2onnx, checked with onnxruntime, with a report.

    report = vit_zoo.export.onnx(model, "vit_s16.onnx", validation_data=images)
    print(report)     # size, opset, names, agreement with the Keras model on `validation_data`
    probabilities = run_onnx("vit_s16.onnx", images)

The file has one input and float32 outputs: `images` (N, H, W, 3) float32 RGB in [0, 255] (the
model normalizes inside), or `token_ids` (N, context) int32 for a CLIP text tower; outputs are
`output_0`, `output_1`, ... in the model's output order.

The graph is frozen with TensorFlow's own `convert_variables_to_constants_v2` and handed to
`tf2onnx.convert.from_graph_def`, not `tf2onnx.convert.from_function` (nor Keras's
`model.export(format="onnx")`, which calls it): those list every tensor the function captures as
a graph input, so a model whose preprocessing layer holds its mean and variance as constants
comes out with two extra required inputs.

A `vit_zoo.CLIPModel` is refused: an ONNX graph runs all its inputs at once, and the towers are
used apart (images indexed offline, texts at query time). Export `model.image_encoder` and
`model.text_encoder` as two files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vit_zoo.export.common import (
    agreement_line,
    fill_agreement,
    fixed_image_size,
    frozen_outputs,
    in_batches,
    input_spec,
    write_atomically,
)
from vit_zoo.export.signatures import model_kind
from vit_zoo.export.tflite_export import ConversionError

_INSTALL = "ONNX export needs tf2onnx and onnxruntime: pip install 'vit_zoo[onnx]'"
_PROTOBUF_LIMIT = 2**31  # one ONNX protobuf file holds at most 2 GiB


class OnnxConversionError(ConversionError):
    """tf2onnx could not express the model in ONNX ops, or onnxruntime refuses the result."""


@dataclass
class OnnxReport:
    """What `onnx` wrote: file size, opset, names, agreement with Keras on the data given."""

    path: Path
    size_bytes: int
    opset: int
    inputs: list[str]
    outputs: list[str]
    examples: int = 0
    max_relative_error: float | None = None  # max |onnx - keras| / max |keras|, all outputs

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.size_bytes / 2**20:.2f} MiB, opset {self.opset}, "
                 f"{', '.join(self.inputs)} -> {', '.join(self.outputs)}"]
        if self.examples:
            lines.append(agreement_line(self.examples, self.max_relative_error))
        return "\n".join(lines)


def _backends():
    """(tf2onnx, onnxruntime), imported only when ONNX is asked for: they are an extra."""
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as error:
        raise ImportError(f"{_INSTALL} ({error})") from error
    return tf2onnx, onnxruntime


def _erfc(ctx, node, name, args) -> None:
    """erfc(x) = 1 - erf(x). TensorFlow writes exact GELU (Swin, timm-trained ViTs) with Erfc,
    which tf2onnx does not map; ONNX has Erf."""
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype))
    node.type = "Erf"
    ctx.insert_new_node_on_output("Sub", node.output[0], inputs=[one.output[0], node.output[0]])


def _convert(model: keras.Model, spec: tf.TensorSpec, opset: int | None):
    """The ONNX ModelProto of `model`, or OnnxConversionError naming what failed."""
    import onnx as onnx_lib

    tf2onnx, _ = _backends()
    frozen, names = frozen_outputs(model, spec)
    renames = {frozen.inputs[0].name: spec.name,
               **{t.name: name for t, name in zip(frozen.outputs, names)}}
    try:
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), name=model.name, opset=opset,
            input_names=[frozen.inputs[0].name], output_names=[t.name for t in frozen.outputs],
            tensors_to_rename=renames, custom_op_handlers={"Erfc": (_erfc, [])})
    except Exception as error:
        raise OnnxConversionError(f"tf2onnx failed on {model.name} ({model_kind(model)}): "
                                  f"{type(error).__name__}: {error}") from error
    # tf2onnx leaves an op it cannot map in the graph under its TensorFlow name and goes on.
    unmapped = sorted({node.op_type for node in proto.graph.node if node.domain in ("", "ai.onnx")
                       and not onnx_lib.defs.has(node.op_type)})
    if unmapped:
        raise OnnxConversionError(
            f"{model.name} ({model_kind(model)}) uses TensorFlow ops that tf2onnx cannot express "
            f"in ONNX opset {_opset(proto)}: {', '.join(unmapped)}.")
    return proto


def _opset(proto) -> int:
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


def onnx(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    opset: int | None = None,
    batch_size: int | None = None,
    validation_data=None,
    overwrite: bool = True,
) -> OnnxReport:
    """Convert `model` to an ONNX file that onnxruntime loads; returns an OnnxReport.

    Args:
        model: a classifier, a feature extractor (include_top=False) or a CLIP text tower, with
            a fixed input size. A CLIPModel is refused (see the module doc).
        path: the .onnx file to write.
        opset: the ONNX opset; None takes tf2onnx's default.
        batch_size: a fixed batch size for the input; None leaves the batch dimension free.
        validation_data: inputs (an array (N, H, W, 3) RGB in [0, 255], or token ids for a text
            tower) on which the report compares onnxruntime with the Keras model.
        overwrite: replace an existing file at `path`.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    _, onnxruntime = _backends()
    spec = input_spec(model, batch_size, "onnx(model.{tower}_encoder, 'clip_{tower}.onnx')")
    if model.count_params() * 4 >= _PROTOBUF_LIMIT:
        raise OnnxConversionError(
            f"{model.name} has {model.count_params():,} float32 parameters, over the 2 GiB an "
            "ONNX protobuf file can hold; export a smaller variant.")
    proto = _convert(model, spec, opset)
    content = proto.SerializeToString()
    try:
        session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise OnnxConversionError(f"onnxruntime cannot load the ONNX graph of {model.name} "
                                  f"({model_kind(model)}): {error}") from error
    write_atomically(path, content)
    report = OnnxReport(path, len(content), _opset(proto),
                        [value.name for value in session.get_inputs()],
                        [value.name for value in session.get_outputs()])
    if validation_data is not None:
        data = np.asarray(validation_data)
        fill_agreement(report, _run(session, data), model, data)
    return report


def _run(session, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """All outputs of a one-input session on a batch. A file with a fixed batch size runs it in
    slices of that size, the last one padded by repeating its last row."""
    (value,) = session.get_inputs()
    inputs = np.asarray(inputs, np.int32 if "int" in value.type else np.float32)
    names = [output.name for output in session.get_outputs()]
    return in_batches(lambda batch: session.run(names, {value.name: batch}), inputs,
                      value.shape[0] if isinstance(value.shape[0], int) else None, names)


def run_onnx(path: str | os.PathLike, inputs: np.ndarray) -> np.ndarray:
    """The first output of an exported file on `inputs`, run with onnxruntime on CPU."""
    _, onnxruntime = _backends()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _run(session, inputs)["output_0"]


def onnx_input_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) an exported image model's `images` input takes, to resize images to."""
    _backends()
    import onnx as onnx_lib

    (value,) = onnx_lib.load(str(path), load_external_data=False).graph.input
    dims = [dim.dim_value or None for dim in value.type.tensor_type.shape.dim]
    return fixed_image_size(path, value.name, dims)
