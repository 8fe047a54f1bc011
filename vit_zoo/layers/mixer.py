"""The MLP-Mixer block ("MLP-Mixer: An all-MLP Architecture for Vision", Tolstikhin et al.)."""

from __future__ import annotations

import keras
from keras import ops

from vit_zoo.layers.mlp import Mlp
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.regularization import DropPath


@keras.saving.register_keras_serializable(package="vit_zoo")
class MixerBlock(keras.layers.Layer):
    """x + TokenMLP(LN(x)^T)^T, then x + ChannelMLP(LN(x)), over (B, N, C) tokens.

    The token-mixing MLP's weights have the number of patches N as a dimension, so a block
    only fits inputs with exactly the token count it was built for.
    """

    #: A unit of depth: layer-wise learning-rate decay counts these (vit_zoo.structure).
    is_block = True

    def __init__(
        self,
        tokens_mlp_dim: int,
        channels_mlp_dim: int,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-6,
        dropout_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tokens_mlp_dim = int(tokens_mlp_dim)
        self.channels_mlp_dim = int(channels_mlp_dim)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout_rate = float(dropout_rate)
        self.drop_path_rate = float(drop_path_rate)

    def build(self, input_shape):
        _, tokens, channels = input_shape
        policy = self.dtype_policy
        self.norm1 = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm1", dtype=policy
        )
        self.token_mixing = Mlp(self.tokens_mlp_dim, self.activation, self.dropout_rate,
                                name="token_mixing", dtype=policy)
        self.norm2 = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm2", dtype=policy
        )
        self.channel_mixing = Mlp(self.channels_mlp_dim, self.activation, self.dropout_rate,
                                  name="channel_mixing", dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)
        self.norm1.build(input_shape)
        self.token_mixing.build((None, channels, tokens))
        self.norm2.build(input_shape)
        self.channel_mixing.build(input_shape)

    def call(self, inputs, training=None):
        transposed = ops.swapaxes(self.norm1(inputs), 1, 2)
        mixed = ops.swapaxes(self.token_mixing(transposed, training=training), 1, 2)
        x = inputs + self.drop_path(mixed, training=training)
        channels = self.channel_mixing(self.norm2(x), training=training)
        return x + self.drop_path(channels, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "tokens_mlp_dim": self.tokens_mlp_dim,
            "channels_mlp_dim": self.channels_mlp_dim,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "dropout_rate": self.dropout_rate,
            "drop_path_rate": self.drop_path_rate,
        }
