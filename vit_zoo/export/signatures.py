"""The serving functions of an exported model, one set per kind of model.

A model is one of four kinds, told apart by its structure (`model_kind`):
- "classifier": ends in a classification head -> probabilities, logits and the top k;
- "features": a backbone built with include_top=False -> its pooled embedding, token sequence
  or stage maps;
- "clip": a `vit_zoo.CLIPModel` -> image and text embeddings, zero-shot over labels;
- "text": a CLIP text tower alone -> text embeddings of raw strings.

Every image function has a twin that takes encoded JPEG/PNG/GIF/BMP bytes and applies the
checkpoint's evaluation transform inside the graph. The functions are plain `tf.function`s; the
SavedModel writer registers them as signatures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from vit_zoo import names
from vit_zoo.export.images import decode_images
from vit_zoo.transforms import EvalTransform, eval_transform_of

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def model_kind(model: keras.Model) -> str:
    """"clip", "text", "classifier" or "features" (see the module doc)."""
    from vit_zoo.models.clip import CLIPModel

    if isinstance(model, CLIPModel):
        return "clip"
    if len(model.inputs) == 1 and "int" in str(model.inputs[0].dtype):
        return "text"
    if any(layer.name == names.HEAD for layer in model.layers) and len(model.outputs) == 1:
        return "classifier"
    return "features"


def image_size(model: keras.Model) -> tuple[int, int]:
    """The fixed (height, width) a model's images must have; an error for a dynamic-size model,
    whose exported bytes signature would not know what size to resize to."""
    images = model.image_encoder if hasattr(model, "image_encoder") else model
    height, width = images.input_shape[1:3]
    if height is None or width is None:
        raise ValueError(
            f"{model.name} takes images of any size (input shape {images.input_shape}); "
            "SavedModel and ONNX export need a fixed size (the image-bytes signatures resize "
            "to it). Build it with "
            "input_shape=(height, width, 3) and the same weights= (position embeddings are "
            "resampled on load), and export that; TFLite export takes any-size models.")
    return height, width


def class_labels(model: keras.Model, labels: Sequence[str] | None) -> list[str] | None:
    """The class names a classifier's top-k outputs are labelled with: `labels` if given (their
    count must match the head), the ImageNet-1k / -21k names for a head of that size, else None.
    """
    classes = model.output_shape[-1]
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != classes:
            raise ValueError(f"{len(labels)} labels given for a model with {classes} classes; "
                             "give one name per class, in class-index order.")
        return labels
    from vit_zoo.imagenet import label_names

    return label_names(classes)


@dataclass
class ServingFunctions:
    """The functions to export: name -> tf.function with an input signature. `default` names the
    one served as `serving_default`; `example_inputs` gives one valid input per function (for
    TF Serving warm-up requests)."""

    functions: dict[str, Callable]
    default: str
    example_inputs: dict[str, dict[str, np.ndarray]]


# Float image inputs are declared with an unknown shape and checked in the graph: a served
# session does not check a feed against the signature's shape, and a declared static shape
# would let the graph optimizer fold the checks away. A wrong shape then fails with a message
# that says what was expected instead of a broadcast error deep inside the model.
_IMAGES_SPEC = tf.TensorSpec(None, tf.float32, name="images")


def _checked_images(images, size: tuple[int, int]):
    height, width = size
    shape = tf.shape(images)
    padded = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)  # any rank compares safely
    valid = tf.logical_and(tf.equal(tf.size(shape), 4),
                           tf.reduce_all(tf.equal(padded[1:4], [height, width, 3])))
    check = tf.debugging.Assert(valid, [
        f"images must be float32 (N, {height}, {width}, 3), RGB in [0, 255]; resize them to "
        f"{height}x{width}, or send encoded images to the *_image_bytes signature, which "
        "resizes them. Got shape:", shape], summarize=4)
    with tf.control_dependencies([check]):
        return tf.ensure_shape(images, (None, height, width, 3))


def _takes_images(function: Callable, size: tuple[int, int]):
    """A tf.function of `function(images)` that checks the images' shape first."""
    return tf.function(lambda images: function(_checked_images(images, size)),
                       input_signature=[_IMAGES_SPEC])


