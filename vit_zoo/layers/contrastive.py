"""CLIP's similarity head: normalized embeddings, a learned temperature, logits over the batch."""

from __future__ import annotations

import math

import keras
from keras import ops


def gather_across_replicas(values):
    """Concatenate `values` (a tensor or a nest of them) from every replica along axis 0.

    Identity with one replica, outside a replica context, and on backends other than TensorFlow.

    Under tf.distribute (MirroredStrategy, TPUStrategy) each replica sees its own slice of the
    batch; contrastive learning wants every other example of the global batch as a negative.
    TensorFlow's all_gather is differentiable: its gradient sums the upstream gradient over
    replicas and hands each replica the rows it contributed. Under JAX, Keras's data
    parallelism already presents the global batch to the model, so there is nothing to do.
    """
    if keras.backend.backend() != "tensorflow":
        return values
    # Imported here, not at module level: model code must stay importable without TensorFlow.
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_gather(values, axis=0)


@keras.saving.register_keras_serializable(package="vit_zoo")
class ClipValue(keras.constraints.Constraint):
    """Keeps a weight inside [min_value, max_value] after every optimizer step."""

    def __init__(self, min_value: float, max_value: float):
        self.min_value = float(min_value)
        self.max_value = float(max_value)

    def __call__(self, w):
        return ops.clip(w, self.min_value, self.max_value)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value}


@keras.saving.register_keras_serializable(package="vit_zoo")
class ContrastiveLogits(keras.layers.Layer):
    """(image_embeddings, text_embeddings) -> (logits_per_image, logits_per_text).

    Both embeddings are L2-normalized and compared by cosine similarity times exp(logit_scale).
    `logit_scale` starts at log(1 / 0.07) and is kept in [0, log(100)] after each update (the
    temperature clamp of CLIP training; the forward pass uses exp(logit_scale) as is, as the
    OpenAI model does). Under a distribution strategy both embeddings are gathered first, so every
    replica holds the same global-batch matrix: the loss on it, which Keras divides by the number
    of replicas, then gives exactly the one-device gradients, because all_gather's gradient sums
    over replicas. (For the same reason `predict` under a multi-replica strategy concatenates one
    global matrix per replica; for inference call the model, or its towers, directly.)
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(1.0 / 0.07),
        max_logit_scale: float = math.log(100.0),
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # logits of a softmax over the batch: keep float32
        super().__init__(**kwargs)
        self.init_logit_scale = float(init_logit_scale)
        self.max_logit_scale = float(max_logit_scale)

    def build(self, input_shape):
        self.logit_scale = self.add_weight(
            name="logit_scale",
            shape=(),
            initializer=keras.initializers.Constant(self.init_logit_scale),
            constraint=ClipValue(0.0, self.max_logit_scale),
        )

    def call(self, inputs):
        image_embeddings, text_embeddings = inputs
        image_embeddings = _l2_normalize(ops.cast(image_embeddings, "float32"))
        text_embeddings = _l2_normalize(ops.cast(text_embeddings, "float32"))
        scale = ops.exp(self.logit_scale)
        # One collective for both; replicas may hold different batch sizes (a partial last batch).
        all_images, all_texts = gather_across_replicas((image_embeddings, text_embeddings))
        logits_per_image = scale * ops.matmul(all_images, ops.transpose(all_texts))
        logits_per_text = ops.transpose(logits_per_image)
        return logits_per_image, logits_per_text

    def compute_output_shape(self, input_shape):
        image_shape, text_shape = input_shape
        return (image_shape[0], text_shape[0]), (text_shape[0], image_shape[0])

    def get_config(self):
        return {
            **super().get_config(),
            "init_logit_scale": self.init_logit_scale,
            "max_logit_scale": self.max_logit_scale,
        }


def _l2_normalize(x):
    # As open_clip's F.normalize(x, dim=-1): x / max(||x||, eps).
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, 1e-12)
