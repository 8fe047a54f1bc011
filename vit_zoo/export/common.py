"""What the file-format exporters (TFLite, ONNX, OpenVINO) share: the one input a file takes, the
model's outputs as numbered float32 tensors, the frozen graph the ONNX and OpenVINO converters
read, the Keras reference outputs a report compares against, and atomic writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


def numbered_outputs(network: keras.Model) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """inputs -> {"output_<i>": float32 tensor}, the network's outputs in order: the names an
    exported file's outputs get, whatever the model's own output structure."""
    def run(inputs):
        outputs = network(inputs, training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return {f"output_{i}": tf.cast(value, tf.float32) for i, value in enumerate(outputs)}
    return run


def input_spec(model: keras.Model, batch_size: int | None, export_call: str) -> tf.TensorSpec:
    """The one input of an exported file: `images` (N, H, W, 3) float32 RGB in [0, 255] or, for
    a CLIP text tower, `token_ids` (N, context) int32. A CLIPModel is refused: a file's graph
    needs all its inputs on every run, and CLIP's towers run apart. `export_call` names the
    exporter in the advice, e.g. "onnx(model.{tower}, 'clip_{tower}.onnx')"."""
    from vit_zoo.export.signatures import image_size, model_kind

    kind = model_kind(model)
    if kind == "clip":
        towers = " and ".join(export_call.format(tower=tower) for tower in ("image", "text"))
        raise ValueError(
            f"{model.name} is a CLIPModel: an exported graph needs all its inputs on every run, "
            f"and CLIP's towers run apart. Export them as two files: {towers} (the similarity "
            "is exp(model.logit_scale) * cosine of the two embeddings).")
    if kind == "text":
        return tf.TensorSpec((batch_size, model.input_shape[1]), tf.int32, name="token_ids")
    return tf.TensorSpec((batch_size, *image_size(model), 3), tf.float32, name="images")


def frozen_outputs(network: keras.Model, spec: tf.TensorSpec):
    """(frozen concrete function, output names): the numbered outputs of `network` on `spec`
    with every variable and captured constant folded in, so the graph has exactly one input.
    (Converting the tf.function itself, as Keras's exporters do, lists every captured tensor as
    an input or an output: ONNX gets extra inputs, OpenVINO dozens of extra scalar outputs.)"""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    function = tf.function(numbered_outputs(network), input_signature=[spec])
    concrete = function.get_concrete_function()
    names = tf.nest.flatten({name: name for name in concrete.structured_outputs})
    return convert_variables_to_constants_v2(concrete), names


def reference_outputs(network: keras.Model, values: np.ndarray,
                      batch: int = 32) -> dict[str, np.ndarray]:
    """The Keras network's numbered outputs on `values`, computed in batches."""
    run = numbered_outputs(network)
    parts = [run(values[start:start + batch]) for start in range(0, len(values), batch)]
    return {name: np.concatenate([part[name].numpy() for part in parts]) for name in parts[0]}


def in_batches(run_batch: Callable[[np.ndarray], list[np.ndarray]], inputs: np.ndarray,
               size: int | None, names: list[str]) -> dict[str, np.ndarray]:
    """{name: output} of a one-input runtime over `inputs`: in slices of a file's fixed batch
    `size` (the last one padded by repeating its last row), or in one call if it has none."""
    size = size or len(inputs)
    parts = []
    for start in range(0, len(inputs), size):
        rows = inputs[start:start + size]
        padded = np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])
        parts.append([output[:len(rows)] for output in run_batch(padded)])
    return {name: np.concatenate([part[j] for part in parts]) for j, name in enumerate(names)}


def fill_agreement(report, ours: dict[str, np.ndarray], model: keras.Model,
                   data: np.ndarray) -> None:
    """Set a report's agreement figures: examples, the max relative error over all outputs and,
    for a classifier whose report has the field, the top-1 agreement with Keras."""
    from vit_zoo.export.signatures import model_kind

    reference = reference_outputs(model, data)
    report.examples = len(data)
    report.max_relative_error = max(relative_error(ours[name], reference[name])
                                    for name in ours)
    if hasattr(report, "top1_agreement") and model_kind(model) == "classifier":
        report.top1_agreement = float(np.mean(
            ours["output_0"].argmax(axis=-1) == reference["output_0"].argmax(axis=-1)))


def fixed_image_size(path, input_name: str, dims: list[int | None]) -> tuple[int, int]:
    """(height, width) of an exported file's `images` input, or an error for any other input
    or a dynamic size (images must be resized to something before they go in)."""
    if input_name != "images" or len(dims) != 4 or None in dims[1:3]:
        raise ValueError(f"{path} does not take fixed-size images: its input is {input_name} "
                         f"with shape {dims}.")
    return dims[1], dims[2]


def agreement_line(examples: int, max_relative_error: float,
                   top1_agreement: float | None = None) -> str:
    """The line of an export report that says how well the file agrees with Keras."""
    agreement = f", top-1 agreement {top1_agreement:.4f}" if top1_agreement is not None else ""
    return (f"  vs Keras on {examples} examples: max relative error {max_relative_error:.2e}"
            f"{agreement}")


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|, the figure the reports give."""
    reference = np.asarray(reference, np.float64)
    return float(np.max(np.abs(np.asarray(ours, np.float64) - reference))
                 / np.max(np.abs(reference)))


def write_atomically(path: Path, content: bytes) -> None:
    """Write next to `path` and rename into it: a reader never sees half a file, and a failure
    leaves what was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                       dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
