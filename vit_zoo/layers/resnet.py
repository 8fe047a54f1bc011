"""The ResNet (v2-style, GroupNorm) stem of the hybrid ViTs, as google-research/vision_transformer
defines it: weight-standardized convolutions, GroupNorm with 32 groups, TF "SAME" padding, and
post-activation bottleneck units. Layer names mirror the upstream checkpoint's module names.
"""

from __future__ import annotations

import keras
from keras import ops

#: How a convolution kernel is standardized over its (H, W, in) axes.
#: "std": (w - mean) / (std + eps), the upstream JAX code (eps 1e-5).
#: "var": (w - mean) / sqrt(var + eps), timm's StdConv2dSame (eps 1e-8).
STANDARDIZATIONS = ("std", "var")


@keras.saving.register_keras_serializable(package="vit_zoo")
class StdConv2D(keras.layers.Layer):
    """Convolution with weight standardization and TF "SAME" padding, no bias."""

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        standardization: str = "std",
        epsilon: float = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if standardization not in STANDARDIZATIONS:
            raise ValueError(
                f"standardization must be one of {STANDARDIZATIONS}, got {standardization!r}."
            )
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.standardization = standardization
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, input_shape[-1], self.filters),
            initializer="he_normal",
        )

    def standardized_kernel(self):
        kernel = ops.cast(self.kernel, "float32")
        mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        centered = kernel - mean
        variance = ops.mean(ops.square(centered), axis=(0, 1, 2), keepdims=True)
        if self.standardization == "std":
            return centered / (ops.sqrt(variance) + self.epsilon)
        return centered * ops.rsqrt(variance + self.epsilon)

    def call(self, inputs):
        kernel = ops.cast(self.standardized_kernel(), self.compute_dtype)
        return ops.conv(inputs, kernel, strides=self.strides, padding="same")

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        size = [None if s is None else -(-s // self.strides) for s in (height, width)]
        return (batch, size[0], size[1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "standardization": self.standardization,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class GroupNorm(keras.layers.Layer):
    """Group normalization over (B, H, W, C), statistics in float32; variables gamma and beta.

    Same function as keras.layers.GroupNormalization, written by hand because that layer's
    multi-axis reductions over a (B, H, W, G, C/G) view are slow on CPU: here the per-channel
    sums are a (1 x HW) @ (HW x C) matmul and the shift is folded into one multiply-add, 2.5x
    faster on the R50 stem's feature maps (the GroupNorms cost more than the convolutions
    otherwise).
    """

    def __init__(self, groups: int = 32, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(f"{channels} channels cannot be split into {self.groups} groups.")
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def _per_channel_to_groups(self, values, batch):
        """(B, 1, C) per-channel means -> (B, 1, C) means of each channel's group."""
        channels = values.shape[-1]
        grouped = ops.reshape(values, (-1, self.groups, channels // self.groups))
        grouped = ops.mean(grouped, axis=-1, keepdims=True)
        grouped = ops.broadcast_to(grouped, (batch, self.groups, channels // self.groups))
        return ops.reshape(grouped, (-1, 1, channels))

    def call(self, inputs):
        shape = ops.shape(inputs)
        batch, pixels, channels = shape[0], shape[1] * shape[2], inputs.shape[-1]
        rows = ops.reshape(ops.cast(inputs, "float32"), (batch, pixels, channels))
        average = ops.ones((1, 1, pixels), "float32") / ops.cast(pixels, "float32")
        mean = self._per_channel_to_groups(ops.matmul(average, rows), batch)
        variance = self._per_channel_to_groups(
            ops.matmul(average, ops.square(rows - mean)), batch
        )
        scale = ops.rsqrt(variance + self.epsilon) * ops.cast(self.gamma, "float32")
        shift = ops.cast(self.beta, "float32") - mean * scale
        outputs = ops.reshape(rows * scale + shift, shape)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


def _group_norm(name: str, epsilon: float, policy) -> GroupNorm:
    return GroupNorm(groups=32, epsilon=epsilon, name=name, dtype=policy)


@keras.saving.register_keras_serializable(package="vit_zoo")
class ResidualUnit(keras.layers.Layer):
    """Bottleneck: 1x1 -> 3x3 (strided) -> 1x1 (x4 channels), GroupNorm after each, ReLU after
    the first two and after the residual sum; a projection shortcut when the shape changes."""

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        standardization: str = "std",
        conv_epsilon: float = 1e-5,
        norm_epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.standardization = standardization
        self.conv_epsilon = float(conv_epsilon)
        self.norm_epsilon = float(norm_epsilon)

    def _conv(self, filters, kernel_size, strides, name):
        return StdConv2D(filters, kernel_size, strides, self.standardization, self.conv_epsilon,
                         name=name, dtype=self.dtype_policy)

    def build(self, input_shape):
        policy, out = self.dtype_policy, 4 * self.filters
        self.conv1 = self._conv(self.filters, 1, 1, "conv1")
        self.gn1 = _group_norm("gn1", self.norm_epsilon, policy)
        self.conv2 = self._conv(self.filters, 3, self.strides, "conv2")
        self.gn2 = _group_norm("gn2", self.norm_epsilon, policy)
        self.conv3 = self._conv(out, 1, 1, "conv3")
        self.gn3 = _group_norm("gn3", self.norm_epsilon, policy)
        self.projects = input_shape[-1] != out or self.strides != 1
        if self.projects:
            self.conv_proj = self._conv(out, 1, self.strides, "conv_proj")
            self.gn_proj = _group_norm("gn_proj", self.norm_epsilon, policy)
        shape = tuple(input_shape)
        for conv, norm in ((self.conv1, self.gn1), (self.conv2, self.gn2), (self.conv3, self.gn3)):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        if self.projects:
            self.conv_proj.build(tuple(input_shape))
            self.gn_proj.build(shape)

    def call(self, inputs):
        residual = inputs
        if self.projects:
            residual = self.gn_proj(self.conv_proj(inputs))
        y = ops.relu(self.gn1(self.conv1(inputs)))
        y = ops.relu(self.gn2(self.conv2(y)))
        y = self.gn3(self.conv3(y))
        return ops.relu(residual + y)

    def compute_output_shape(self, input_shape):
        return self._conv(4 * self.filters, 1, self.strides, "shape").compute_output_shape(
            input_shape
        )

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "standardization": self.standardization,
            "conv_epsilon": self.conv_epsilon,
            "norm_epsilon": self.norm_epsilon,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class ResNetStem(keras.layers.Layer):
    """Root (7x7/2 conv, GroupNorm, ReLU, 3x3/2 max pool) then stages of ResidualUnits.

    `stage_depths` (3, 4, 9) is the paper's R50 for ViT-B/16 (stride 16); (2, 2, 2, 2) R26 and
    (3, 4, 6, 3) R50 give stride 32; () is the root alone (stride 4). Stage i has 64 * 2**i
    bottleneck filters (times `width_factor`) and 4x as many output channels.
    `call(images, return_stages=True)` returns the root output and every stage's output.
    """

    def __init__(
        self,
        stage_depths: tuple[int, ...] = (3, 4, 9),
        width_factor: int = 1,
        standardization: str = "std",
        conv_epsilon: float = 1e-5,
        norm_epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.stage_depths = tuple(int(d) for d in stage_depths)
        self.width_factor = int(width_factor)
        self.standardization = standardization
        self.conv_epsilon = float(conv_epsilon)
        self.norm_epsilon = float(norm_epsilon)

    @property
    def stride(self) -> int:
        return 4 * 2 ** max(len(self.stage_depths) - 1, 0)

    @property
    def output_channels(self) -> int:
        width = 64 * self.width_factor
        return 4 * width * 2 ** (len(self.stage_depths) - 1) if self.stage_depths else width

    def build(self, input_shape):
        width, policy = 64 * self.width_factor, self.dtype_policy
        self.conv_root = StdConv2D(width, 7, 2, self.standardization, self.conv_epsilon,
                                   name="conv_root", dtype=policy)
        self.gn_root = _group_norm("gn_root", self.norm_epsilon, policy)
        self.pool = keras.layers.MaxPooling2D(3, 2, padding="same", dtype=policy)
        self.conv_root.build(input_shape)
        shape = self.conv_root.compute_output_shape(input_shape)
        self.gn_root.build(shape)
        shape = self.pool.compute_output_shape(shape)
        self.stages = []
        for index, depth in enumerate(self.stage_depths):
            units = []
            for unit in range(depth):
                layer = ResidualUnit(
                    width * 2**index,
                    strides=2 if index > 0 and unit == 0 else 1,
                    standardization=self.standardization,
                    conv_epsilon=self.conv_epsilon,
                    norm_epsilon=self.norm_epsilon,
                    name=f"unit{unit + 1}",
                    dtype=policy,
                )
                with keras.name_scope(f"block{index + 1}"):
                    layer.build(shape)
                shape = layer.compute_output_shape(shape)
                units.append(layer)
            self.stages.append(units)

    def call(self, images, return_stages=False):
        x = self.pool(ops.relu(self.gn_root(self.conv_root(images))))
        outputs = [x]
        for units in self.stages:
            for unit in units:
                x = unit(x)
            outputs.append(x)
        return outputs if return_stages else x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        size = [None if s is None else -(-s // self.stride) for s in (height, width)]
        return (batch, size[0], size[1], self.output_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "stage_depths": self.stage_depths,
            "width_factor": self.width_factor,
            "standardization": self.standardization,
            "conv_epsilon": self.conv_epsilon,
            "norm_epsilon": self.norm_epsilon,
        }
