"""Multi-head self-attention with one fused query/key/value projection."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def attention_probabilities(query, key, scale: float):
    """softmax(q k^T * scale) for (B, T, H, Dh) inputs, as (B, H, T, S), in float32."""
    logits = ops.einsum("bthd,bshd->bhts", query, key) * scale
    return ops.softmax(ops.cast(logits, "float32"), axis=-1)


def causal_mask(length: int, dtype="float32"):
    """(length, length) additive mask: 0 on and below the diagonal, -1e9 above it.

    A static float constant rather than a boolean mask built from strided slices: added to the
    logits it needs only an ADD, which every TFLite runtime has (builtin ops only).
    """
    return np.triu(np.full((length, length), -1e9, dtype=dtype), k=1)


def head_major_attention(query, key, value, scale: float, dropout=None, training=None, mask=None,
                         mask_groups: int = 1):
    """Attention over head-major (B, H, N, Dh) tensors; returns (output, probabilities).

    The one attention core of the package: global self-attention (MultiHeadSelfAttention) and
    Swin's window attention both call it. The scale is applied to the queries (N x Dh) rather
    than to the logits (N x N). `mask`, if given, is added to the logits: broadcast to
    (B, H, N, N), or with `mask_groups` = G > 1 a (G, H, N, N) mask per run of G consecutive
    batch entries (Swin: one per window of an image, for its shifted-window regions).
    """
    logits = ops.einsum("bhqd,bhkd->bhqk", query * ops.cast(scale, query.dtype), key)
    if mask is not None and mask_groups > 1:
        heads, length, keys = logits.shape[1], logits.shape[2], logits.shape[3]
        logits = ops.reshape(logits, (-1, mask_groups, heads, length, keys))
        logits = ops.reshape(logits + ops.cast(mask, logits.dtype), (-1, heads, length, keys))
    elif mask is not None:
        logits = logits + ops.cast(mask, logits.dtype)
    probabilities = ops.softmax(logits, axis=-1)
    weights = dropout(probabilities, training=training) if dropout is not None else probabilities
    return ops.matmul(weights, value), probabilities


@keras.saving.register_keras_serializable(package="vit_zoo")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Self-attention over (B, N, D) tokens.

    One Dense computes queries, keys and values together (kernel (D, 3D), column blocks q | k | v,
    heads contiguous inside each block): one large matmul instead of three. The attention itself
    is `keras.ops.dot_product_attention` where the backend has a fused kernel for it (JAX, torch)
    and head-major batched matmuls on TensorFlow, where that is faster.
    `call(..., return_attention_scores=True)` also returns the attention probabilities
    (B, heads, N, N); that path is only traced when asked for, so it costs nothing otherwise.
    `causal=True` lets each token attend only to itself and earlier tokens (CLIP's text tower).
    """

    def __init__(
        self,
        num_heads: int,
        use_bias: bool = True,
        attention_dropout: float = 0.0,
        kernel_initializer="glorot_uniform",
        causal: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.use_bias = use_bias
        self.attention_dropout = float(attention_dropout)
        self.causal = bool(causal)
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
        batch, length, dim = ops.shape(tokens)[0], ops.shape(tokens)[1], tokens.shape[-1]
        # Projections on (B * N, D) rows: a plain 2-D MatMul + BiasAdd, fused by the backend.
        rows = ops.reshape(tokens, (-1, dim))
        qkv = ops.reshape(self.qkv(rows), (batch, length, 3, self.num_heads, self.head_dim))
        scale = self.head_dim**-0.5
        explicit = return_attention_scores or (training and self.attention_dropout > 0)
        if explicit or keras.backend.backend() == "tensorflow":
            # One transpose to head-major (3, B, H, N, Dh), then batched matmuls. TensorFlow's
            # dot_product_attention is two einsums over (B, N, H, Dh) that each transpose
            # internally: ~30% slower on CPU (benchmarks/vit_inference.py).
            query, key, value = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), axis=0)
            attended, probabilities = head_major_attention(
                query, key, value, scale, self.dropout, training, self._mask(length)
            )
            attended = ops.transpose(attended, (0, 2, 1, 3))
        else:  # JAX and torch map this to fused (flash / cuDNN / SDPA) kernels
            query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
            attended = ops.dot_product_attention(
                query, key, value, scale=scale, is_causal=self.causal
            )
        output = ops.reshape(self.proj(ops.reshape(attended, (-1, dim))), (batch, length, dim))
        if return_attention_scores:
            return output, ops.cast(probabilities, "float32")
        return output

    def _mask(self, length):
        """The additive causal mask for `length` tokens, or None for full attention."""
        if not self.causal:
            return None
        if isinstance(length, int):  # the usual case (CLIP: 77 tokens): a constant of the graph
            return causal_mask(length)
        positions = ops.arange(length)
        above_diagonal = ops.expand_dims(positions, 0) > ops.expand_dims(positions, 1)
        return ops.where(above_diagonal, -1e9, 0.0)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "use_bias": self.use_bias,
            "attention_dropout": self.attention_dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "causal": self.causal,
        }
