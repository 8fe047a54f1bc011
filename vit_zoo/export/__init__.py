"""Deployment: SavedModel for TF Serving, TFLite (LiteRT) for phones and edge devices, ONNX.

    vit_zoo.export.saved_model(model, "saved_models/vit_b16/1")
    vit_zoo.export.serving_config("saved_models")
    vit_zoo.export.tflite(model, "vit_b16.tflite", quantize="dynamic_int8")
    vit_zoo.export.onnx(model, "vit_b16.onnx", validation_data=images)   # vit_zoo[onnx]
    vit_zoo.export.openvino(model, "vit_b16.xml", precision="bf16")      # vit_zoo[openvino]

Each format lives in its own module (savedmodel_export, tflite_export, onnx_export,
openvino_export), so the functions above hide no module of the same name. `vit_zoo.serving`
is the client for the SavedModels once TF Serving serves them.
"""

from vit_zoo.export.onnx_export import OnnxConversionError, OnnxReport, onnx, run_onnx
from vit_zoo.export.openvino_export import (
    OpenVINOConversionError,
    OpenVINOReport,
    compile_openvino,
    openvino,
    run_openvino,
)
from vit_zoo.export.savedmodel_export import saved_model, write_warmup_requests
from vit_zoo.export.serving_config import served_models, serving_config
from vit_zoo.export.signatures import model_kind, serving_functions
from vit_zoo.export.tflite_export import (
    ConversionError,
    TFLiteReport,
    interpreter,
    run_signature,
    tflite,
)

__all__ = [
    "ConversionError",
    "OnnxConversionError",
    "OnnxReport",
    "OpenVINOConversionError",
    "OpenVINOReport",
    "TFLiteReport",
    "compile_openvino",
    "interpreter",
    "model_kind",
    "onnx",
    "openvino",
    "run_onnx",
    "run_openvino",
    "run_signature",
    "saved_model",
    "served_models",
    "serving_config",
    "serving_functions",
    "tflite",
    "write_warmup_requests",
]
