"""Multi-head self-attention with one fused query/key/value projection."""

from __future__ import annotations

import keras
from keras import ops


def attention_probabilities(query, key, scale: float):
    """softmax(q k^T * scale) for (B, T, H, Dh) inputs, as (B, H, T, S), in float32."""
    logits = ops.einsum("bthd,bshd->bhts", query, key) * scale
    return ops.softmax(ops.cast(logits, "float32"), axis=-1)


@keras.saving.register_keras_serializable(package="vit_zoo")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Self-attention over (B, N, D) tokens.

    One Dense computes queries, keys and values together (kernel (D, 3D), column blocks q | k | v,
    heads contiguous inside each block): one large matmul instead of three. The attention itself
    is `keras.ops.dot_product_attention`, which each backend maps to its fastest kernel.
    `call(..., return_attention_scores=True)` also returns the attention probabilities
    (B, heads, N, N); that path is only traced when asked for, so it costs nothing otherwise.
    """

    def __init__(
        self,
        num_heads: int,
        use_bias: bool = True,
        attention_dropout: float = 0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.use_bias = use_bias
        self.attention_dropout = float(attention_dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(
                f"Token width {dim} is not divisible by num_heads={self.num_heads}."
            )
        self.head_dim = dim // self.num_heads
        self.qkv = keras.layers.Dense(
            3 * dim,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            name="qkv",
            dtype=self.dtype_policy,
        )
        self.proj = keras.layers.Dense(
            dim, kernel_initializer=self.kernel_initializer, name="proj", dtype=self.dtype_policy
        )
        self.dropout = keras.layers.Dropout(self.attention_dropout, dtype=self.dtype_policy)
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def call(self, tokens, training=None, return_attention_scores=False):
        batch, length = ops.shape(tokens)[0], ops.shape(tokens)[1]
        qkv = ops.reshape(self.qkv(tokens), (batch, length, 3, self.num_heads, self.head_dim))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scale = self.head_dim**-0.5
        probabilities = None
        if return_attention_scores or (training and self.attention_dropout > 0):
            probabilities = attention_probabilities(query, key, scale)
            weights = ops.cast(self.dropout(probabilities, training=training), value.dtype)
            attended = ops.einsum("bhts,bshd->bthd", weights, value)
        else:
            attended = ops.dot_product_attention(query, key, value, scale=scale)
        output = self.proj(ops.reshape(attended, (batch, length, self.num_heads * self.head_dim)))
        if return_attention_scores:
            return output, probabilities
        return output

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "use_bias": self.use_bias,
            "attention_dropout": self.attention_dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
