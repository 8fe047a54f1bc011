"""Swin Transformer V2 layers ("Swin Transformer V2: Scaling Up Capacity and Resolution", Liu
et al. 2022): scaled cosine attention in windows, a continuous position bias computed by a small
MLP from log-spaced relative coordinates, and residual post-normalization.

The window machinery (cyclic shift, padding, partition, shift masks) is Swin V1's
(vit_zoo.layers.swin): a V2 block is a SwinBlock with another attention and its norms after the
branches. The position bias has no table of window-sized shape: it is a function of the
coordinates, so one set of weights serves any window.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from vit_zoo.layers.mlp import Mlp
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.regularization import DropPath
from vit_zoo.layers.swin import (
    PatchMerging,
    SwinBlock,
    attend_in_windows,
    relative_position_index,
    shift_mask,
    split_heads,
    windows_as_rows,
)

#: Hidden width of the continuous-position-bias MLP (the paper's and timm's).
CPB_HIDDEN = 512
#: The coordinates span [-8, 8] before the log spacing.
_COORDINATE_RANGE = 8.0
#: Upper bound of the learned attention temperature: exp(logit_scale) <= 100.
_MAX_LOGIT_SCALE = math.log(100.0)


def log_relative_coordinates(
    window: tuple[int, int], pretrained_window: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """((2Mh-1)(2Mw-1), 2) float32 inputs of the position-bias MLP for a (Mh, Mw) window.

    Offsets (dy, dx) in [-(M-1), M-1] are divided by (M' - 1) with M' the window the weights
    were trained at (`pretrained_window`, or the window itself where it is 0), scaled to [-8, 8]
    and log-spaced: sign(t) * log2(1 + |t|) / 3. Rows are ordered like the entries of Swin's
    relative-position table, so `relative_position_index` picks them.
    """
    reference = pretrained_window if pretrained_window[0] > 0 else window
    axes = [np.arange(-(size - 1), size, dtype="float64") / max(ref - 1, 1)
            for size, ref in zip(window, reference)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1) * _COORDINATE_RANGE
    spaced = np.sign(grid) * np.log2(np.abs(grid) + 1.0) / np.log2(_COORDINATE_RANGE)
    return spaced.reshape(-1, 2).astype("float32")


def _unit_rows(x):
    """x / max(||x||, 1e-12) over the last axis (torch.nn.functional.normalize's guard)."""
    squared = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, ops.cast(1e-24, x.dtype)))


@keras.saving.register_keras_serializable(package="vit_zoo")
class CosineWindowAttention(keras.layers.Layer):
    """Swin V2 window attention: cosine similarity of queries and keys times a learned
    per-head temperature (at most 100), plus 16 * sigmoid(bias) from the position-bias MLP.

    Input (num_windows * B, N, C), N = window area; the call matches Swin's WindowAttention
    (`region_mask=`, `return_attention_scores=`), so SwinBlock's partitioning drives it. The
    query and value biases are variables and the key has none, as upstream. The MLP and the
    temperature are never weight-decayed (timm's `no_weight_decay`).

    Args:
        num_heads: attention heads.
        window: (Mh, Mw) of the windows this layer sees.
        pretrained_window: the window the weights were trained at, for the coordinate scale;
            (0, 0): the window itself.
        attention_dropout: dropout on the attention probabilities.
    """

    def __init__(
        self,
        num_heads: int,
        window: tuple[int, int],
        pretrained_window: tuple[int, int] = (0, 0),
        attention_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.window = tuple(int(w) for w in window)
        self.pretrained_window = tuple(int(w) for w in pretrained_window)
        self.attention_dropout = float(attention_dropout)

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        self.head_dim = dim // self.num_heads
        self.logit_scale = self.add_weight(
            name="logit_scale", shape=(self.num_heads, 1, 1),
            initializer=keras.initializers.Constant(math.log(10.0)))
        self.q_bias = self.add_weight(name="q_bias", shape=(dim,), initializer="zeros")
        self.v_bias = self.add_weight(name="v_bias", shape=(dim,), initializer="zeros")
        self.qkv = keras.layers.Dense(3 * dim, use_bias=False, name="qkv", dtype=policy)
        self.cpb_fc1 = keras.layers.Dense(CPB_HIDDEN, activation="relu", name="cpb_fc1",
                                          dtype=policy)
        self.cpb_fc2 = keras.layers.Dense(self.num_heads, use_bias=False, name="cpb_fc2",
                                          dtype=policy)
        self.proj = keras.layers.Dense(dim, name="proj", dtype=policy)
        self.dropout = keras.layers.Dropout(self.attention_dropout, dtype=policy)
        self.qkv.build((None, dim))
        self.cpb_fc1.build((None, 2))
        self.cpb_fc2.build((None, CPB_HIDDEN))
        self.proj.build((None, dim))
        self.coordinates = log_relative_coordinates(self.window, self.pretrained_window)
        self.index = relative_position_index(self.window, self.window).reshape(-1)

    def relative_bias(self):
        """(heads, N, N) position bias: the MLP on the coordinates, gathered per token pair,
        squashed to (0, 16)."""
        area = self.window[0] * self.window[1]
        table = self.cpb_fc2(self.cpb_fc1(ops.convert_to_tensor(self.coordinates,
                                                                self.compute_dtype)))
        bias = ops.reshape(ops.take(table, self.index, axis=0), (area, area, self.num_heads))
        return 16.0 * ops.sigmoid(ops.transpose(bias, (2, 0, 1)))

    def call(self, windows, region_mask=None, training=None, return_attention_scores=False):
        qkv = self.qkv(windows_as_rows(windows))
        bias = ops.concatenate([self.q_bias, ops.zeros(self.q_bias.shape), self.v_bias])
        query, key, value = split_heads(qkv + ops.cast(bias, qkv.dtype), windows, self.num_heads)
        temperature = ops.exp(ops.minimum(self.logit_scale, _MAX_LOGIT_SCALE))  # (heads, 1, 1)
        return attend_in_windows(self, windows, _unit_rows(query), _unit_rows(key), value,
                                 temperature, region_mask, training, return_attention_scores)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "window": self.window,
            "pretrained_window": self.pretrained_window,
            "attention_dropout": self.attention_dropout,
        }

    def no_weight_decay(self) -> list:
        return [self.logit_scale, *self.cpb_fc1.weights, *self.cpb_fc2.weights]


