"""OpenVINO IR export for fast CPU inference, checked with the OpenVINO runtime, with a report.

    report = vit_zoo.export.openvino(model, "vit_s16.xml", precision="bf16",
                                     validation_data=images)
    print(report)     # size, names, agreement with the Keras model on `validation_data`
    scores = vit_zoo.export.run_openvino("vit_s16.xml", images)

The IR (`.xml` graph + `.bin` weights, both written) holds float32 weights and one input,
`images` (N, H, W, 3) float32 RGB in [0, 255] (the model normalizes inside) or `token_ids`
(N, context) int32 for a CLIP text tower; outputs are `output_0`, `output_1`, ... in the model's
output order, as in the ONNX files. `precision` is the CPU plugin's inference precision:
"f32", or "bf16", which runs the matmuls and convolutions in bfloat16 on CPUs that have it
(AVX512-BF16 or AMX) and in float32 elsewhere. It is recorded in the IR's runtime options and
`compile_openvino` / `run_openvino` apply it. Compiling the IR yourself, set
`INFERENCE_PRECISION_HINT`: the CPU plugin's own default is bfloat16 wherever the CPU has it,
whatever the IR holds.

The graph is TensorFlow's frozen function (vit_zoo.export.common.frozen_outputs) handed to
`openvino.convert_model`, not Keras's `model.export(format="openvino")`: with the TensorFlow
backend that one lists the scalar shape slices it captures as outputs of the model (25 outputs
for a ViT-Ti). A CLIPModel is refused, as for ONNX: export its two towers.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
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
)
from vit_zoo.export.signatures import model_kind
from vit_zoo.export.tflite_export import ConversionError

PRECISIONS = ("f32", "bf16")
_INSTALL = "OpenVINO export needs the OpenVINO runtime: pip install 'vit_zoo[openvino]'"
_PRECISION_KEY = ["runtime_options", "INFERENCE_PRECISION_HINT"]


class OpenVINOConversionError(ConversionError):
    """OpenVINO's converter has no rule for an op of the model, or its runtime refuses it."""


@dataclass
class OpenVINOReport:
    """What `openvino` wrote: sizes, names, agreement with Keras on the data given."""

    path: Path
    precision: str
    size_bytes: int  # .xml + .bin
    inputs: list[str]
    outputs: list[str]
    examples: int = 0
    max_relative_error: float | None = None  # max |openvino - keras| / max |keras|
    top1_agreement: float | None = None  # classifiers: share of examples with the same argmax
    runtime_precision: str = ""  # what this CPU runs: bf16 falls back to f32 without support

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.size_bytes / 2**20:.2f} MiB, {self.precision} "
                 f"(runs as {self.runtime_precision} on this CPU), "
                 f"{', '.join(self.inputs)} -> {', '.join(self.outputs)}"]
        if self.examples:
            lines.append(agreement_line(self.examples, self.max_relative_error,
                                        self.top1_agreement))
        return "\n".join(lines)


def _runtime():
    """The openvino module, imported only when OpenVINO is asked for: it is an extra."""
    try:
        import openvino
    except ImportError as error:
        raise ImportError(f"{_INSTALL} ({error})") from error
    return openvino


def _blocking_ops(message: str) -> list[str]:
    """The op types OpenVINO's converter names as having no conversion rule."""
    found = re.search(r"No conversion rule found for operations:\s*([^\n]+)", message)
    return [op.strip() for op in found.group(1).split(",")] if found else []


def _convert(model: keras.Model, spec: tf.TensorSpec, precision: str):
    """The OpenVINO model of `model` with named input and outputs, or a conversion error
    naming the ops that block it."""
    ov = _runtime()
    frozen, names = frozen_outputs(model, spec)
    try:
        converted = ov.convert_model(frozen.graph.as_graph_def(),
                                     output=[tensor.name for tensor in frozen.outputs])
    except Exception as error:
        blocking = _blocking_ops(str(error))
        what = (f"ops OpenVINO has no conversion rule for: {', '.join(blocking)}" if blocking
                else f"{type(error).__name__}: {str(error).strip().splitlines()[-1]}")
        raise OpenVINOConversionError(
            f"{model.name} ({model_kind(model)}) does not convert to OpenVINO: {what}.") from error
    converted.inputs[0].get_tensor().set_names({spec.name})
    for output, name in zip(converted.outputs, names):
        output.get_tensor().set_names({name})
    converted.set_rt_info(precision, _PRECISION_KEY)
    return converted