_BYTES_SPEC = tf.TensorSpec((None,), tf.string, name="image_bytes")
_TEXT_SPEC = tf.TensorSpec((None,), tf.string, name="texts")


def _png_example(size: tuple[int, int]) -> np.ndarray:
    """One encoded PNG (a mid-grey image of the model's size), for warm-up requests."""
    image = tf.fill((*size, 3), tf.constant(128, tf.uint8))
    return np.array([tf.io.encode_png(image).numpy()], dtype=object)


def _from_bytes(function: Callable, size, transform) -> Callable:
    def from_bytes(image_bytes):
        return function(decode_images(image_bytes, size, transform))

    return from_bytes


def _with_bytes_twins(functions: dict, examples: dict, size, transform) -> None:
    """Add an image-bytes twin of every function that takes float images: "<name>_image_bytes",
    and "predict_image_bytes" for "predict"."""
    for name, function in list(functions.items()):
        if "images" not in examples[name]:
            continue
        twin = "predict_image_bytes" if name == "predict" else f"{name}_image_bytes"

        functions[twin] = tf.function(_from_bytes(function, size, transform),
                                      input_signature=[_BYTES_SPEC])
        examples[twin] = {"image_bytes": _png_example(size)}


def _top_k(scores, k: int, labels: Sequence[str] | None) -> dict[str, tf.Tensor]:
    top = tf.math.top_k(scores, k=k)
    outputs = {"top_k_indices": top.indices, "top_k_scores": top.values}
    if labels is not None:
        outputs["top_k_labels"] = tf.gather(tf.constant(list(labels)), top.indices)
    return outputs


