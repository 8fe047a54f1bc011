"""MViT v2 layers ("MViTv2: Improved Multiscale Vision Transformers for Classification and
Detection", Li et al. 2022): pooling attention with decomposed relative positions and residual
pooling, and the multiscale block around it.

Tokens travel as (B, T, C) sequences, T = an optional class token + H * W. Every layer is built
for one feature-map size (H, W): pooled sizes and relative-position indices are constants of
the graph. Pooling is a depthwise convolution (queries, keys, values) or a max pool (the
shortcut) over a map padded by kernel // 2 on every side, as PyTorch pads; TensorFlow's "same"
padding puts the extra row at the end instead, which shifts every strided window.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vit_zoo.layers.attention import head_major_attention
from vit_zoo.layers.mlp import Mlp
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.regularization import DropPath


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, np.integer)) else (
        int(value[0]), int(value[1]))


def pooled_size(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]):
    """(h, w) after pooling a (H, W) map with `kernel`, `stride` and padding kernel // 2."""
    return tuple((s + 2 * (k // 2) - k) // t + 1 for s, k, t in zip(size, kernel, stride))


def relative_distance_index(query_size: int, key_size: int) -> np.ndarray:
    """(query_size, key_size) rows of a relative-position table along one axis.

    Query i and key j sit at i * max(k/q, 1) and j * max(q/k, 1) on the finer of the two grids;
    their offset, shifted to be non-negative, indexes a table of 2 * max(q, k) - 1 rows. Computed
    in float32 and truncated, as timm does it.
    """
    query_ratio = np.float32(max(key_size / query_size, 1.0))
    key_ratio = np.float32(max(query_size / key_size, 1.0))
    distance = (np.arange(query_size, dtype="float32")[:, None] * query_ratio
                - np.arange(key_size, dtype="float32")[None, :] * key_ratio)
    distance += np.float32((key_size - 1) * key_ratio)
    return distance.astype("int64")


def resize_relative_table(table: np.ndarray, length: int) -> np.ndarray:
    """A (L, C) relative-position table linearly resampled to (length, C) with half-sample
    centres (PyTorch's `interpolate(mode="linear")`), which timm applies when it loads MViT v2
    weights at another resolution. Runs once, at load time, in numpy."""
    source = table.shape[0]
    if source == length:
        return table
    position = np.maximum((np.arange(length) + 0.5) * (source / length) - 0.5, 0.0)
    left = np.floor(position).astype("int64")
    right = np.minimum(left + 1, source - 1)
    weight = (position - left)[:, None]
    values = table.astype("float64")
    return ((1.0 - weight) * values[left] + weight * values[right]).astype(table.dtype)


def _edge_pad(x, pad: tuple[int, int]):
    """Repeat the first and last rows and columns of a (B, H, W, C) map `pad` times.

    Max pooling over edge copies equals max pooling over PyTorch's -inf padding (each window
    that reaches into the padding also holds the edge it copies), with plain slices and a
    concat that every TFLite runtime has.
    """
    if pad[0]:
        x = ops.concatenate([x[:, :1]] * pad[0] + [x] + [x[:, -1:]] * pad[0], axis=1)
    if pad[1]:
        x = ops.concatenate([x[:, :, :1]] * pad[1] + [x] + [x[:, :, -1:]] * pad[1], axis=2)
    return x


@keras.saving.register_keras_serializable(package="vit_zoo")
class PoolingAttention(keras.layers.Layer):
    """Multi-head attention whose queries, keys and values are pooled maps.

    Input (B, T, C); output (B, T_q, output_dim) with T_q the class token (if any) plus the
    pooled query map. Queries, keys and values are each pooled per head by a depthwise
    convolution shared across heads (`pool_q`, `pool_k`, `pool_v`, then a LayerNorm over the
    head dimension); none where kernel and stride are both 1. The logits get decomposed
    relative positions (q . R_h[i_h, j_h] + q . R_w[i_w, j_w] from two (L, head_dim) tables,
    `rel_pos_h` and `rel_pos_w`), the output adds the pooled queries back (residual pooling).
    The tables are never weight-decayed (timm's `no_weight_decay`), and a checkpoint's tables
    for another input size are resampled on load (`adapt_checkpoint_value`).
    """

    def __init__(
        self,
        num_heads: int,
        output_dim: int,
        resolution: tuple[int, int],
        kernel: tuple[int, int] = (3, 3),
        stride_q: tuple[int, int] = (1, 1),
        stride_kv: tuple[int, int] = (1, 1),
        class_token: bool = False,
        layer_norm_epsilon: float = 1e-6,
        attention_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.output_dim = int(output_dim)
        self.resolution = _pair(resolution)
        self.kernel = _pair(kernel)
        self.stride_q = _pair(stride_q)
        self.stride_kv = _pair(stride_kv)
        self.class_token = bool(class_token)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.attention_dropout = float(attention_dropout)
        if self.output_dim % self.num_heads:
            raise ValueError(f"Attention width {self.output_dim} is not divisible by "
                             f"num_heads={self.num_heads}.")
        self.head_dim = self.output_dim // self.num_heads
        self.query_resolution = self._pooled(self.stride_q)
        self.key_resolution = self._pooled(self.stride_kv)
        # One table row per offset that a query and a key of these grids can have.
        self.table_lengths = tuple(2 * max(q, k) - 1 for q, k in
                                   zip(self.query_resolution, self.key_resolution))
        # Static token counts: reshapes that name them keep every shape known when traced
        # with a dynamic batch (TFLite export), where a -1 would leave the length unknown.
        prefix = int(self.class_token)
        self.input_length = prefix + self.resolution[0] * self.resolution[1]
        self.output_length = prefix + self.query_resolution[0] * self.query_resolution[1]

    def _pooled(self, stride):
        return pooled_size(self.resolution, self.kernel, stride)

    def _pools(self, stride) -> bool:
        """timm skips pooling (and its norm) where both the kernel and the stride are 1x1."""
        return self.kernel != (1, 1) or stride != (1, 1)

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        self.qkv = keras.layers.Dense(3 * self.output_dim, name="qkv", dtype=policy)
        self.proj = keras.layers.Dense(self.output_dim, name="proj", dtype=policy)
        self.qkv.build((None, dim))
        self.proj.build((None, self.output_dim))
        padded = tuple(s + 2 * (k // 2) for s, k in zip(self.resolution, self.kernel))
        self.pool_q = self.pool_k = self.pool_v = None
        self.norm_q = self.norm_k = self.norm_v = None
        for part, stride in (("q", self.stride_q), ("k", self.stride_kv), ("v", self.stride_kv)):
            if not self._pools(stride):
                continue
            pool = keras.layers.DepthwiseConv2D(
                self.kernel, strides=stride, padding="valid", use_bias=False,
                name=f"pool_{part}", dtype=policy)
            norm = LayerNormalization(epsilon=self.layer_norm_epsilon, name=f"norm_{part}",
                                      dtype=policy)
            pool.build((None, *padded, self.head_dim))
            norm.build((None, self.head_dim))
            setattr(self, f"pool_{part}", pool)
            setattr(self, f"norm_{part}", norm)
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.rel_pos_h = self.add_weight(
            name="rel_pos_h", shape=(self.table_lengths[0], self.head_dim), initializer=initializer)
        self.rel_pos_w = self.add_weight(
            name="rel_pos_w", shape=(self.table_lengths[1], self.head_dim), initializer=initializer)
        self.dropout = keras.layers.Dropout(self.attention_dropout, dtype=policy)
        (qh, qw), (kh, kw) = self.query_resolution, self.key_resolution
        self.index_h = relative_distance_index(qh, kh).reshape(-1)
        self.index_w = relative_distance_index(qw, kw).reshape(-1)

    def _pool(self, x, part: str, size: tuple[int, int]):
        """(B, heads, T, head_dim) -> the same with the map part pooled to `size`, normalized."""
        pool, norm = getattr(self, f"pool_{part}"), getattr(self, f"norm_{part}")
        if pool is None:
            return x
        batch = ops.shape(x)[0]
        prefix = None
        if self.class_token:
            prefix, x = x[:, :, :1], x[:, :, 1:]
        (height, width), (ph, pw) = self.resolution, (self.kernel[0] // 2, self.kernel[1] // 2)
        x = ops.reshape(x, (-1, height, width, self.head_dim))
        x = pool(ops.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]]))
        x = ops.reshape(x, (batch, self.num_heads, size[0] * size[1], self.head_dim))
        if prefix is not None:
            x = ops.concatenate([prefix, x], axis=2)
        return norm(x)

    def relative_bias(self, query):
        """(B, heads, T_q, T_k) logit bias from the pooled (unscaled) queries: for query
        (i_h, i_w) and key (j_h, j_w), q . R_h[i_h, j_h] + q . R_w[i_w, j_w]."""
        (qh, qw), (kh, kw), dim = self.query_resolution, self.key_resolution, self.head_dim
        batch = ops.shape(query)[0]
        if self.class_token:
            query = query[:, :, 1:]
        grid = ops.reshape(query, (-1, qh, qw, dim))  # (B * heads, qh, qw, dim)
        table_h = ops.take(ops.cast(self.rel_pos_h, query.dtype), self.index_h, axis=0)
        table_w = ops.take(ops.cast(self.rel_pos_w, query.dtype), self.index_w, axis=0)
        rows = ops.einsum("nijc,ikc->nijk", grid, ops.reshape(table_h, (qh, kh, dim)))
        columns = ops.einsum("nijc,jkc->nijk", grid, ops.reshape(table_w, (qw, kw, dim)))
        bias = ops.reshape(rows, (-1, kh, 1)) + ops.reshape(columns, (-1, 1, kw))
        bias = ops.reshape(bias, (batch, self.num_heads, qh * qw, kh * kw))
        if self.class_token:  # the class token's row and column carry no position
            bias = ops.pad(bias, [[0, 0], [0, 0], [1, 0], [1, 0]])
        return bias

    def call(self, tokens, training=None):
        batch, dim = ops.shape(tokens)[0], tokens.shape[-1]
        qkv = self.qkv(ops.reshape(tokens, (-1, dim)))
        qkv = ops.reshape(qkv, (batch, self.input_length, 3, self.num_heads, self.head_dim))
        query, key, value = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), axis=0)
        query = self._pool(query, "q", self.query_resolution)
        key = self._pool(key, "k", self.key_resolution)
        value = self._pool(value, "v", self.key_resolution)
        attended, _ = head_major_attention(
            query, key, value, self.head_dim**-0.5, self.dropout, training,
            self.relative_bias(query))
        attended = ops.transpose(attended + query, (0, 2, 1, 3))  # residual pooling
        output = self.proj(ops.reshape(attended, (-1, self.output_dim)))
        return ops.reshape(output, (batch, self.output_length, self.output_dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_length, self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "output_dim": self.output_dim,
            "resolution": self.resolution,
            "kernel": self.kernel,
            "stride_q": self.stride_q,
            "stride_kv": self.stride_kv,
            "class_token": self.class_token,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "attention_dropout": self.attention_dropout,
        }

    def no_weight_decay(self) -> list:
        return [self.rel_pos_h, self.rel_pos_w]

    def adapt_checkpoint_value(self, variable, value: np.ndarray) -> np.ndarray:
        """A checkpoint's relative-position table for another input size, resampled as timm
        does; anything else is returned unchanged for the loader to report."""
        if variable is not self.rel_pos_h and variable is not self.rel_pos_w:
            return value
        if value.ndim != 2 or value.shape[1] != variable.shape[1]:
            return value
        return resize_relative_table(value, variable.shape[0])


@keras.saving.register_keras_serializable(package="vit_zoo")
class MultiScaleBlock(keras.layers.Layer):
    """LN -> pooling attention -> residual, LN -> MLP -> residual, on (B, T, C) tokens.

    The first block of a stage changes the map size (`stride_q`) and the width: with
    `expand_attention` (MViTv2-T/S/B) the attention already outputs `output_dim` and the
    shortcut is a Dense on the normalized input (`shortcut_proj_attn`); otherwise (MViTv2-L)
    the MLP does, and the shortcut around it is `shortcut_proj_mlp`. A strided block max-pools
    its shortcut (kernel stride + 1) to the query map.

    Args:
        output_dim: width of the output tokens.
        num_heads: attention heads.
        resolution: (H, W) of the input map.
        stride_q, stride_kv: pooling strides of the queries (the output map) and keys/values.
        kernel: pooling kernel of queries, keys and values.
        expand_attention: where the width changes, as above.
        class_token: the first token is a class token, left out of every pooling.
        mlp_ratio, activation, layer_norm_epsilon, dropout_rate, attention_dropout,
        drop_path_rate: as in the ViT encoder block.
    """

    #: A unit of depth: layer-wise learning-rate decay counts these (vit_zoo.structure).
    is_block = True

    def __init__(
        self,
        output_dim: int,
        num_heads: int,
        resolution: tuple[int, int],
        stride_q: tuple[int, int] = (1, 1),
        stride_kv: tuple[int, int] = (1, 1),
        kernel: tuple[int, int] = (3, 3),
        expand_attention: bool = True,
        class_token: bool = False,
        mlp_ratio: float = 4.0,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-6,
        dropout_rate: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.num_heads = int(num_heads)
        self.resolution = _pair(resolution)
        self.stride_q = _pair(stride_q)
        self.stride_kv = _pair(stride_kv)
        self.kernel = _pair(kernel)
        self.expand_attention = bool(expand_attention)
        self.class_token = bool(class_token)
        self.mlp_ratio = float(mlp_ratio)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout = float(attention_dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.output_resolution = pooled_size(self.resolution, self.kernel, self.stride_q)
        # The shortcut's max pool: kernel stride + 1 where strided, padding kernel // 2.
        self.skip_kernel = tuple(s + 1 if s > 1 else s for s in self.stride_q)

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        attention_dim = self.output_dim if self.expand_attention else dim
        project = dim != self.output_dim
        self.norm1 = LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1",
                                        dtype=policy)
        self.norm1.build(input_shape)
        self.shortcut_proj_attn = None
        if project and self.expand_attention:
            self.shortcut_proj_attn = keras.layers.Dense(
                self.output_dim, name="shortcut_proj_attn", dtype=policy)
            self.shortcut_proj_attn.build((None, dim))
        self.attn = PoolingAttention(
            self.num_heads, attention_dim, self.resolution, self.kernel, self.stride_q,
            self.stride_kv, self.class_token, self.layer_norm_epsilon, self.attention_dropout,
            name="attn", dtype=policy)
        self.attn.build(input_shape)
        self.norm2 = LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2",
                                        dtype=policy)
        self.norm2.build((None, attention_dim))
        self.shortcut_proj_mlp = None
        if project and not self.expand_attention:
            self.shortcut_proj_mlp = keras.layers.Dense(
                self.output_dim, name="shortcut_proj_mlp", dtype=policy)
            self.shortcut_proj_mlp.build((None, dim))
        self.mlp = Mlp(int(attention_dim * self.mlp_ratio), self.activation, self.dropout_rate,
                       output_dim=self.output_dim, name="mlp", dtype=policy)
        self.mlp.build((None, attention_dim))
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)

    @staticmethod
    def _dense(layer, x, length: int):
        """A Dense over (B, length, C) tokens as one 2-D matmul."""
        rows = layer(ops.reshape(x, (-1, x.shape[-1])))
        return ops.reshape(rows, (-1, length, rows.shape[-1]))

    def _pool_shortcut(self, x):
        """Max-pool the map tokens of (B, T, C) to the query map (class token kept)."""
        if self.stride_q == (1, 1):
            return x
        prefix = None
        if self.class_token:
            prefix, x = x[:, :1], x[:, 1:]
        (height, width), dim = self.resolution, x.shape[-1]
        x = _edge_pad(ops.reshape(x, (-1, height, width, dim)),
                      tuple(k // 2 for k in self.skip_kernel))
        x = ops.max_pool(x, self.skip_kernel, self.stride_q, padding="valid")
        x = ops.reshape(x, (-1, self.output_resolution[0] * self.output_resolution[1], dim))
        return x if prefix is None else ops.concatenate([prefix, x], axis=1)

    def call(self, tokens, training=None):
        normed = self.norm1(tokens)
        shortcut = tokens if self.shortcut_proj_attn is None else self._dense(
            self.shortcut_proj_attn, normed, self.attn.input_length)
        x = self._pool_shortcut(shortcut) + self.drop_path(
            self.attn(normed, training=training), training=training)
        normed = self.norm2(x)
        shortcut = x if self.shortcut_proj_mlp is None else self._dense(
            self.shortcut_proj_mlp, normed, self.attn.output_length)
        return shortcut + self.drop_path(self.mlp(normed, training=training), training=training)

    def compute_output_shape(self, input_shape):
        length = self.output_resolution[0] * self.output_resolution[1] + int(self.class_token)
        return (input_shape[0], length, self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "num_heads": self.num_heads,
            "resolution": self.resolution,
            "stride_q": self.stride_q,
            "stride_kv": self.stride_kv,
            "kernel": self.kernel,
            "expand_attention": self.expand_attention,
            "class_token": self.class_token,
            "mlp_ratio": self.mlp_ratio,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "dropout_rate": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "drop_path_rate": self.drop_path_rate,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class TokenMap(keras.layers.Layer):
    """(B, P + H * W, C) tokens -> the (B, H, W, C) map, leaving out P prefix tokens: a stage's
    feature map for dense heads."""

    def __init__(self, resolution: tuple[int, int], num_prefix_tokens: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.resolution = _pair(resolution)
        self.num_prefix_tokens = int(num_prefix_tokens)

    def call(self, tokens):
        if self.num_prefix_tokens:
            tokens = tokens[:, self.num_prefix_tokens:]
        return ops.reshape(tokens, (-1, *self.resolution, tokens.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.resolution, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution,
                "num_prefix_tokens": self.num_prefix_tokens}
