"""What every family's builder shares: keras.applications-style input and head handling."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import keras

from vit_zoo import numerics as nm
from vit_zoo.numerics import Numerics


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
            "Convert grayscale images with keras.ops.image.grayscale_to_rgb or by repeating "
            "the channel three times."
        )
    if input_tensor is None:
        images = keras.Input(shape=input_shape, name=name)
        return images, images
    if keras.backend.is_keras_tensor(input_tensor):
        return input_tensor, keras.utils.get_source_inputs(input_tensor)
    images = keras.Input(tensor=input_tensor, shape=input_shape, name=name)
    return images, images


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


def normalization(numerics: Numerics, name: str = "preprocessing") -> keras.layers.Layer:
    """RGB in [0, 255] -> the checkpoint's normalization, as a Keras Normalization layer."""
    mean = [255.0 * m for m in numerics.mean]
    variance = [(255.0 * s) ** 2 for s in numerics.std]
    return keras.layers.Normalization(mean=mean, variance=variance, name=name)


def classifier(classes: int, activation, name: str = "head") -> keras.layers.Dense:
    """The classification head: zero-initialized, as upstream fine-tuning starts it."""
    # float32 even under a mixed-precision policy: softmax over many classes wants the range.
    return keras.layers.Dense(
        classes, activation=activation, kernel_initializer="zeros", name=name, dtype="float32"
    )



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
