"""Text-side layers of CLIP: token + position embedding, pooling at the end-of-text token."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="vit_zoo")
class TextEmbedding(keras.layers.Layer):
    """int token ids (B, L) -> token embedding + learned position embedding, (B, L, D).

    Variables, in the upstream layouts' shapes: `token_embedding` (vocab_size, D) and
    `position_embedding` (context_length, D). Sequences shorter than `context_length` use the
    first L positions; a checkpoint for a longer context loads its first `context_length`.
    """

    def __init__(self, vocab_size: int, context_length: int, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.context_length = int(context_length)
        self.hidden_dim = int(hidden_dim)

    def build(self, input_shape):
        self.token_embedding = self.add_weight(
            name="token_embedding",
            shape=(self.vocab_size, self.hidden_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        self.position_embedding = self.add_weight(
            name="position_embedding",
            shape=(self.context_length, self.hidden_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.01),
        )

    def call(self, token_ids):
        length = token_ids.shape[1]
        if length is not None and length > self.context_length:
            raise ValueError(
                f"Token sequences of length {length} are longer than the context length "
                f"{self.context_length} this model was built for; tokenize with "
                f"context_length={self.context_length}."
            )
        tokens = ops.take(self.token_embedding, ops.cast(token_ids, "int32"), axis=0)
        positions = self.position_embedding[: ops.shape(token_ids)[1]]
        return ops.cast(tokens + positions, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.hidden_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "context_length": self.context_length,
            "hidden_dim": self.hidden_dim,
        }

    def adapt_checkpoint_value(self, variable, value: np.ndarray) -> np.ndarray:
        """A checkpoint's positions for a longer context, cut to this layer's first
        `context_length` (positions are absolute); anything else is returned unchanged."""
        target = tuple(variable.shape)
        if variable is self.position_embedding and value.shape[1:] == target[1:] \
                and value.shape[0] > target[0]:
            return np.ascontiguousarray(value[: target[0]])
        return value


@keras.saving.register_keras_serializable(package="vit_zoo")
class EndOfTextPooling(keras.layers.Layer):
    """call([tokens (B, L, D), token_ids (B, L)]) -> (B, D): each sequence's token at the
    position of its largest id, which is the end-of-text token in CLIP's vocabulary (49407).

    The row is picked by a one-hot matrix product rather than a gather: exact (products with 0
    and 1), the same on every backend, and made of builtin TFLite ops (ARG_MAX, ONE_HOT,
    BATCH_MATMUL).
    """

    def call(self, inputs):
        tokens, token_ids = inputs
        end_of_text = ops.argmax(token_ids, axis=-1)
        selector = ops.one_hot(end_of_text, ops.shape(tokens)[1], dtype=tokens.dtype)
        return ops.einsum("bl,bld->bd", selector, tokens)

    def compute_output_shape(self, input_shape):
        tokens_shape, _ = input_shape
        return (tokens_shape[0], tokens_shape[-1])
