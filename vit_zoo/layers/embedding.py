"""Turning an image into tokens: patch projection, class token, learned position embedding."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vit_zoo.layers.resample import INTERPOLATIONS, resample_grid


@keras.saving.register_keras_serializable(package="vit_zoo")
class PatchEmbedding(keras.layers.Layer):
    """Non-overlapping `patch_size` x `patch_size` patches projected to `hidden_dim`.

    Input (B, H, W, C); output the patch grid (B, H / p, W / p, hidden_dim). The kernel is stored
    HWIO, the layout of the upstream checkpoints.
    """

    def __init__(
        self,
        patch_size: int,
        hidden_dim: int,
        use_bias: bool = True,
        kernel_initializer="lecun_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.patch_size, self.patch_size, channels, self.hidden_dim),
            initializer=self.kernel_initializer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.hidden_dim,), initializer="zeros")
            if self.use_bias
            else None
        )

    def _check_size(self, shape) -> None:
        """Refuse sizes the patches do not tile (known sizes only: dynamic ones pass)."""
        for side, size in (("height", shape[1]), ("width", shape[2])):
            if size is not None and size % self.patch_size:
                nearest = max(round(size / self.patch_size), 1) * self.patch_size
                raise ValueError(
                    f"Image {side} {size} is not divisible by the patch size {self.patch_size}. "
                    f"Resize or crop the images to a multiple of {self.patch_size}, "
                    f"such as {nearest}."
                )

    def call(self, images, training=None):
        self._check_size(images.shape)
        if training and None not in images.shape[1:]:
            patches = self._as_matmul(images)
        else:
            patches = ops.conv(images, self.kernel, strides=self.patch_size, padding="valid")
        if self.bias is not None:
            patches = patches + self.bias
        return patches

    def _as_matmul(self, images):
        """The same projection as one matmul over the flattened patches. In training the
        kernel's gradient is then a matmul too, where TensorFlow's strided-convolution filter
        gradient on CPU takes 10x the forward's time."""
        _, height, width, channels = images.shape
        p = self.patch_size
        rows, columns = height // p, width // p
        patches = ops.reshape(images, (-1, rows, p, columns, p, channels))
        patches = ops.reshape(ops.transpose(patches, (0, 1, 3, 2, 4, 5)), (-1, p * p * channels))
        projected = ops.matmul(patches, ops.reshape(self.kernel, (p * p * channels, -1)))
        return ops.reshape(projected, (-1, rows, columns, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        self._check_size(input_shape)
        batch, height, width, _ = input_shape
        grid = [None if s is None else s // self.patch_size for s in (height, width)]
        return (batch, grid[0], grid[1], self.hidden_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class ClassToken(keras.layers.Layer):
    """A learned token, one copy per example: input (B, ..., D), output (B, 1, D). Never
    weight-decayed (as timm and open_clip treat class and distillation tokens)."""

    def build(self, input_shape):
        self.token = self.add_weight(
            name="token", shape=(1, 1, input_shape[-1]), initializer="zeros"
        )

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        token = ops.cast(self.token, self.compute_dtype)
        return ops.broadcast_to(token, (batch, 1, self.token.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, input_shape[-1])

    def no_weight_decay(self) -> list:
        return [self.token]


@keras.saving.register_keras_serializable(package="vit_zoo")
class PositionEmbedding(keras.layers.Layer):
    """Learned position embedding for prefix tokens and a patch grid, upstream layout.

    The variable `embedding` has shape (1, num_prefix_tokens + grid_h * grid_w, D), the layout of
    the upstream checkpoints (class slot first). `call(patch_grid, prefix_tokens)` adds the grid
    part to the patches (B, h, w, D), the prefix part to the prefix tokens (B, P, D), and returns
    the sequence (B, P + h * w, D). When the input grid (h, w) differs from `grid_size` (a model
    built with a dynamic input size), the grid part is resampled inside the graph with
    `interpolation`; weights loaded for a different static size are resampled the same way once,
    at load time (`adapt_checkpoint_value`).

    `weight_decay`: whether the optimizer decays the embedding. timm exempts ViT position
    embeddings (the default, False); open_clip decays CLIP's, whose rank is 2 there.
    """

    def __init__(
        self,
        grid_size: tuple[int, int],
        num_prefix_tokens: int = 1,
        interpolation: str = "bilinear",
        weight_decay: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}."
            )
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.interpolation = interpolation
        self.weight_decay = bool(weight_decay)

    def build(self, patch_grid_shape, prefix_tokens_shape=None):
        length = self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        self.embedding = self.add_weight(
            name="embedding",
            shape=(1, length, patch_grid_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def grid_embedding(self, size=None):
        """The grid part as (1, h, w, D); resampled to `size` = (h, w) unless `size` is None."""
        grid = ops.reshape(
            self.embedding[:, self.num_prefix_tokens :],
            (1, self.grid_size[0], self.grid_size[1], self.embedding.shape[-1]),
        )
        if size is None:
            return grid
        return resample_grid(grid, size, self.interpolation)

    def call(self, patch_grid, prefix_tokens=None):
        embedding = ops.cast(self.embedding, self.compute_dtype)
        height, width = patch_grid.shape[1], patch_grid.shape[2]
        if height is None or width is None:
            shape = ops.shape(patch_grid)
            height, width = shape[1], shape[2]
        size = (height, width)
        if isinstance(height, int) and isinstance(width, int) and size == self.grid_size:
            size = None  # the common case: the grid the variable was made for, no resampling
        grid_pos = self.grid_embedding(size)
        tokens = ops.reshape(
            patch_grid + ops.cast(grid_pos, self.compute_dtype),
            (ops.shape(patch_grid)[0], -1, patch_grid.shape[-1]),
        )
        if self.num_prefix_tokens == 0:
            return tokens
        if prefix_tokens is None:
            raise ValueError(
                f"PositionEmbedding was built for {self.num_prefix_tokens} prefix token(s) "
                "(class token); pass them as the second argument."
            )
        prefix = prefix_tokens + embedding[:, : self.num_prefix_tokens]
        return ops.concatenate([prefix, tokens], axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "grid_size": self.grid_size,
            "num_prefix_tokens": self.num_prefix_tokens,
            "interpolation": self.interpolation,
            "weight_decay": self.weight_decay,
        }

    def no_weight_decay(self) -> list:
        return [] if self.weight_decay else [self.embedding]

    def adapt_checkpoint_value(self, variable, value: np.ndarray) -> np.ndarray:
        """A checkpoint's embedding for another grid, resampled to this layer's grid (prefix
        tokens kept); anything else is returned unchanged for the loader to report."""
        prefix = self.num_prefix_tokens
        if variable is not self.embedding or value.ndim != 3:
            return value
        _, length, width = value.shape
        side = int(round(np.sqrt(length - prefix)))
        if width != variable.shape[-1] or side * side != length - prefix:
            return value
        grid = value[0, prefix:].reshape(side, side, width).astype("float32")
        resized = ops.convert_to_numpy(resample_grid(grid, self.grid_size, self.interpolation))
        return np.concatenate([value[:, :prefix], resized.reshape(1, -1, width)], axis=1)
