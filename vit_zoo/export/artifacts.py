"""Run an exported classifier, whatever its format: `.keras`, SavedModel folder, `.tflite`,
`.onnx`, OpenVINO `.xml`. Used by `vit-zoo predict ARTIFACT IMAGE...`.

Image files are decoded and resized on the host with the same graph ops the SavedModel's
image-bytes signature uses; a SavedModel gets the encoded bytes themselves, so it applies the
evaluation transform recorded at export.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The command line tells artifacts from image files without TensorFlow: one definition, there.
from vit_zoo_cli.checks import artifact_format

FORMATS = ("keras", "saved_model", "tflite", "onnx", "openvino")


def _softmax_if_needed(scores: np.ndarray) -> np.ndarray:
    """Probabilities: rows that already are (non-negative, summing to 1) pass through; logits
    go through a softmax."""
    scores = np.asarray(scores, "float64")
    if scores.min() >= 0 and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3):
        return scores
    scores = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(scores)
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass
class Prediction:
    """Top classes of one image: (label, probability), best first."""

    image: str
    top: list[tuple[str, float]]


def _labels_for(classes: int, labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != classes:
            raise ValueError(f"{len(labels)} labels given for a model with {classes} classes.")
        return list(labels)
    from vit_zoo.imagenet import label_names

    return label_names(classes) or [f"class {index}" for index in range(classes)]


def _decoded(paths: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    from vit_zoo.export.images import decode_images
    from vit_zoo.transforms import WHOLE_IMAGE

    encoded = [Path(path).read_bytes() for path in paths]
    return decode_images(encoded, size, WHOLE_IMAGE).numpy()


def _top(image_paths, probabilities, labels, top) -> list[Prediction]:
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [Prediction(str(path), [(labels[i], float(row[i])) for i in indices])
            for path, row, indices in zip(image_paths, probabilities, order)]


def predict_artifact(
    artifact: str | os.PathLike, images: Sequence[str], *, top: int = 5,
    labels: Sequence[str] | None = None,
) -> list[Prediction]:
    """The top classes of each image file according to a classifier artifact."""
    kind = artifact_format(artifact)
    if kind is None:
        raise ValueError(f"{artifact} is not a model artifact: expected a .keras, .tflite, "
                         ".onnx or OpenVINO .xml file or a SavedModel folder (with "
                         "saved_model.pb).")
    if kind == "saved_model":
        return _predict_saved_model(Path(artifact), images, top, labels)
    if kind == "keras":
        import keras

        import vit_zoo  # noqa: F401  (registers the layers)

        model = keras.saving.load_model(artifact)
        size = tuple(model.input_shape[1:3])
        scores = model.predict(_decoded(images, size), verbose=0)
    elif kind == "tflite":
        from vit_zoo.export.tflite_export import interpreter, run_signature

        runner = interpreter(artifact)
        signature = sorted(runner.get_signature_list())[0]
        detail = next(iter(runner.get_signature_runner(signature).get_input_details().values()))
        size = tuple(int(d) for d in detail["shape"][1:3])
        scores = run_signature(runner, signature, _decoded(images, size))["output_0"]
    elif kind == "openvino":
        from vit_zoo.export.openvino_export import openvino_input_size, run_openvino

        size = openvino_input_size(artifact)
        scores = run_openvino(artifact, _decoded(images, size))
    else:
        from vit_zoo.export.onnx_export import onnx_input_size, run_onnx

        size = onnx_input_size(artifact)
        scores = run_onnx(artifact, _decoded(images, size))
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"{artifact} is not a classifier: its output has shape {scores.shape}.")
    return _top(images, _softmax_if_needed(scores), _labels_for(scores.shape[1], labels), top)


def _predict_saved_model(folder: Path, images, top: int, labels) -> list[Prediction]:
    import tensorflow as tf

    signatures = tf.saved_model.load(str(folder)).signatures
    if "predict_image_bytes" not in signatures:
        raise ValueError(f"{folder} has no predict_image_bytes signature (signatures: "
                         f"{', '.join(sorted(signatures))}); export it with "
                         "vit_zoo.export.saved_model.")
    encoded = tf.constant([Path(path).read_bytes() for path in images])
    outputs = signatures["predict_image_bytes"](image_bytes=encoded)
    probabilities = outputs["probabilities"].numpy()
    if labels is None and "top_k_labels" in outputs:
        names = outputs["top_k_labels"].numpy()
        indices = outputs["top_k_indices"].numpy()
        known = {int(i): n.decode() for row_i, row_n in zip(indices, names)
                 for i, n in zip(row_i, row_n)}
        labels = [known.get(i, f"class {i}") for i in range(probabilities.shape[1])]
    return _top(images, probabilities, _labels_for(probabilities.shape[1], labels), top)
