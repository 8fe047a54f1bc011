"""Image files as the model sees them: decoded to RGB, then the model's evaluation resize, so
that a map computed on the model input lines up with the picture it is drawn on."""

from __future__ import annotations

import os

import keras
import numpy as np

from vit_zoo.inspect.collect import family, vision_model
from vit_zoo.transforms import apply_eval_transform, eval_transform_of


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file decoded to RGB float32 (H, W, 3) in [0, 255] (grey gets three channels,
    alpha is dropped, an animation gives its first frame). Raises OSError (PIL's
    UnidentifiedImageError is one) for a file that is not an image."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype="float32")


def input_size(model: keras.Model) -> tuple[int, int]:
    """The (height, width) images are resized to: the model's fixed input size, or, for a model
    that takes any size, the size its position embeddings were made for."""
    vision = vision_model(model)
    height, width = vision.input_shape[1:3]
    if height is not None and width is not None:
        return int(height), int(width)
    if family(vision) != "vit":
        raise ValueError(f"{vision.name} has no fixed input size to resize images to.")
    layers = {layer.name: layer for layer in vision.layers}
    cell = layers["patch_embed"].patch_size * (layers["stem"].stride if "stem" in layers else 1)
    rows, columns = layers["pos_embed"].grid_size
    return rows * cell, columns * cell


def prepare_image(image: np.ndarray, model: keras.Model) -> np.ndarray:
    """A decoded RGB image (H, W, 3) in [0, 255] -> the model's input (height, width, 3) through
    its evaluation transform (resize, centre crop, interpolation)."""
    resized = apply_eval_transform(np.asarray(image, dtype="float32"), input_size(model),
                                   eval_transform_of(model))
    return keras.ops.convert_to_numpy(resized).astype("float32")


def load_image(path: str | os.PathLike, model: keras.Model) -> np.ndarray:
    """An image file as `model` sees it: RGB float32 (height, width, 3) in [0, 255]."""
    return prepare_image(read_image(path), model)
