"""The two-layer MLP of transformer blocks."""

from __future__ import annotations

import keras
from keras import ops

from vit_zoo.layers import activations, training_kernels


@keras.saving.register_keras_serializable(package="vit_zoo")
class Mlp(keras.layers.Layer):
    """fc1 -> activation -> dropout -> fc2 -> dropout, as in the upstream MlpBlock.

    `activation` is a name from vit_zoo.layers.activations ("gelu_tanh", "gelu", "quick_gelu"),
    chosen by the checkpoint's numerics. Output width defaults to the input width.
    """

    def __init__(
        self,
        hidden_dim: int,
        activation: str = "gelu",
        dropout_rate: float = 0.0,
        output_dim: int | None = None,
        kernel_initializer="glorot_uniform",
        bias_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.activation = activation
        self.activation_fn = activations.get(activation)
        self.dropout_rate = float(dropout_rate)
        self.output_dim = output_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # Upstream MlpBlock: biases start near (not at) zero.
        self.bias_initializer = keras.initializers.get(
            bias_initializer or keras.initializers.RandomNormal(stddev=1e-6)
        )

    def build(self, input_shape):
        dense = dict(
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
        )
        self.fc1 = keras.layers.Dense(self.hidden_dim, name="fc1", **dense)
        self.fc2 = keras.layers.Dense(self.output_dim or input_shape[-1], name="fc2", **dense)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.hidden_dim,))

    def call(self, inputs, training=None):
        # Rows of a 2-D matrix rather than (B, N, D): the TF backend then emits
        # MatMul + BiasAdd (+ GELU), which oneDNN fuses into one kernel; a rank-3 Dense goes
        # through tensordot, whose reshape between MatMul and BiasAdd blocks the fusion.
        rows = ops.reshape(inputs, (-1, inputs.shape[-1]))
        activation = self.activation_fn
        if training and training_kernels.available():
            activation = training_kernels.fused_activation(self.activation)
        hidden = self.dropout(activation(self.fc1(rows)), training=training)
        outputs = self.dropout(self.fc2(hidden), training=training)
        return ops.reshape(outputs, (*ops.shape(inputs)[:-1], outputs.shape[-1]))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim or input_shape[-1],)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "activation": self.activation,
            "dropout_rate": self.dropout_rate,
            "output_dim": self.output_dim,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
