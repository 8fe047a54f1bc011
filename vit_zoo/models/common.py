"""What every family's builder shares: the steps around its own layers (open the weights, pick
the numerics, make the input; then build the model and load), and keras.applications-style
input and head handling.

Every builder reads the same way:

    arch = decode_variant(variant)
    start = common.start(FAMILY, arch.variant, weights, TRANSLATORS, LAYOUT_NUMERICS, numerics,
                         input_tensor, input_shape, default_size=...)
    x = common.normalization(start.numerics)(start.images) ...   # the family's own layers
    outputs = common.classifier(start.classes(classes), classifier_activation)(x)
    return start.finish(outputs, name)
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers.head import ClassifierHead
from vit_zoo.numerics import Numerics
from vit_zoo.weights.checkpoint import Checkpoint, Translators, open_checkpoint
from vit_zoo.weights.loading import load_checkpoint


def image_input(input_tensor, input_shape, default_size: tuple[int, int], name: str = "images"):
    """The model input, as keras.applications makes it.

    Returns (input_layer_tensor, inputs_for_model). `input_shape` may have None for height and
    width (a model for any size); channels must be 3 (RGB).
    """
    if input_shape is None:
        if input_tensor is not None and getattr(input_tensor, "shape", None) is not None:
            input_shape = tuple(input_tensor.shape[1:])
        else:
            input_shape = (*default_size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, 3), got {input_shape}. "
            "Pass the shape of one image without the batch dimension."
        )
    if input_shape[-1] != 3:
        raise ValueError(
            f"input_shape must have 3 channels (RGB), got {input_shape[-1]} in {input_shape}. "
            "Convert grayscale images by repeating the channel three times, e.g. "
            "keras.ops.repeat(images, 3, axis=-1)."
        )
    if input_tensor is None:
        images = keras.Input(shape=input_shape, name=name)
        return images, images
    if keras.backend.is_keras_tensor(input_tensor):
        return input_tensor, keras.utils.get_source_inputs(input_tensor)
    images = keras.Input(tensor=input_tensor, shape=input_shape, name=name)
    return images, images


@dataclass
class Start:
    """A build under way: the opened weights, the numerics they call for, the image input."""

    checkpoint: Checkpoint | None
    numerics: Numerics
    images: keras.KerasTensor  # the image tensor the family's layers start from
    inputs: object  # what keras.Model takes as its inputs

    @property
    def size(self) -> tuple[int | None, int | None]:
        """(height, width) of the input; None where the model takes any size."""
        return self.images.shape[1], self.images.shape[2]

    def fixed_size(self, reason: str) -> tuple[int, int]:
        """(height, width), or an error saying why this family needs a fixed size."""
        height, width = self.size
        if height is None or width is None:
            raise ValueError(f"{reason}; pass input_shape=(height, width, 3), got "
                             f"{tuple(self.images.shape[1:])}.")
        return height, width

    def classes(self, requested: int | None) -> int:
        """The head size: the caller's, else the checkpoint's, else ImageNet's 1000."""
        from_weights = self.checkpoint.head_size(requested) if self.checkpoint else requested
        return from_weights or 1000

    def finish_stages(self, stages: list, include_top: bool, pooling: str | None,
                      classes: int | None, classifier_activation, name: str) -> keras.Model:
        """A pyramid's model (Swin, Swin V2, PVT v2): the stage feature maps themselves, or the
        last one averaged ("avg") and, with `include_top`, classified."""
        if not (include_top or pooling == "avg"):
            return self.finish(stages, name)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(stages[-1])
        if include_top:
            x = classifier(self.classes(classes), classifier_activation)(x)
        return self.finish(x, name)

    def finish(self, outputs, name: str) -> keras.Model:
        """The model over the input, with the weights loaded (checked first, all or nothing)."""
        model = keras.Model(self.inputs, outputs, name=name)
        if self.checkpoint is not None:
            load_checkpoint(model, self.checkpoint)
        return model


def start(
    family: str,
    variant: str,
    weights: str | os.PathLike | None,
    translators: Translators,
    layout_numerics: dict,
    numerics: Numerics | None,
    input_tensor,
    input_shape,
    default_size: int | Callable[[Checkpoint | None], int],
    default_numerics: Numerics = nm.GOOGLE,
) -> Start:
    """The steps before a family's own layers: open `weights` (a tag or a file), resolve the
    numerics (the caller's, the checkpoint's, its layout's, the family's default), and make
    the image input, square at `default_size` (a number, or a function of the checkpoint)
    unless `input_shape` / `input_tensor` say otherwise."""
    checkpoint = open_checkpoint(weights, family, variant, translators)
    numerics = resolve_numerics(numerics, checkpoint, layout_numerics, default_numerics)
    size = default_size(checkpoint) if callable(default_size) else default_size
    images, inputs = image_input(input_tensor, input_shape, (size, size))
    return Start(checkpoint, numerics, images, inputs)


def record_resolution(checkpoint: Checkpoint | None) -> int | None:
    """The resolution the checkpoint's registry record was trained at, if it says."""
    return checkpoint.record.resolution if checkpoint and checkpoint.record else None


class CallTap(keras.layers.Layer):
    """Calls a wrapped layer with fixed keyword arguments, sharing all its variables.

    A Keras functional graph fixes each layer's output structure at its first call; a tap gives
    another structure (e.g. `return_attention_scores=True`) a layer of its own. Taps are for
    analysis models built on top of a trained one and are not meant to be saved.
    """

    def __init__(self, layer: keras.layers.Layer, **call_kwargs):
        super().__init__(name=f"{layer.name}_tap")
        self.layer = layer
        self.call_kwargs = call_kwargs

    def call(self, inputs):
        return self.layer(inputs, **self.call_kwargs)


def normalization(numerics: Numerics, name: str = names.PREPROCESSING) -> keras.layers.Layer:
    """RGB in [0, 255] -> the checkpoint's normalization, as a Keras Normalization layer."""
    mean = [255.0 * m for m in numerics.mean]
    variance = [(255.0 * s) ** 2 for s in numerics.std]
    return keras.layers.Normalization(mean=mean, variance=variance, name=name)


def classifier(classes: int, activation, name: str = names.HEAD,
               role: str = "class") -> ClassifierHead:
    """The classification head (zero-initialized, float32), for the labels or, with
    role="distillation", for a DeiT teacher."""
    return ClassifierHead(classes, role=role, activation=activation, name=name)



def named_builder(build: Callable[..., keras.Model], variant, name: str, doc: str):
    """`build(variant, ...)` with the variant filled in, e.g. ViT_B16 = ViT("B/16", ...); keeps
    `build`'s signature (minus `variant`) for help() and IDEs."""

    def builder(*args, **kwargs) -> keras.Model:
        return build(variant, *args, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    signature = inspect.signature(build)
    builder.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return builder


def resolve_numerics(
    requested: Numerics | None, checkpoint, layout_defaults: dict, default: Numerics = nm.GOOGLE
) -> Numerics:
    """The numerics a model is built with: the caller's, else the checkpoint's own (registry
    record or .keras file), else its file layout's default, else the family's `default`."""
    if requested is not None:
        return requested
    if checkpoint is None:
        return default
    return checkpoint.numerics or layout_defaults.get(checkpoint.layout, default)
