"""ConvMixer layers ("Patches Are All You Need?", Trockman & Kolter 2022).

Every convolution of a ConvMixer is followed by the activation and then a BatchNorm (in that
order, unlike the usual conv -> BN -> activation), so that pair is one layer here. Variables keep
Keras's BatchNormalization names (gamma, beta, moving_mean, moving_variance).
"""

from __future__ import annotations

import keras

from vit_zoo.layers import activations
from vit_zoo.layers.regularization import DropPath

#: Keras's BatchNorm momentum weighs the old moving statistics; PyTorch's (0.1) the new batch.
BATCH_NORM_MOMENTUM = 0.9


def activation_function(name: str):
    """The activation by name (vit_zoo.layers.activations: the GELUs, and ReLU, which the
    ConvMixer-768/32 weights were trained with)."""
    if name in activations.ACTIVATIONS:
        return activations.ACTIVATIONS[name]
    raise ValueError(f"Unknown ConvMixer activation {name!r}; expected one of "
                     f"{sorted(activations.ACTIVATIONS)}.")


@keras.saving.register_keras_serializable(package="vit_zoo")
class ActivationBatchNorm(keras.layers.BatchNormalization):
    """The activation (by name, see `activation_function`), then batch normalization over the
    channels (last axis). Inference uses the moving statistics; training the batch's."""

    def __init__(self, activation: str = "gelu", **kwargs):
        kwargs.setdefault("momentum", BATCH_NORM_MOMENTUM)
        super().__init__(**kwargs)
        self.activation = activation
        self.activation_fn = activation_function(activation)

    def call(self, inputs, training=None, mask=None):
        return super().call(self.activation_fn(inputs), training=training, mask=mask)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


@keras.saving.register_keras_serializable(package="vit_zoo")
class ConvMixerBlock(keras.layers.Layer):
    """x + BN(act(DepthwiseConv(x))), then BN(act(PointwiseConv(.))), over (B, H, W, C).

    The depth-wise convolution (`kernel_size`, "same" padding) mixes space and sits in a
    residual branch (with stochastic depth when `drop_path_rate` > 0, which timm does not
    have); the 1x1 convolution mixes channels and has no residual.
    """

    #: A unit of depth: layer-wise learning-rate decay counts these (vit_zoo.structure).
    is_block = True

    def __init__(
        self,
        kernel_size: int,
        activation: str = "gelu",
        epsilon: float = 1e-5,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.activation = activation
        self.epsilon = float(epsilon)
        self.drop_path_rate = float(drop_path_rate)
        activation_function(activation)  # an unknown name fails here, not at build time

    @property
    def layer_norm_epsilon(self) -> float:
        """`epsilon` under the name vit_zoo.numerics.Numerics gives a checkpoint's normalization
        epsilon: a .keras file's numerics are read back by it (vit_zoo.weights.checkpoint)."""
        return self.epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        policy = self.dtype_policy
        norm = dict(activation=self.activation, epsilon=self.epsilon, dtype=policy)
        self.depthwise = keras.layers.DepthwiseConv2D(
            self.kernel_size, padding="same", name="depthwise", dtype=policy)
        self.depthwise_norm = ActivationBatchNorm(name="depthwise_norm", **norm)
        self.pointwise = keras.layers.Conv2D(channels, 1, name="pointwise", dtype=policy)
        self.pointwise_norm = ActivationBatchNorm(name="pointwise_norm", **norm)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)
        for layer in (self.depthwise, self.depthwise_norm, self.pointwise, self.pointwise_norm):
            layer.build(input_shape)

    def call(self, inputs, training=None):
        mixed = self.depthwise_norm(self.depthwise(inputs), training=training)
        x = inputs + self.drop_path(mixed, training=training)
        return self.pointwise_norm(self.pointwise(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "activation": self.activation,
            "epsilon": self.epsilon,
            "drop_path_rate": self.drop_path_rate,
        }
