"""TFLite (LiteRT) export with builtin ops only, optionally quantized, with a report.

    report = vit_zoo.export.tflite(model, "vit_s16.tflite", quantize="dynamic_int8",
                                   validation_data=images)
    print(report)     # size, ops, agreement with the Keras model on `validation_data`

Every vit_zoo family converts to builtin TFLite ops: attention is batched matmuls and softmax,
Swin's shift is slices + concat and its masks are constants, CLIP's causal mask is a constant.
A conversion that would need TensorFlow ops (Flex delegate) is refused with the ops named,
never written as a Flex model that a phone's runtime cannot load.

Quantization (`quantize=`): None (float32), "float16" (weights stored as float16, half the
size, computed in float32 on CPU), "dynamic_int8" (int8 weights, activations quantized on the
fly per batch; a quarter of the size, faster matmuls), "int8" (weights and activations int8,
calibrated on `representative_data`; the input and output stay float32).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vit_zoo.export.common import (
    agreement_line,
    numbered_outputs,
    reference_outputs,
    relative_error,
    write_atomically,
)
from vit_zoo.export.signatures import image_size, model_kind
from vit_zoo.layers.activations import single_op_gelu

QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")
_CALIBRATION_STEPS = 200


class ConversionError(ValueError):
    """The model cannot be converted to builtin TFLite ops (or quantized as asked)."""


@dataclass
class TFLiteReport:
    """What `tflite` wrote: file size, op counts, agreement with Keras on the data given."""

    path: Path
    quantize: str | None
    size_bytes: int
    ops: dict[str, int]
    signatures: list[str]
    examples: int = 0
    max_relative_error: float | None = None  # max |tflite - keras| / max |keras|
    top1_agreement: float | None = None  # classifiers: share of examples with the same argmax
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        ops = ", ".join(f"{name} x{count}" for name, count in sorted(self.ops.items()))
        lines = [f"{self.path}: {self.size_bytes / 2**20:.2f} MiB, "
                 f"{self.quantize or 'float32'}, signatures {', '.join(self.signatures)}",
                 f"  ops: {ops}"]
        if self.examples:
            lines.append(agreement_line(self.examples, self.max_relative_error,
                                        self.top1_agreement))
        return "\n".join(lines + [f"  {note}" for note in self.notes])


def interpreter(model_path: str | os.PathLike | None = None, model_content: bytes | None = None,
                num_threads: int | None = None):
    """A LiteRT interpreter (ai-edge-litert; tf.lite.Interpreter is deprecated)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=None if model_path is None else str(model_path),
                       model_content=model_content, num_threads=num_threads)


def _input_specs(model: keras.Model, batch_size: int | None) -> dict[str, list[tf.TensorSpec]]:
    """signature name -> input specs, per kind of model."""
    kind = model_kind(model)
    if kind == "clip":
        length = model.text_encoder.input_shape[1]
        return {
            "encode_image": [tf.TensorSpec((batch_size, *image_size(model), 3), tf.float32,
                                           name="images")],
            "encode_text": [tf.TensorSpec((batch_size, length), tf.int32, name="token_ids")],
        }
    if kind == "text":
        return {"serving_default": [tf.TensorSpec((batch_size, model.input_shape[1]), tf.int32,
                                                  name="token_ids")]}
    # A model built for any size keeps free height and width: the file's input is resized with
    # `resize_tensor_input` (the signature runner does it) and the position embeddings are
    # resampled in the graph.
    height, width = model.input_shape[1:3]
    return {"serving_default": [tf.TensorSpec((batch_size, height, width, 3), tf.float32,
                                              name="images")]}


def _functions(model: keras.Model, batch_size: int | None) -> dict[str, Callable]:
    """signature name -> tf.function computing the model's outputs in float32."""
    specs = _input_specs(model, batch_size)
    if model_kind(model) == "clip":
        networks = {"encode_image": model.image_encoder, "encode_text": model.text_encoder}
    else:
        networks = {"serving_default": model}
    return {name: tf.function(numbered_outputs(networks[name]), input_signature=specs[name])
            for name in specs}


def _representative(data, specs: dict[str, list[tf.TensorSpec]]):
    """The converter's calibration generator: one example at a time (int8 is for image models
    and their single signature)."""
    (spec,) = next(iter(specs.values()))

    def generate():
        for count, row in enumerate(_rows(data)):
            if count == _CALIBRATION_STEPS:
                break
            yield [row.astype(spec.dtype.as_numpy_dtype)]

    return generate


def _rows(data) -> Iterable[np.ndarray]:
    """Single-example batches from an array (N, ...) or an iterable of arrays/batches."""
    if isinstance(data, np.ndarray) or hasattr(data, "numpy"):
        for row in np.asarray(data):
            yield row[np.newaxis]
        return
    for item in data:
        item = np.asarray(item[0] if isinstance(item, tuple) else item)
        for row in item:
            yield row[np.newaxis]


def _flex_ops(message: str) -> list[str]:
    """TensorFlow op names a converter error lists as unsupported by builtin TFLite."""
    return sorted(set(re.findall(r"\btf\.(\w+)", message)) - {"lite", "function"})