def openvino(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    precision: str = "f32",
    batch_size: int | None = None,
    validation_data=None,
    threads: int | None = None,
    overwrite: bool = True,
) -> OpenVINOReport:
    """Convert `model` to an OpenVINO IR (`path`, an .xml file, and the .bin beside it).

    Args:
        model: a classifier, a feature extractor (include_top=False) or a CLIP text tower, with
            a fixed input size; every vit_zoo family converts. A CLIPModel is refused.
        path: the .xml file to write (the weights go to the .bin of the same name).
        precision: "f32" or "bf16", the CPU inference precision recorded in the IR.
        batch_size: a fixed batch size for the input; None leaves the batch dimension free.
        validation_data: inputs on which the report compares OpenVINO (at `precision`) with
            the Keras model.
        threads: CPU threads for the validation run (None: OpenVINO's choice).
        overwrite: replace existing files at `path`.
    """
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"{path}: an OpenVINO IR is an .xml file (with a .bin beside it).")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    weights = path.with_suffix(".bin")
    if not overwrite and (path.exists() or weights.exists()):
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    ov = _runtime()
    spec = input_spec(model, batch_size,
                      "openvino(model.{tower}_encoder, 'clip_{tower}.xml')")
    converted = _convert(model, spec, precision)
    try:
        compiled = ov.Core().compile_model(converted, "CPU", _config(precision, threads))
    except Exception as error:
        raise OpenVINOConversionError(f"The OpenVINO CPU plugin cannot compile {model.name} "
                                      f"({model_kind(model)}): {error}") from error
    _save(ov, converted, path)
    report = OpenVINOReport(path, precision, path.stat().st_size + weights.stat().st_size,
                            [spec.name], [output.get_any_name() for output in converted.outputs],
                            runtime_precision=_precision_name(compiled))
    if validation_data is not None:
        data = np.asarray(validation_data)
        fill_agreement(report, _run(compiled, data), model, data)
    return report


def _save(ov, converted, path: Path) -> None:
    """Write the .xml and .bin into a temporary folder beside `path`, then move the weights and
    the graph in: a failure leaves what was there, and a reader finds the .xml only once its
    .bin is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        ov.save_model(converted, str(staging / path.name), compress_to_fp16=False)
        os.replace(staging / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _precision_name(compiled) -> str:
    """"f32" or "bf16": the precision a compiled model really runs at."""
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return "bf16" if "bf16" in hint or "bfloat16" in hint else "f32"


def _config(precision: str, threads: int | None) -> dict:
    config = {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def compile_openvino(path: str | os.PathLike, precision: str | None = None,
                     threads: int | None = None):
    """The compiled CPU model of an exported IR, at `precision` (default: the one recorded at
    export)."""
    ov = _runtime()
    core = ov.Core()
    model = core.read_model(str(path))
    if precision is None:
        precision = (model.get_rt_info(_PRECISION_KEY).astype(str)
                     if model.has_rt_info(_PRECISION_KEY) else "f32")
    return core.compile_model(model, "CPU", _config(precision, threads))


def _run(compiled, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of a compiled one-input model on a batch; a fixed-batch model runs it in
    slices of that size, the last one padded by repeating its last row."""
    (port,) = compiled.inputs
    inputs = np.asarray(inputs, np.int32 if "i32" in str(port.get_element_type()) else np.float32)
    first = port.get_partial_shape()[0]
    request = compiled.create_infer_request()

    def run_batch(batch: np.ndarray) -> list[np.ndarray]:
        results = request.infer({0: batch})
        return [np.array(results[output]) for output in compiled.outputs]

    return in_batches(run_batch, inputs, first.get_length() if first.is_static else None,
                      [output.get_any_name() for output in compiled.outputs])


def run_openvino(path: str | os.PathLike, inputs: np.ndarray, precision: str | None = None,
                 threads: int | None = None) -> np.ndarray:
    """The first output of an exported IR on `inputs`, on the CPU."""
    return _run(compile_openvino(path, precision, threads), inputs)["output_0"]


def openvino_input_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) an exported image model's `images` input takes, to resize images to."""
    model = _runtime().Core().read_model(str(path))
    (port,) = model.inputs
    shape = port.get_partial_shape()
    dims = [dim.get_length() if dim.is_static else None for dim in shape]
    name = "images" if "images" in port.get_names() else port.get_any_name()
    return fixed_image_size(path, name, dims)
