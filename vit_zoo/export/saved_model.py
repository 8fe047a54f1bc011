"""SavedModel export with a serving signature TF Serving can call as is.

`saved_model(model, "saved_models/vit_b16/1")` writes the version folder TF Serving expects
under its model base path. The `serving_default` signature takes `images`, float32
(batch, height, width, 3) RGB in [0, 255] (the models normalize inside), and returns
`probabilities` (and `logits` for a model that ends in logits).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf


def saved_model(model: keras.Model, path: str | os.PathLike, logits: bool = False) -> Path:
    """Write `model` as a SavedModel at `path` (a version folder such as saved_models/m/1).

    Args:
        logits: the model outputs logits; the signature then returns softmax
            `probabilities` and the `logits`. Otherwise the output is returned as
            `probabilities`.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty; TF Serving versions are "
                              "immutable, export to a new version number.")
    height, width = model.input_shape[1:3]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        scores = model(images, training=False)
        if logits:
            return {"probabilities": tf.nn.softmax(tf.cast(scores, tf.float32)), "logits": scores}
        return {"probabilities": scores}

    signature = [tf.TensorSpec((None, height, width, 3), tf.float32, name="images")]
    archive.add_endpoint("serving_default", serve, input_signature=signature)
    archive.write_out(str(path), verbose=False)
    return path
