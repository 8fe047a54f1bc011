"""SavedModel export in TF Serving's `<base>/<model_name>/<version>/` layout.

    vit_zoo.export.saved_model(model, "saved_models/vit_b16/1")

Signatures (see `vit_zoo.export.signatures` for each kind of model):
- classifier: `serving_default` / `predict` (float32 `images` (N, H, W, 3), RGB in [0, 255]) and
  `predict_image_bytes` (tf.string `image_bytes` (N,), JPEG/PNG/GIF/BMP) -> `probabilities`,
  `logits`, `top_k_indices`, `top_k_scores`, `top_k_labels` (when the class names are known);
- feature extractor: `serving_default` / `features` and `features_image_bytes` -> `features`
  (or `features_<i>` for a model with several outputs, e.g. Swin's stage maps);
- CLIP: `encode_image`, `encode_image_image_bytes`, `encode_text` (raw strings, tokenized in the
  graph with core TensorFlow ops) -> `embeddings`, `normalized_embeddings`; with labels also
  `zero_shot` and `zero_shot_image_bytes` (the default then) -> `probabilities`, `logits`, the
  top k and `labels`.

The version folder is written next to its final place and renamed into it only when complete:
TF Serving, which polls the base path, never sees half a model, and a failed export leaves what
was there before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vit_zoo.export.signatures import ServingFunctions, serving_functions
from vit_zoo.transforms import EvalTransform

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def _version_folder(path: str | os.PathLike, overwrite: bool) -> Path:
    path = Path(path)
    if not path.name.isdigit():
        raise ValueError(
            f"{path} is not a version folder: TF Serving loads <base>/<model_name>/<version>/ "
            f"with a numeric version, e.g. {path / '1'}."
        )
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is a file, not a version folder.")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{path} exists and is not empty. TF Serving versions are immutable: export to a "
            "new version number (vit_zoo.train.demo.next_version(base) gives the next one), or "
            "pass overwrite=True to replace it."
        )
    return path


def saved_model(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    top_k: int = 5,
    labels: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    transform: EvalTransform | None = None,
    warmup: bool = False,
) -> Path:
    """Write `model` as a SavedModel into the version folder `path` (e.g. saved_models/m/1).

    Args:
        model: any vit_zoo model: a classifier, a feature extractor (include_top=False), a
            CLIPModel, or a CLIP text tower. Its images must have a fixed size.
        overwrite: replace an existing, non-empty version folder.
        top_k: how many classes the top-k outputs list.
        labels: classifier: one name per class (default: ImageNet-1k / -21k names for heads of
            that size). CLIP: the zero-shot classes; adds the `zero_shot` signatures.
        templates: CLIP zero-shot prompt templates, each with one "{}" (default
            "a photo of a {}."); the class embeddings are computed here, once.
        transform: resize/crop of the image-bytes signatures; default: the evaluation transform
            of the registered weights the model was built with, else the whole image, bilinear.
        warmup: write TF Serving warm-up requests (one per signature) to
            assets.extra/tf_serving_warmup_requests; needs `pip install vit_zoo[serving]`.
    Returns:
        The version folder.
    """
    path = _version_folder(path, overwrite)
    served = serving_functions(model, top_k=top_k, labels=labels, templates=templates,
                               transform=transform)
    if warmup:
        _serving_apis()  # fail before any work if the package is missing
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, function in served.functions.items():
            tokenizer = getattr(function, "tokenizer", None)
            if tokenizer is not None:
                archive.track(tokenizer)
            archive.add_endpoint(name, function)
        archive.add_endpoint("serving_default", served.functions[served.default])
        archive.write_out(str(staging), verbose=False)
        if warmup:
            write_warmup_requests(staging, served, path.parent.name)
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return path


def _serving_apis():
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError as error:
        raise ImportError("TF Serving warm-up requests need tensorflow-serving-api: "
                          "pip install 'vit_zoo[serving]'") from error
    return model_pb2, predict_pb2, prediction_log_pb2


def write_warmup_requests(folder: str | os.PathLike, served: ServingFunctions,
                          model_name: str) -> Path:
    """One PredictRequest per signature (a zero image, a grey PNG, a short text) in TF Serving's
    warm-up file, so the server runs each graph once at load, not on the first real request."""
    model_pb2, predict_pb2, prediction_log_pb2 = _serving_apis()
    target = Path(folder) / WARMUP_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    names = {**{name: name for name in served.functions}, "serving_default": served.default}
    with tf.io.TFRecordWriter(str(target)) as writer:
        for signature, function_name in names.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in served.example_inputs[function_name].items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return target