@keras.saving.register_keras_serializable(package="vit_zoo")
class SwinV2Block(SwinBlock):
    """(Shifted) cosine window attention -> LN -> residual, MLP -> LN -> residual, on
    (B, H, W, C): Swin V1's windows with V2's attention and residual post-norm.

    Args as SwinBlock, plus:
        pretrained_window_size: the window the weights were trained at, which scales the
            position-bias coordinates (timm's `pretrained_window_size`); 0: this block's window.
    """

    def __init__(self, *args, pretrained_window_size: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pretrained_window_size = int(pretrained_window_size)

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        self.attn = CosineWindowAttention(
            self.num_heads, self.window, (self.pretrained_window_size,) * 2,
            self.attention_dropout, name="attn", dtype=policy)
        self.norm1 = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm1", dtype=policy)
        self.mlp = Mlp(self.mlp_dim or 4 * dim, self.activation, self.dropout_rate, name="mlp",
                       dtype=policy)
        self.norm2 = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm2", dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)
        self.attn.build((None, self.window[0] * self.window[1], dim))
        self.norm1.build(input_shape)
        self.mlp.build(input_shape)
        self.norm2.build(input_shape)
        self.mask = shift_mask(self.padded, self.window, self.shift) if any(self.shift) else None

    def call(self, inputs, training=None, return_attention_scores=False):
        """`return_attention_scores=True` also returns the window attention probabilities, as
        SwinBlock does (vit_zoo.inspect reads them the same way)."""
        attended = self._window_attention(inputs, training, return_attention_scores)
        if return_attention_scores:
            attended, probabilities = attended
        x = inputs + self.drop_path(self.norm1(attended), training=training)
        x = x + self.drop_path(self.norm2(self.mlp(x, training=training)), training=training)
        if return_attention_scores:
            return x, probabilities
        return x

    def get_config(self):
        return {**super().get_config(), "pretrained_window_size": self.pretrained_window_size}


@keras.saving.register_keras_serializable(package="vit_zoo")
class PatchMergingV2(PatchMerging):
    """Swin V1's PatchMerging (2x2 neighbourhoods concatenated, bias-free linear reduction)
    with the LayerNorm moved after the reduction, on the output width, as in V2."""

    def build(self, input_shape):
        dim = input_shape[-1]
        output_dim = self.output_dim or 2 * dim
        # V1's call normalizes before reducing: that step is the identity here, the norm after.
        self.norm = _identity
        self.reduction = keras.layers.Dense(
            output_dim, use_bias=False, name="reduction", dtype=self.dtype_policy)
        self.output_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm", dtype=self.dtype_policy)
        self.reduction.build((None, 4 * dim))
        self.output_norm.build((None, output_dim))

    def call(self, inputs):
        return self.output_norm(super().call(inputs))


def _identity(x):
    return x
