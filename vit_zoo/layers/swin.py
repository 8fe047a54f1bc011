"""Swin Transformer layers ("Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows", Liu et al. 2021): window attention with a learned relative-position bias, shifted
windows, patch merging.

Every shape is static: a block is built for one feature-map size, and its padding, window
partition, relative-position index and shift mask are fixed at build time. The cyclic shift is
two slices and a concat (no roll op), so the graph converts to builtin-only TFLite.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vit_zoo.layers.attention import head_major_attention
from vit_zoo.layers.mlp import Mlp
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.regularization import DropPath

#: Additive logit for token pairs that come from different regions of a shifted window.
MASK_VALUE = -100.0


def relative_position_index(window: tuple[int, int], table_window: tuple[int, int]) -> np.ndarray:
    """(N, N) indices into a ((2Mh-1)(2Mw-1), heads) table for the tokens of a `window`.

    Index of a pair = (dy + Mh - 1) * (2Mw - 1) + (dx + Mw - 1) with (Mh, Mw) = `table_window`.
    A window smaller than the table's (a stage smaller than the configured window) uses the
    central part of the table: the relative offsets it can express.
    """
    coords = np.stack(np.meshgrid(np.arange(window[0]), np.arange(window[1]), indexing="ij"))
    coords = coords.reshape(2, -1)
    relative = coords[:, :, None] - coords[:, None, :]
    return (relative[0] + table_window[0] - 1) * (2 * table_window[1] - 1) + (
        relative[1] + table_window[1] - 1
    )


def shift_mask(padded: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]):
    """(num_windows, N, N) additive mask for a shifted window partition of a padded map.

    After the cyclic shift, the map is split into up to 3 x 3 regions (per axis: the part before
    the last window, the last window minus the shift, the shifted-in strip); tokens of different
    regions must not attend to each other.
    """
    regions = np.zeros(padded, dtype="int32")
    label = 0
    bounds = [((0, -window[i]), (-window[i], -shift[i]), (-shift[i], None)) for i in range(2)]
    for rows in bounds[0]:
        for cols in bounds[1]:
            regions[slice(*rows), slice(*cols)] = label
            label += 1
    windows = regions.reshape(padded[0] // window[0], window[0], padded[1] // window[1], window[1])
    windows = windows.transpose(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    different = windows[:, :, None] != windows[:, None, :]
    return np.where(different, MASK_VALUE, 0.0).astype("float32")


@keras.saving.register_keras_serializable(package="vit_zoo")
class WindowAttention(keras.layers.Layer):
    """Multi-head attention inside windows with a learned relative-position bias.

    Input (num_windows * B, N, C) with N = window area; `call(x, region_mask=...)` adds the
    relative bias (heads, N, N) and an optional (num_windows, N, N) shift mask. The bias table
    has the shape of `table_window` (the configured window) whatever window the block uses.
    `return_attention_scores=True` also returns the probabilities (num_windows * B, heads, N, N)
    (for vit_zoo.inspect; the plain call's graph is unchanged). The bias table is never
    weight-decayed (timm's `no_weight_decay`), and a checkpoint's table for another window size
    is resampled on load (`adapt_checkpoint_value`).
    """

    def __init__(
        self,
        num_heads: int,
        window: tuple[int, int],
        table_window: tuple[int, int],
        attention_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.window = tuple(int(w) for w in window)
        self.table_window = tuple(int(w) for w in table_window)
        self.attention_dropout = float(attention_dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.head_dim = dim // self.num_heads
        table_size = (2 * self.table_window[0] - 1) * (2 * self.table_window[1] - 1)
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table",
            shape=(table_size, self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.index = relative_position_index(self.window, self.table_window).reshape(-1)
        self.qkv = keras.layers.Dense(3 * dim, name="qkv", dtype=self.dtype_policy)
        self.proj = keras.layers.Dense(dim, name="proj", dtype=self.dtype_policy)
        self.dropout = keras.layers.Dropout(self.attention_dropout, dtype=self.dtype_policy)
        self.qkv.build((None, dim))
        self.proj.build((None, dim))

    def relative_bias(self):
        """(heads, N, N) bias gathered from the table."""
        area = self.window[0] * self.window[1]
        bias = ops.take(self.relative_position_bias_table, self.index, axis=0)
        return ops.transpose(ops.reshape(bias, (area, area, self.num_heads)), (2, 0, 1))

    def call(self, windows, region_mask=None, training=None, return_attention_scores=False):
        query, key, value = split_heads(self.qkv(windows_as_rows(windows)), windows,
                                        self.num_heads)
        return attend_in_windows(self, windows, query, key, value, self.head_dim**-0.5,
                                 region_mask, training, return_attention_scores)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "window": self.window,
            "table_window": self.table_window,
            "attention_dropout": self.attention_dropout,
        }

    def no_weight_decay(self) -> list:
        return [self.relative_position_bias_table]

    def adapt_checkpoint_value(self, variable, value: np.ndarray) -> np.ndarray:
        """A checkpoint's bias table for another (square) window, resampled as timm does;
        anything else is returned unchanged for the loader to report."""
        table = self.relative_position_bias_table
        if variable is not table or value.ndim != 2 or value.shape[1:] != tuple(table.shape[1:]):
            return value
        if self.table_window[0] != self.table_window[1]:
            return value
        return resize_bias_table(value, self.table_window[0])


def windows_as_rows(windows):
    """(windows, N, C) -> (windows * N, C): 2-D rows for the projections (TensorFlow fuses
    MatMul + BiasAdd on them)."""
    return ops.reshape(windows, (-1, windows.shape[-1]))


def split_heads(qkv, windows, num_heads: int):
    """Projected (windows * N, 3C) rows -> query, key, value, each (windows, heads, N, C/heads)."""
    count, area, dim = ops.shape(windows)[0], windows.shape[1], windows.shape[-1]
    qkv = ops.reshape(qkv, (count, area, 3, num_heads, dim // num_heads))
    return ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), axis=0)


def attend_in_windows(layer, windows, query, key, value, scale, region_mask, training,
                      return_attention_scores):
    """What Swin's and Swin V2's window attentions share once they have their queries, keys and
    values: the layer's relative bias (heads, N, N) plus the shift mask, the attention core,
    the output projection `layer.proj`; (output, probabilities) when asked for the scores."""
    count, area, dim = ops.shape(windows)[0], windows.shape[1], windows.shape[-1]
    mask, groups = layer.relative_bias(), 1
    if region_mask is not None:  # one (heads, N, N) mask per window of the shifted map
        mask, groups = mask[None] + region_mask[:, None], region_mask.shape[0]
    attended, probabilities = head_major_attention(query, key, value, scale, layer.dropout,
                                                   training, mask, groups)
    attended = ops.transpose(attended, (0, 2, 1, 3))
    output = ops.reshape(layer.proj(ops.reshape(attended, (-1, dim))), (count, area, dim))
    if return_attention_scores:
        return output, ops.cast(probabilities, "float32")
    return output


def _cyclic_shift(x, shift: tuple[int, int]):
    """Roll a (B, H, W, C) map by -shift along H and W with slices and a concat: the same
    result as a roll, but made of ops TFLite has built in (it has no roll)."""
    if shift[0]:
        x = ops.concatenate([x[:, shift[0]:], x[:, : shift[0]]], axis=1)
    if shift[1]:
        x = ops.concatenate([x[:, :, shift[1]:], x[:, :, : shift[1]]], axis=2)
    return x


@keras.saving.register_keras_serializable(package="vit_zoo")
class SwinBlock(keras.layers.Layer):
    """LN -> (shifted) window attention -> residual, LN -> MLP -> residual, on (B, H, W, C).

    Args:
        num_heads: attention heads.
        resolution: (H, W) of the feature map this block is built for.
        window_size: configured window; a side not larger than the map uses one window there.
        shifted: shift windows by half a window (odd blocks); no shift where one window covers
            the map.
        mlp_dim, activation, layer_norm_epsilon, dropout_rate, attention_dropout,
        drop_path_rate: as in the ViT encoder block.
    """

    #: A unit of depth: layer-wise learning-rate decay counts these (vit_zoo.structure).
    is_block = True

    def __init__(
        self,
        num_heads: int,
        resolution: tuple[int, int],
        window_size: int = 7,
        shifted: bool = False,
        mlp_dim: int | None = None,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-5,
        dropout_rate: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.resolution = tuple(int(r) for r in resolution)
        self.window_size = int(window_size)
        self.shifted = bool(shifted)
        self.mlp_dim = mlp_dim
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout = float(attention_dropout)
        self.drop_path_rate = float(drop_path_rate)
        # One window where the map is not larger than the window; shift only where it is.
        self.window = tuple(min(r, self.window_size) for r in self.resolution)
        self.shift = tuple(
            self.window_size // 2 if self.shifted and r > self.window_size else 0
            for r in self.resolution
        )
        self.padded = tuple(-(-r // w) * w for r, w in zip(self.resolution, self.window))

    def build(self, input_shape):
        dim, policy = input_shape[-1], self.dtype_policy
        self.norm1 = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm1", dtype=policy)
        self.attn = WindowAttention(
            self.num_heads, self.window, (self.window_size, self.window_size),
            self.attention_dropout, name="attn", dtype=policy)
        self.norm2 = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm2", dtype=policy)
        self.mlp = Mlp(self.mlp_dim or 4 * dim, self.activation, self.dropout_rate, name="mlp",
                       dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)
        area = self.window[0] * self.window[1]
        self.norm1.build(input_shape)
        self.attn.build((None, area, dim))
        self.norm2.build(input_shape)
        self.mlp.build(input_shape)
        self.mask = shift_mask(self.padded, self.window, self.shift) if any(self.shift) else None

    def _window_attention(self, x, training, return_attention_scores=False):
        batch, dim = ops.shape(x)[0], x.shape[-1]
        (height, width), (ph, pw), (wh, ww) = self.resolution, self.padded, self.window
        if any(self.shift):
            x = _cyclic_shift(x, self.shift)
        if (ph, pw) != (height, width):  # pad after the shift, as timm does
            x = ops.pad(x, [[0, 0], [0, ph - height], [0, pw - width], [0, 0]])
        windows = ops.reshape(x, (batch, ph // wh, wh, pw // ww, ww, dim))
        windows = ops.reshape(ops.transpose(windows, (0, 1, 3, 2, 4, 5)), (-1, wh * ww, dim))
        mask = None if self.mask is None else ops.convert_to_tensor(self.mask)
        windows = self.attn(windows, region_mask=mask, training=training,
                            return_attention_scores=return_attention_scores)
        if return_attention_scores:
            windows, probabilities = windows
        x = ops.reshape(windows, (batch, ph // wh, pw // ww, wh, ww, dim))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (batch, ph, pw, dim))
        if (ph, pw) != (height, width):
            x = x[:, :height, :width]
        if any(self.shift):
            x = _cyclic_shift(x, ((height - self.shift[0]) % height,
                                  (width - self.shift[1]) % width))
        if return_attention_scores:
            return x, probabilities
        return x

    def call(self, inputs, training=None, return_attention_scores=False):
        """`return_attention_scores=True` also returns the window attention probabilities
        (B * windows, heads, N, N), windows in row-major order over the shifted, padded map
        (see `window`, `padded`, `shift`); vit_zoo.inspect puts them back on the grid."""
        attended = self._window_attention(self.norm1(inputs), training, return_attention_scores)
        if return_attention_scores:
            attended, probabilities = attended
        x = inputs + self.drop_path(attended, training=training)
        x = x + self.drop_path(self.mlp(self.norm2(x), training=training), training=training)
        if return_attention_scores:
            return x, probabilities
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "resolution": self.resolution,
            "window_size": self.window_size,
            "shifted": self.shifted,
            "mlp_dim": self.mlp_dim,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "dropout_rate": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "drop_path_rate": self.drop_path_rate,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class PatchMerging(keras.layers.Layer):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out): each 2x2 neighbourhood concatenated
    as [x(0,0), x(1,0), x(0,1), x(1,1)], LayerNorm, then a bias-free linear reduction."""

    def __init__(self, output_dim: int | None = None, layer_norm_epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.layer_norm_epsilon = float(layer_norm_epsilon)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm", dtype=self.dtype_policy)
        self.reduction = keras.layers.Dense(
            self.output_dim or 2 * dim, use_bias=False, name="reduction", dtype=self.dtype_policy)
        self.norm.build((None, 4 * dim))
        self.reduction.build((None, 4 * dim))

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        _, height, width, dim = inputs.shape
        if height % 2 or width % 2:  # pad odd sides at the end, as timm does
            inputs = ops.pad(inputs, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]])
            height, width = height + height % 2, width + width % 2
        x = ops.reshape(inputs, (batch, height // 2, 2, width // 2, 2, dim))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 4, 2, 5)), (-1, 4 * dim))
        x = self.reduction(self.norm(x))
        return ops.reshape(x, (batch, height // 2, width // 2, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        batch, height, width, dim = input_shape
        return (batch, -(-height // 2), -(-width // 2), self.output_dim or 2 * dim)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


def resize_bias_table(table: np.ndarray, window: int) -> np.ndarray:
    """A ((2M-1)^2, heads) relative-position table resampled for window `window`, the way timm
    does when it loads Swin weights at another window size (BEiT's scheme: source offsets
    spread on a geometric progression so the original ones map to the centre, then linear
    interpolation on that grid). Runs once, at load time, in numpy."""
    source = int(round(np.sqrt(table.shape[0])))
    target = 2 * window - 1
    if source == target:
        return table

    def spread(src: int, dst: int) -> np.ndarray:
        low, high = 1.01, 1.5
        while high - low > 1e-6:  # the ratio whose progression over src // 2 steps reaches dst // 2
            ratio = (low + high) / 2.0
            if (1.0 - ratio ** (src // 2)) / (1.0 - ratio) > dst // 2:
                high = ratio
            else:
                low = ratio
        steps, current = [], 1.0
        for i in range(src // 2):
            steps.append(current)
            current += ratio ** (i + 1)
        return np.array([-s for s in reversed(steps)] + [0.0] + steps)

    def interpolate_axis(values: np.ndarray, points: np.ndarray, queries: np.ndarray, axis: int):
        right = np.clip(np.searchsorted(points, queries, side="left"), 0, len(points) - 1)
        left = np.clip(right - 1, 0, len(points) - 1)
        to_left = np.maximum(queries - points[left], 0.0)
        to_right = np.maximum(points[right] - queries, 0.0)
        both_zero = (to_left == 0) & (to_right == 0)
        to_left, to_right = np.where(both_zero, 1.0, to_left), np.where(both_zero, 1.0, to_right)
        shape = [1] * values.ndim
        shape[axis] = -1
        lv, rv = np.take(values, left, axis=axis), np.take(values, right, axis=axis)
        return (lv * to_right.reshape(shape) + rv * to_left.reshape(shape)) / (
            (to_left + to_right).reshape(shape))

    points = spread(source, target)
    queries = np.arange(-(target // 2), target // 2 + 0.1, 1.0)
    grid = table.astype("float64").reshape(source, source, -1)
    grid = interpolate_axis(interpolate_axis(grid, points, queries, 0), points, queries, 1)
    return grid.reshape(target * target, -1).astype(table.dtype)