def _logits_and_probabilities(model: keras.Model) -> Callable:
    """images -> (logits or None, probabilities), whatever activation ends the head."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if activation is keras.activations.softmax:
        before = keras.Model(model.inputs, last.input)  # shares the model's layers

        def softmax_head(images):
            features = tf.cast(before(images, training=False), tf.float32)
            if isinstance(last, keras.layers.Dense):
                logits = tf.matmul(features, tf.cast(last.kernel, tf.float32))
                if last.use_bias:
                    logits += tf.cast(last.bias, tf.float32)
            else:  # an Activation layer after the logits (DeiT's two averaged heads)
                logits = features
            return logits, tf.nn.softmax(logits)

        return softmax_head
    linear = activation in (None, keras.activations.linear)

    def other_head(images):
        scores = tf.cast(model(images, training=False), tf.float32)
        return (scores, tf.nn.softmax(scores)) if linear else (None, scores)

    return other_head


def classifier_functions(
    model: keras.Model, top_k: int, labels: Sequence[str] | None, transform: EvalTransform
) -> ServingFunctions:
    size = image_size(model)
    labels = class_labels(model, labels)
    k = min(top_k, model.output_shape[-1])
    head = _logits_and_probabilities(model)

    def predict(images):
        logits, probabilities = head(images)
        outputs = {"probabilities": probabilities, **_top_k(probabilities, k, labels)}
        if logits is not None:
            outputs["logits"] = logits
        return outputs

    functions = {"predict": _takes_images(predict, size)}
    examples = {"predict": {"images": np.zeros((1, *size, 3), np.float32)}}
    _with_bytes_twins(functions, examples, size, transform)
    return ServingFunctions(functions, "predict", examples)


def feature_functions(model: keras.Model, transform: EvalTransform) -> ServingFunctions:
    size = image_size(model)

    def features(images):
        outputs = model(images, training=False)
        if isinstance(outputs, dict):
            return {name: tf.cast(value, tf.float32) for name, value in outputs.items()}
        if isinstance(outputs, (list, tuple)):  # Swin's stage maps, a hybrid's stem stages
            return {f"features_{i}": tf.cast(value, tf.float32) for i, value in enumerate(outputs)}
        return {"features": tf.cast(outputs, tf.float32)}

    functions = {"features": _takes_images(features, size)}
    examples = {"features": {"images": np.zeros((1, *size, 3), np.float32)}}
    _with_bytes_twins(functions, examples, size, transform)
    return ServingFunctions(functions, "features", examples)


def _embeddings(values) -> dict[str, tf.Tensor]:
    values = tf.cast(values, tf.float32)
    return {"embeddings": values, "normalized_embeddings": tf.math.l2_normalize(values, axis=-1)}


def _text_function(text_encoder: keras.Model):
    from vit_zoo.text import CLIPTokenizer

    tokenizer = CLIPTokenizer(context_length=text_encoder.input_shape[1]).graph

    def encode_text(texts):
        return _embeddings(text_encoder(tokenizer(texts), training=False))

    function = tf.function(encode_text, input_signature=[_TEXT_SPEC])
    function.tokenizer = tokenizer  # a resource the SavedModel writer must track
    return function


def text_functions(model: keras.Model) -> ServingFunctions:
    encode_text = _text_function(model)
    return ServingFunctions({"encode_text": encode_text}, "encode_text",
                            {"encode_text": {"texts": np.array([b"a photo of a cat."], object)}})


def clip_functions(
    model, top_k: int, labels: Sequence[str] | None, templates: Sequence[str] | None,
    transform: EvalTransform,
) -> ServingFunctions:
    from vit_zoo.zero_shot import zero_shot_classifier

    size = image_size(model)
    encode_text = _text_function(model.text_encoder)

    def encode_image(images):
        return _embeddings(model.image_encoder(images, training=False))

    functions = {
        "encode_image": _takes_images(encode_image, size),
        "encode_text": encode_text,
    }
    examples = {"encode_image": {"images": np.zeros((1, *size, 3), np.float32)},
                "encode_text": {"texts": np.array([b"a photo of a cat."], object)}}
    default = "encode_image"
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) < 2:
            raise ValueError(f"Zero-shot export needs at least two labels, got {labels}.")
        # The class embeddings are computed once, here, and stored in the graph as a constant.
        classes = tf.constant(zero_shot_classifier(model, labels, templates or DEFAULT_TEMPLATES))
        scale = float(np.exp(keras.ops.convert_to_numpy(model.logit_scale)))
        k = min(top_k, len(labels))

        def zero_shot(images):
            image = tf.math.l2_normalize(
                tf.cast(model.image_encoder(images, training=False), tf.float32), axis=-1)
            logits = scale * tf.matmul(image, classes)
            probabilities = tf.nn.softmax(logits)
            rows = tf.shape(images)[0]
            return {"probabilities": probabilities, "logits": logits,
                    **_top_k(probabilities, k, labels),
                    "labels": tf.tile(tf.constant(labels)[tf.newaxis], [rows, 1])}

        functions["zero_shot"] = _takes_images(zero_shot, size)
        examples["zero_shot"] = {"images": np.zeros((1, *size, 3), np.float32)}
        default = "zero_shot"
    _with_bytes_twins(functions, examples, size, transform)
    return ServingFunctions(functions, default, examples)


def serving_functions(
    model: keras.Model,
    *,
    top_k: int = 5,
    labels: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    transform: EvalTransform | None = None,
) -> ServingFunctions:
    """The serving functions of `model` for its kind (see the module doc)."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}.")
    kind = model_kind(model)
    transform = transform or eval_transform_of(model)
    if kind != "clip" and templates is not None:
        raise ValueError("templates are for CLIP zero-shot export; this model is a " + kind)
    if kind == "classifier":
        return classifier_functions(model, top_k, labels, transform)
    if labels is not None and kind != "clip":
        raise ValueError(f"labels name a classifier's classes, and {model.name} has no "
                         "classification head (it is a feature extractor or a text tower).")
    if kind == "features":
        return feature_functions(model, transform)
    if kind == "text":
        return text_functions(model)
    return clip_functions(model, top_k, labels, templates, transform)
