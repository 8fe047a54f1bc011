"""Encoded image bytes -> model input, in TensorFlow graph ops (served signatures, CLI)."""

from __future__ import annotations

import tensorflow as tf

from vit_zoo.transforms import EvalTransform, apply_eval_transform


def decode_images(image_bytes, size: tuple[int, int], transform: EvalTransform) -> tf.Tensor:
    """A vector of JPEG/PNG/GIF/BMP bytes (N,) -> float32 RGB (N, height, width, 3) in [0, 255].

    Grey images get three channels and alpha is dropped (decode with channels=3); animated GIFs
    give their first frame. Each image is resized and center-cropped by `transform`. Bytes that
    are no image fail with TensorFlow's InvalidArgument ("Unknown image file format ...").
    """
    height, width = size

    def one(encoded):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image = tf.ensure_shape(image, (None, None, 3))
        return apply_eval_transform(tf.cast(image, tf.float32), size, transform)

    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    return tf.map_fn(one, image_bytes,
                     fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32))
