"""XCiT layers ("XCiT: Cross-Covariance Image Transformers", El-Nouby et al. 2021).

Cross-covariance attention (XCA) attends over channels instead of tokens: per head, a
(d x d) softmax of the L2-normalized queries and keys' cross-covariance mixes the value
channels, so its cost grows linearly with the number of tokens. Local patch interaction (two
depthwise 3x3 convolutions) lets neighbouring patches talk, a fixed Fourier position encoding
(computed from the grid, projected by a learned 1x1 convolution) locates them, a stride-2
convolution stem embeds them, and two class-attention blocks (CaiT) read the class token out.

The XCA blocks work on the patch grid (B, H, W, C); any H and W, also unknown ones (None).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from vit_zoo.layers import activations
from vit_zoo.layers.attention import head_major_attention
from vit_zoo.layers.mlp import Mlp
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.regularization import DropPath, LayerScale

#: BatchNorm epsilon of the stem and the local patch interaction (PyTorch's default, which the
#: released weights were trained with); it is not part of a checkpoint's numerics.
BATCH_NORM_EPSILON = 1e-5
#: Guard of the L2 normalization of queries and keys (torch.nn.functional.normalize's).
_NORMALIZE_EPSILON = 1e-12


def _batch_norm(name: str, epsilon: float, policy) -> keras.layers.BatchNormalization:
    # Keras' momentum is the weight of the old running value: PyTorch's 0.1 is Keras' 0.9.
    return keras.layers.BatchNormalization(epsilon=epsilon, momentum=0.9, name=name,
                                           dtype=policy)


def _grid_shape(grid) -> tuple:
    """(batch, height, width) of a (B, H, W, C) tensor: Python ints where known."""
    dynamic = ops.shape(grid)
    return tuple(grid.shape[i] if grid.shape[i] is not None else dynamic[i] for i in range(3))


@keras.saving.register_keras_serializable(package="vit_zoo")
class ConvPatchEmbedding(keras.layers.Layer):
    """(B, H, W, 3) -> (B, ceil(H / p), ceil(W / p), D) by log2(p) stride-2 3x3 convolutions.

    Each convolution is bias-free, zero-pads one pixel on every side (PyTorch's padding=1, not
    Keras' asymmetric "same") and is followed by BatchNorm; the activation sits between them.
    Widths double up to `hidden_dim`: D/8, D/4, D/2, D for 16 px patches, D/4, D/2, D for 8.
    """

    def __init__(self, patch_size: int, hidden_dim: int, activation: str = "gelu",
                 batch_norm_epsilon: float = BATCH_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        if patch_size not in (8, 16):
            raise ValueError(f"XCiT's convolutional patch embedding takes 8 or 16 px patches, "
                             f"got {patch_size}.")
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.activation = activation
        self.activation_fn = activations.get(activation)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.depth = int(math.log2(self.patch_size))

    def build(self, input_shape):
        policy, channels = self.dtype_policy, input_shape[-1]
        self.convs, self.norms = [], []
        for index in range(self.depth):
            width = self.hidden_dim // 2 ** (self.depth - 1 - index)
            conv = keras.layers.Conv2D(width, 3, strides=2, use_bias=False,
                                       name=f"conv_{index}", dtype=policy)
            norm = _batch_norm(f"bn_{index}", self.batch_norm_epsilon, policy)
            conv.build((None, None, None, channels))
            norm.build((None, None, None, width))
            self.convs.append(conv)
            self.norms.append(norm)
            channels = width

    def call(self, images, training=None):
        x = images
        for index, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if index:
                x = self.activation_fn(x)
            x = norm(conv(ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])), training=training)
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        grid = [None if s is None else -(-s // self.patch_size) for s in (height, width)]
        return (batch, grid[0], grid[1], self.hidden_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "activation": self.activation,
            "batch_norm_epsilon": self.batch_norm_epsilon,
        }


def fourier_features(length, hidden_dim: int, temperature: float):
    """(length, hidden_dim) sinusoids of positions 1..length scaled to (0, 2 pi]: channel pairs
    (sin, cos) at frequencies temperature^(-2k / hidden_dim), k = 0 .. hidden_dim / 2 - 1.

    `length` may be a tensor (an input size unknown until run time).
    """
    positions = ops.cast(ops.arange(1, length + 1), "float32")
    # 1e-6 keeps XCiT's arithmetic (positions / (last + eps)) for parity with its weights.
    positions = positions / (ops.cast(length, "float32") + 1e-6) * (2 * math.pi)
    pairs = np.arange(hidden_dim // 2, dtype="float32")
    periods = (temperature ** (2 * pairs / hidden_dim)).astype("float32")
    angles = positions[:, None] / periods[None, :]
    return ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (-1, hidden_dim))


@keras.saving.register_keras_serializable(package="vit_zoo")
class FourierPositionEncoding(keras.layers.Layer):
    """Adds XCiT's position encoding to a (B, H, W, D) patch grid, computed for its size.

    The encoding of patch (i, j) is a 1x1 convolution (`token_projection`, 2 * hidden_dim ->
    D) of [row features of i, column features of j] (`fourier_features`). The projection is
    split into its row and column halves, so the cost is (H + W) x D, not H x W x D. Its
    parameters are never weight-decayed (timm's `no_weight_decay` for XCiT).
    """

    def __init__(self, hidden_dim: int = 32, temperature: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.temperature = float(temperature)

    def build(self, input_shape):
        self.token_projection = keras.layers.Dense(input_shape[-1], name="token_projection",
                                                   dtype=self.dtype_policy)
        self.token_projection.build((None, 2 * self.hidden_dim))

    def encoding(self, height, width):
        """(1, H, W, D) encoding of an H x W grid."""
        kernel = ops.cast(self.token_projection.kernel, "float32")
        rows = ops.matmul(fourier_features(height, self.hidden_dim, self.temperature),
                          kernel[: self.hidden_dim])
        columns = ops.matmul(fourier_features(width, self.hidden_dim, self.temperature),
                             kernel[self.hidden_dim:])
        bias = ops.cast(self.token_projection.bias, "float32")
        return (rows[:, None, :] + columns[None, :, :] + bias)[None]

    def call(self, grid):
        _, height, width = _grid_shape(grid)
        return grid + ops.cast(self.encoding(height, width), grid.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim,
                "temperature": self.temperature}

    def no_weight_decay(self) -> list:
        return [self.token_projection.kernel, self.token_projection.bias]


def _l2_normalize(x, axis: int = -1):
    norm = ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True))
    return x / ops.maximum(norm, _NORMALIZE_EPSILON)


@keras.saving.register_keras_serializable(package="vit_zoo")
class CrossCovarianceAttention(keras.layers.Layer):
    """XCA on (B, N, C) tokens: per head, softmax(temperature * q_hat k_hat^T) over the
    (d x d) cross-covariance of queries and keys L2-normalized along the tokens, applied to
    the value channels. Linear in N. `temperature` is one learned scale per head, stored as
    (heads, 1, 1) like the checkpoints; being of rank 3 it is weight-decayed, as timm's
    optimizer factory decays it (XCA's own `no_weight_decay` list is never read there)."""

    def __init__(self, num_heads: int, attention_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.attention_dropout = float(attention_dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"Token width {dim} is not divisible by num_heads={self.num_heads}.")
        self.head_dim = dim // self.num_heads
        self.temperature = self.add_weight(name="temperature", shape=(self.num_heads, 1, 1),
                                           initializer="ones")
        self.qkv = keras.layers.Dense(3 * dim, name="qkv", dtype=self.dtype_policy)
        self.proj = keras.layers.Dense(dim, name="proj", dtype=self.dtype_policy)
        self.dropout = keras.layers.Dropout(self.attention_dropout, dtype=self.dtype_policy)
        self.qkv.build((None, dim))
        self.proj.build((None, dim))

    def call(self, tokens, training=None):
        batch, length, dim = ops.shape(tokens)[0], ops.shape(tokens)[1], tokens.shape[-1]
        qkv = ops.reshape(self.qkv(ops.reshape(tokens, (-1, dim))),
                          (batch, length, 3, self.num_heads, self.head_dim))
        # Channel-major (3, B, heads, d, N): the channels are the "queries" here.
        query, key, value = ops.unstack(ops.transpose(qkv, (2, 0, 3, 4, 1)), axis=0)
        query = _l2_normalize(query) * ops.cast(self.temperature, query.dtype)
        attended, _ = head_major_attention(query, _l2_normalize(key), value, 1.0, self.dropout,
                                           training)
        attended = ops.reshape(ops.transpose(attended, (0, 3, 1, 2)), (-1, dim))
        return ops.reshape(self.proj(attended), (batch, length, dim))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "attention_dropout": self.attention_dropout}


@keras.saving.register_keras_serializable(package="vit_zoo")
class LocalPatchInteraction(keras.layers.Layer):
    """(B, H, W, C) -> depthwise 3x3 conv -> activation -> BatchNorm -> depthwise 3x3 conv:
    each patch mixes with its 8 neighbours, channel by channel (zero padding at the borders)."""

    def __init__(self, activation: str = "gelu",
                 batch_norm_epsilon: float = BATCH_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        self.activation_fn = activations.get(activation)
        self.batch_norm_epsilon = float(batch_norm_epsilon)

    def build(self, input_shape):
        policy, shape = self.dtype_policy, (None, None, None, input_shape[-1])
        self.conv1 = keras.layers.DepthwiseConv2D(3, padding="same", name="conv1", dtype=policy)
        self.bn = _batch_norm("bn", self.batch_norm_epsilon, policy)
        self.conv2 = keras.layers.DepthwiseConv2D(3, padding="same", name="conv2", dtype=policy)
        for layer in (self.conv1, self.bn, self.conv2):
            layer.build(shape)

    def call(self, grid, training=None):
        x = self.bn(self.activation_fn(self.conv1(grid)), training=training)
        return self.conv2(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "activation": self.activation,
                "batch_norm_epsilon": self.batch_norm_epsilon}


class _ResidualBlock(keras.layers.Layer):
    """What the two XCiT blocks share: their arguments and x + DropPath(gamma * branch)."""

    #: A unit of depth: layer-wise learning-rate decay counts these (vit_zoo.structure).
    is_block = True

    def __init__(
        self,
        num_heads: int,
        mlp_dim: int,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-6,
        layer_scale_init: float = 1.0,
        dropout_rate: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.layer_scale_init = float(layer_scale_init)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout = float(attention_dropout)
        self.drop_path_rate = float(drop_path_rate)

    def _parts(self, policy):
        """The norms, MLP, layer scales and regularizers both blocks have."""
        self.norm1 = LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1",
                                        dtype=policy)
        self.norm2 = LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2",
                                        dtype=policy)
        self.mlp = Mlp(self.mlp_dim, self.activation, self.dropout_rate, name="mlp",
                       dtype=policy)
        self.gamma1 = LayerScale(self.layer_scale_init, name="gamma1", dtype=policy)
        self.gamma2 = LayerScale(self.layer_scale_init, name="gamma2", dtype=policy)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)

    def _residual(self, inputs, branch, gamma, training):
        return inputs + self.drop_path(gamma(branch), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "layer_scale_init": self.layer_scale_init,
            "dropout_rate": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "drop_path_rate": self.drop_path_rate,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class XCABlock(_ResidualBlock):
    """On the patch grid (B, H, W, C), each branch scaled by its own LayerScale:
    x + XCA(LN(x)), then x + LPI(LN(x)), then x + MLP(LN(x)).

    Args:
        num_heads, mlp_dim, activation, layer_norm_epsilon: as in the ViT encoder block.
        layer_scale_init: initial value of the three LayerScales (XCiT: 1 for 12 blocks,
            1e-5 for 24).
        dropout_rate: after the attention projection and inside the MLP; attention_dropout:
            on the (d x d) attention; drop_path_rate: stochastic depth of every branch.
        batch_norm_epsilon: of the local patch interaction's BatchNorm.
    """

    def __init__(self, num_heads: int, mlp_dim: int,
                 batch_norm_epsilon: float = BATCH_NORM_EPSILON, **kwargs):
        super().__init__(num_heads, mlp_dim, **kwargs)
        self.batch_norm_epsilon = float(batch_norm_epsilon)

    def build(self, input_shape):
        policy, dim = self.dtype_policy, input_shape[-1]
        self._parts(policy)
        self.attn = CrossCovarianceAttention(self.num_heads, self.attention_dropout, name="attn",
                                             dtype=policy)
        # "norm3" / "gamma3" guard the local patch interaction, as in the checkpoints.
        self.norm3 = LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm3",
                                        dtype=policy)
        self.local_mp = LocalPatchInteraction(self.activation, self.batch_norm_epsilon,
                                              name="local_mp", dtype=policy)
        self.gamma3 = LayerScale(self.layer_scale_init, name="gamma3", dtype=policy)
        grid = (None, None, None, dim)
        for layer in (self.norm1, self.norm2, self.norm3, self.mlp, self.gamma1, self.gamma2,
                      self.gamma3, self.local_mp):
            layer.build(grid)
        self.attn.build((None, None, dim))

    def call(self, grid, training=None):
        batch, height, width = _grid_shape(grid)
        dim = grid.shape[-1]
        tokens = ops.reshape(self.norm1(grid), (batch, -1, dim))
        attended = self.dropout(self.attn(tokens, training=training), training=training)
        x = self._residual(grid, ops.reshape(attended, (batch, height, width, dim)), self.gamma1,
                           training)
        x = self._residual(x, self.local_mp(self.norm3(x), training=training), self.gamma3,
                           training)
        return self._residual(x, self.mlp(self.norm2(x), training=training), self.gamma2,
                              training)

    def get_config(self):
        return {**super().get_config(), "batch_norm_epsilon": self.batch_norm_epsilon}


@keras.saving.register_keras_serializable(package="vit_zoo")
class ClassAttention(keras.layers.Layer):
    """(B, 1 + N, C) -> (B, 1, C): the class token (first) attends to all tokens (CaiT)."""

    def __init__(self, num_heads: int, attention_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.attention_dropout = float(attention_dropout)

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        self.head_dim = dim // self.num_heads
        # Separate projections, as in the checkpoints: the query is made for one token only.
        self.q, self.k, self.v, self.proj = (
            keras.layers.Dense(dim, name=name, dtype=policy) for name in ("q", "k", "v", "proj"))
        for layer in (self.q, self.k, self.v, self.proj):
            layer.build((None, dim))
        self.dropout = keras.layers.Dropout(self.attention_dropout, dtype=policy)

    def _heads(self, x, batch):
        return ops.transpose(ops.reshape(x, (batch, -1, self.num_heads, self.head_dim)),
                             (0, 2, 1, 3))

    def call(self, tokens, training=None):
        batch, dim = ops.shape(tokens)[0], tokens.shape[-1]
        rows = ops.reshape(tokens, (-1, dim))
        query = self._heads(self.q(tokens[:, 0]), batch)
        key, value = self._heads(self.k(rows), batch), self._heads(self.v(rows), batch)
        attended, _ = head_major_attention(query, key, value, self.head_dim**-0.5, self.dropout,
                                           training)
        return ops.reshape(self.proj(ops.reshape(attended, (-1, dim))), (batch, 1, dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "attention_dropout": self.attention_dropout}


@keras.saving.register_keras_serializable(package="vit_zoo")
class ClassAttentionBlock(_ResidualBlock):
    """Class-attention block on (B, 1 + N, C), class token first, as XCiT's checkpoints run it:

        n = LN1(x);  x = x + gamma1 * [CA(n), n_patches]
        x = LN2(x) (every token if `tokens_norm`, else the class token only)
        x = x + [gamma2 * MLP(x_cls), x_patches]

    so the patch tokens change too (they matter for average pooling and feature outputs).
    Arguments as XCABlock, plus `tokens_norm`.
    """

    def __init__(self, num_heads: int, mlp_dim: int, tokens_norm: bool = True, **kwargs):
        super().__init__(num_heads, mlp_dim, **kwargs)
        self.tokens_norm = bool(tokens_norm)

    def build(self, input_shape):
        policy, dim = self.dtype_policy, input_shape[-1]
        self._parts(policy)
        self.attn = ClassAttention(self.num_heads, self.attention_dropout, name="attn",
                                   dtype=policy)
        for layer in (self.norm1, self.norm2, self.mlp, self.gamma1, self.gamma2, self.attn):
            layer.build((None, None, dim))

    def call(self, tokens, training=None):
        normed = self.norm1(tokens)
        attended = self.dropout(self.attn(normed, training=training), training=training)
        x = self._residual(tokens, ops.concatenate([attended, normed[:, 1:]], axis=1),
                           self.gamma1, training)
        if self.tokens_norm:
            x = self.norm2(x)
        else:
            x = ops.concatenate([self.norm2(x[:, :1]), x[:, 1:]], axis=1)
        cls = self.gamma2(self.mlp(x[:, :1], training=training))
        return x + self.drop_path(ops.concatenate([cls, x[:, 1:]], axis=1), training=training)

    def get_config(self):
        return {**super().get_config(), "tokens_norm": self.tokens_norm}
