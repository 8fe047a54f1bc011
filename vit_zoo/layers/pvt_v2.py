"""PVT v2 layers ("PVT v2: Improved Baselines with Pyramid Vision Transformer", Wang et al.
2021): overlapping patch embedding, spatial-reduction attention (strided-conv or linear, i.e.
adaptive-pooled, keys and values), and an MLP with a depth-wise 3x3 convolution.

Every layer works on feature maps (B, H, W, C) rather than token sequences: the convolutions
need the grid, and a dense layer or LayerNorm over the last axis is the same on either. Height
and width may be unknown when the model is built (an input of any size).
"""

from __future__ import annotations

import keras
from keras import ops

from vit_zoo.layers import activations
from vit_zoo.layers.attention import head_major_attention
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.regularization import DropPath

#: LayerNorm epsilon of the patch embeddings and of the reduced keys: the upstream code builds
#: those norms with PyTorch's default (1e-5), the block and stage norms with 1e-6 (numerics).
CONV_NORM_EPSILON = 1e-5


def _rows(dense: keras.layers.Dense, x):
    """A Dense layer on a (B, H, W, C) map, applied as one 2-D matmul over the pixels (the
    TensorFlow backend fuses MatMul + BiasAdd there; a rank-4 Dense goes through tensordot)."""
    shape = ops.shape(x)
    out = dense(ops.reshape(x, (-1, x.shape[-1])))
    return ops.reshape(out, (shape[0], shape[1], shape[2], out.shape[-1]))