def tflite(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    quantize: str | None = None,
    representative_data=None,
    batch_size: int | None = None,
    validation_data=None,
    overwrite: bool = True,
) -> TFLiteReport:
    """Convert `model` to a .tflite file with builtin ops only; returns a TFLiteReport.

    Args:
        model: a classifier, feature extractor, CLIP text tower, or a CLIPModel (one file with
            two signatures, `encode_image` (float images) and `encode_text` (int32 token ids:
            tokenize on the host with vit_zoo.CLIPTokenizer)).
        quantize: None, "float16", "dynamic_int8" or "int8" (see the module doc).
        representative_data: calibration inputs for "int8": an array (N, H, W, 3) of RGB images
            in [0, 255] or an iterable of such batches; up to 200 examples are used. (int8 is
            refused for CLIP text towers; convert a CLIP image tower on its own.)
        batch_size: a fixed batch size for the file's inputs; None leaves it resizable (the
            file holds batch 1 and `resize_tensor_input` changes it).
        validation_data: inputs on which the report compares the file with the Keras model:
            images, token ids for a text tower, or for a CLIPModel a dict {"encode_image":
            images, "encode_text": token_ids}; max relative error, and top-1 agreement for
            classifiers.
        overwrite: replace an existing file at `path`.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}.")
    if quantize == "int8" and representative_data is None:
        raise ValueError("quantize='int8' calibrates activation ranges on representative_data: "
                         "pass a few hundred real inputs (e.g. training images, RGB in [0, 255]). "
                         "quantize='dynamic_int8' needs none.")
    if quantize == "int8" and model_kind(model) in ("clip", "text"):
        # Measured: a text tower's int8 embeddings have cosine 0.25 with float32. The causal
        # mask adds -1e9 above the diagonal, so one int8 scale must span the masked attention
        # logits and the real ones, and the real ones lose every bit.
        raise ValueError(
            "quantize='int8' is refused for CLIP text towers: the causal mask's -1e9 entries "
            "leave the attention logits no int8 resolution. Use quantize='dynamic_int8' for the "
            "text tower (and int8 for `model.image_encoder` on its own, if wanted).")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    with single_op_gelu():  # traced here: tanh-GELU becomes one TFLite GELU kernel
        functions = _functions(model, batch_size)
        specs = {name: list(function.input_signature) for name, function in functions.items()}
        content = _convert(model, functions, quantize, representative_data, specs)
    write_atomically(path, content)
    runner = interpreter(model_content=content)
    report = TFLiteReport(path, quantize, len(content), _op_counts(runner),
                          sorted(runner.get_signature_list()))
    if validation_data is not None:
        _compare(report, runner, model, validation_data)
    return report


def _convert(model, functions, quantize, representative_data, specs) -> bytes:
    staging = Path(tempfile.mkdtemp(prefix="vit_zoo_tflite_"))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, function in functions.items():
            archive.add_endpoint(name, function)
        archive.write_out(str(staging), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(staging), signature_keys=list(functions))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.representative_dataset = _representative(representative_data, specs)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            return converter.convert()
        except Exception as error:  # the converter raises ConverterError with MLIR diagnostics
            ops = _flex_ops(str(error))
            if ops:
                raise ConversionError(
                    f"{model.name} needs TensorFlow ops that builtin TFLite lacks: "
                    f"{', '.join(ops)}. vit_zoo refuses to write a Flex model (the LiteRT "
                    "runtimes on phones do not carry those ops); rebuild the model without the "
                    "layers that use them.") from error
            raise ConversionError(f"TFLite conversion of {model.name} "
                                  f"({quantize or 'float32'}) failed: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _op_counts(runner) -> dict[str, int]:
    counts: dict[str, int] = {}
    # The op list has no public accessor in LiteRT's Python API; _get_ops_details is the one the
    # TensorFlow Lite analyzer uses.
    for op in runner._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def run_signature(runner, signature: str, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run one signature of a LiteRT interpreter on a batch. A resizable batch dimension takes
    the whole batch (the signature runner resizes its input); a fixed one runs it in slices."""
    function = runner.get_signature_runner(signature)
    (name, detail), = function.get_input_details().items()
    inputs = np.asarray(inputs).astype(detail["dtype"])
    size = int(detail["shape_signature"][0])
    if size == -1 or size == len(inputs):
        return function(**{name: inputs})
    parts = [function(**{name: inputs[i:i + size]}) for i in range(0, len(inputs), size)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _compare(report: TFLiteReport, runner, model, data) -> None:
    """Fill the report's agreement figures from running both on `data`."""
    kind = model_kind(model)
    if kind == "clip":
        inputs = dict(data)
        networks = {"encode_image": model.image_encoder, "encode_text": model.text_encoder}
    else:
        inputs = {"serving_default": np.asarray(data)}
        networks = {"serving_default": model}
    errors, agreements, examples = [], [], 0
    for name, values in inputs.items():
        lite = run_signature(runner, name, values)
        reference = reference_outputs(networks[name], np.asarray(values))
        errors += [relative_error(lite[key], expected) for key, expected in reference.items()]
        if kind == "classifier":
            agreements.append(float(np.mean(
                lite["output_0"].argmax(-1) == reference["output_0"].argmax(-1))))
        examples += len(values)
    report.examples = examples
    report.max_relative_error = max(errors)
    report.top1_agreement = agreements[0] if agreements else None