def adaptive_pool_matrix(size, bins: int, dtype="float32"):
    """(bins, size) matrix averaging `size` positions into `bins`, as PyTorch's adaptive
    average pooling does: bin i covers [floor(i * size / bins), ceil((i + 1) * size / bins)),
    so bins overlap where `size` is not a multiple of `bins`. `size` may be a tensor."""
    index = ops.arange(bins)
    starts = (index * size) // bins
    ends = -((-(index + 1) * size) // bins)
    positions = ops.arange(size)[None, :]
    inside = ops.logical_and(positions >= starts[:, None], positions < ends[:, None])
    return ops.cast(inside, dtype) / ops.cast(ends - starts, dtype)[:, None]


@keras.saving.register_keras_serializable(package="vit_zoo")
class OverlapPatchEmbedding(keras.layers.Layer):
    """Convolution with a kernel larger than its stride (zero padding kernel // 2 on every
    side), then LayerNorm: (B, H, W, C) -> (B, ceil(H / stride), ceil(W / stride), dim).

    The stem of PVT v2 (7x7, stride 4) and its downsampling between stages (3x3, stride 2).
    Padding is explicit and symmetric, as PyTorch's; Keras's "same" would pad more at the end.
    """

    def __init__(self, patch_size: int, stride: int, hidden_dim: int,
                 norm_epsilon: float = CONV_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.stride = int(stride)
        self.hidden_dim = int(hidden_dim)
        self.norm_epsilon = float(norm_epsilon)

    def build(self, input_shape):
        self.proj = keras.layers.Conv2D(self.hidden_dim, self.patch_size, strides=self.stride,
                                        name="proj", dtype=self.dtype_policy)
        self.norm = LayerNormalization(epsilon=self.norm_epsilon, name="norm",
                                       dtype=self.dtype_policy)
        pad = self.patch_size // 2
        padded = [None if s is None else s + 2 * pad for s in input_shape[1:3]]
        self.proj.build((input_shape[0], *padded, input_shape[-1]))
        self.norm.build((None, self.hidden_dim))

    def call(self, images):
        pad = self.patch_size // 2
        x = ops.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return self.norm(self.proj(x))

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        size = [None if s is None else -(-s // self.stride) for s in (height, width)]
        return (batch, *size, self.hidden_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "stride": self.stride,
            "hidden_dim": self.hidden_dim,
            "norm_epsilon": self.norm_epsilon,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class SpatialReductionAttention(keras.layers.Layer):
    """Multi-head attention of every pixel of a (B, H, W, C) map over a reduced map.

    Queries come from every pixel; keys and values from the map reduced by a `sr_ratio` x
    `sr_ratio` strided convolution + LayerNorm (`sr_ratio` 1: the map itself), or with
    `linear=True` average-pooled to `pool_size` x `pool_size` whatever the input size, then a
    1x1 convolution, LayerNorm and the activation ("linear SRA", PVT v2-li): attention costs
    O(HW * 49) instead of O((HW)^2 / sr^4).
    """

    def __init__(
        self,
        num_heads: int,
        sr_ratio: int = 1,
        linear: bool = False,
        pool_size: int = 7,
        activation: str = "gelu",
        attention_dropout: float = 0.0,
        dropout_rate: float = 0.0,
        norm_epsilon: float = CONV_NORM_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.sr_ratio = int(sr_ratio)
        self.linear = bool(linear)
        self.pool_size = int(pool_size)
        self.activation = activation
        self.activation_fn = activations.get(activation)
        self.attention_dropout = float(attention_dropout)
        self.dropout_rate = float(dropout_rate)
        self.norm_epsilon = float(norm_epsilon)

    @property
    def reduces(self) -> bool:
        """Whether keys and values come from a reduced map (a `sr` conv and `norm` exist)."""
        return self.linear or self.sr_ratio > 1

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        if dim % self.num_heads:
            raise ValueError(f"Width {dim} is not divisible by num_heads={self.num_heads}.")
        self.head_dim = dim // self.num_heads
        self.q = keras.layers.Dense(dim, name="q", dtype=policy)
        self.kv = keras.layers.Dense(2 * dim, name="kv", dtype=policy)
        self.proj = keras.layers.Dense(dim, name="proj", dtype=policy)
        self.attention_drop = keras.layers.Dropout(self.attention_dropout, dtype=policy)
        self.proj_drop = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        for dense in (self.q, self.kv, self.proj):
            dense.build((None, dim))
        if self.reduces:
            kernel = 1 if self.linear else self.sr_ratio
            self.sr = keras.layers.Conv2D(dim, kernel, strides=kernel, name="sr", dtype=policy)
            self.norm = LayerNormalization(epsilon=self.norm_epsilon, name="norm",
                                           dtype=policy)
            self.sr.build((None, None, None, dim))
            self.norm.build((None, dim))

    def _pool(self, x):
        """Adaptive average pooling of (B, H, W, C) to (B, pool, pool, C) as two 2-D matmuls
        with the bin-averaging matrices (constants when H and W are known). Not einsum: with
        an open batch size, TFLite's conversion of these einsums writes tensors of invalid
        shape."""
        batch, height, width, _ = ops.shape(x)
        channels, bins = x.shape[-1], self.pool_size
        # (B, W, C, H) rows @ (H, bins): pool the height
        x = ops.reshape(ops.transpose(x, (0, 2, 3, 1)), (-1, height))
        x = ops.matmul(x, ops.transpose(adaptive_pool_matrix(height, bins, x.dtype)))
        # (B, bins, C, W) rows @ (W, bins): pool the width
        x = ops.transpose(ops.reshape(x, (batch, width, channels, bins)), (0, 3, 2, 1))
        x = ops.matmul(ops.reshape(x, (-1, width)),
                       ops.transpose(adaptive_pool_matrix(width, bins, x.dtype)))
        return ops.transpose(ops.reshape(x, (batch, bins, channels, bins)), (0, 1, 3, 2))

    def _reduced(self, x):
        """The (B, h, w, C) map keys and values are computed from."""
        if self.linear:
            return self.activation_fn(self.norm(self.sr(self._pool(x))))
        if self.sr_ratio > 1:
            return self.norm(self.sr(x))
        return x

    def call(self, x, training=None):
        shape = ops.shape(x)
        batch, dim = shape[0], x.shape[-1]
        heads, head_dim = self.num_heads, self.head_dim
        query = ops.reshape(self.q(ops.reshape(x, (-1, dim))), (batch, -1, heads, head_dim))
        kv = self.kv(ops.reshape(self._reduced(x), (-1, dim)))
        kv = ops.transpose(ops.reshape(kv, (batch, -1, 2, heads, head_dim)), (2, 0, 3, 1, 4))
        key, value = kv[0], kv[1]
        attended, _ = head_major_attention(ops.transpose(query, (0, 2, 1, 3)), key, value,
                                           head_dim**-0.5, self.attention_drop, training)
        attended = ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (-1, dim))
        output = self.proj_drop(self.proj(attended), training=training)
        return ops.reshape(output, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "sr_ratio": self.sr_ratio,
            "linear": self.linear,
            "pool_size": self.pool_size,
            "activation": self.activation,
            "attention_dropout": self.attention_dropout,
            "dropout_rate": self.dropout_rate,
            "norm_epsilon": self.norm_epsilon,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class DepthwiseConvMlp(keras.layers.Layer):
    """fc1 -> (ReLU) -> depth-wise 3x3 conv -> activation -> dropout -> fc2 -> dropout on a
    (B, H, W, C) map. The depth-wise convolution gives the MLP the local position information
    PVT v2 has instead of position embeddings; `extra_relu` is the -li variants' ReLU."""

    def __init__(self, hidden_dim: int, activation: str = "gelu", dropout_rate: float = 0.0,
                 extra_relu: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.activation = activation
        self.activation_fn = activations.get(activation)
        self.dropout_rate = float(dropout_rate)
        self.extra_relu = bool(extra_relu)

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        self.fc1 = keras.layers.Dense(self.hidden_dim, name="fc1", dtype=policy)
        self.dwconv = keras.layers.DepthwiseConv2D(3, padding="same", name="dwconv",
                                                   dtype=policy)
        self.fc2 = keras.layers.Dense(dim, name="fc2", dtype=policy)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        self.fc1.build((None, dim))
        self.dwconv.build((None, None, None, self.hidden_dim))
        self.fc2.build((None, self.hidden_dim))

    def call(self, x, training=None):
        hidden = _rows(self.fc1, x)
        if self.extra_relu:
            hidden = ops.relu(hidden)
        hidden = self.dropout(self.activation_fn(self.dwconv(hidden)), training=training)
        return self.dropout(_rows(self.fc2, hidden), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "activation": self.activation,
            "dropout_rate": self.dropout_rate,
            "extra_relu": self.extra_relu,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class PVTv2Block(keras.layers.Layer):
    """x + SRA(LN(x)), then x + DepthwiseConvMlp(LN(x)), on a (B, H, W, C) map.

    Args:
        num_heads, sr_ratio, linear: the spatial-reduction attention (SpatialReductionAttention).
        mlp_ratio: MLP width over the block width.
        activation, layer_norm_epsilon: the checkpoint's numerics.
        dropout_rate: after the attention projection and inside the MLP; attention_dropout: on
            the attention probabilities; drop_path_rate: stochastic depth of both branches.
    """

    #: A unit of depth: layer-wise learning-rate decay counts these (vit_zoo.structure).
    is_block = True

    def __init__(
        self,
        num_heads: int,
        sr_ratio: int = 1,
        linear: bool = False,
        mlp_ratio: float = 4.0,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-6,
        dropout_rate: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.sr_ratio = int(sr_ratio)
        self.linear = bool(linear)
        self.mlp_ratio = float(mlp_ratio)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout = float(attention_dropout)
        self.drop_path_rate = float(drop_path_rate)

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        self.norm1 = LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1",
                                        dtype=policy)
        self.attn = SpatialReductionAttention(
            self.num_heads, self.sr_ratio, self.linear, activation=self.activation,
            attention_dropout=self.attention_dropout, dropout_rate=self.dropout_rate,
            name="attn", dtype=policy)
        self.norm2 = LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2",
                                        dtype=policy)
        self.mlp = DepthwiseConvMlp(int(dim * self.mlp_ratio), self.activation, self.dropout_rate,
                                    extra_relu=self.linear, name="mlp", dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)
        for layer in (self.norm1, self.attn, self.norm2, self.mlp):
            layer.build(input_shape)

    def call(self, inputs, training=None):
        attended = self.attn(self.norm1(inputs), training=training)
        x = inputs + self.drop_path(attended, training=training)
        mixed = self.mlp(self.norm2(x), training=training)
        return x + self.drop_path(mixed, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "sr_ratio": self.sr_ratio,
            "linear": self.linear,
            "mlp_ratio": self.mlp_ratio,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "dropout_rate": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "drop_path_rate": self.drop_path_rate,
        }
