"""The pre-LayerNorm transformer encoder block."""

from __future__ import annotations

import keras

from vit_zoo.layers.attention import MultiHeadSelfAttention
from vit_zoo.layers.mlp import Mlp
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.regularization import DropPath, LayerScale


@keras.saving.register_keras_serializable(package="vit_zoo")
class EncoderBlock(keras.layers.Layer):
    """x + DropPath(LS(Dropout(Attn(LN(x))))), then x + DropPath(LS(MLP(LN(x)))).

    Args:
        num_heads: attention heads.
        mlp_dim: hidden width of the MLP.
        activation: MLP activation name (from the checkpoint's numerics).
        layer_norm_epsilon: LayerNorm epsilon (from the checkpoint's numerics; 1e-6 for ViT).
        dropout_rate: dropout after the attention output and inside the MLP.
        attention_dropout: dropout on the attention probabilities.
        drop_path_rate: stochastic depth probability of this block.
        layer_scale_init: LayerScale initial value, or None for no LayerScale.
        causal: attend only to the current and earlier tokens (a text decoder's mask).
    """

    #: A unit of depth: layer-wise learning-rate decay counts these (vit_zoo.structure).
    is_block = True

    def __init__(
        self,
        num_heads: int,
        mlp_dim: int,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-6,
        dropout_rate: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init: float | None = None,
        causal: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout = float(attention_dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.layer_scale_init = layer_scale_init
        self.causal = bool(causal)

    def build(self, input_shape):
        policy = self.dtype_policy
        self.norm1 = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm1", dtype=policy
        )
        self.attn = MultiHeadSelfAttention(
            self.num_heads,
            attention_dropout=self.attention_dropout,
            causal=self.causal,
            name="attn",
            dtype=policy,
        )
        self.norm2 = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm2", dtype=policy
        )
        self.mlp = Mlp(
            self.mlp_dim, self.activation, dropout_rate=self.dropout_rate, name="mlp", dtype=policy
        )
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)
        self.ls1 = self.ls2 = None
        if self.layer_scale_init is not None:
            self.ls1 = LayerScale(self.layer_scale_init, name="ls1", dtype=policy)
            self.ls2 = LayerScale(self.layer_scale_init, name="ls2", dtype=policy)
        for layer in (self.norm1, self.attn, self.norm2, self.mlp, self.ls1, self.ls2):
            if layer is not None:
                layer.build(input_shape)

    def _residual(self, inputs, branch, layer_scale, training):
        if layer_scale is not None:
            branch = layer_scale(branch)
        return inputs + self.drop_path(branch, training=training)

    def call(self, inputs, training=None, return_attention_scores=False):
        attended = self.attn(
            self.norm1(inputs), training=training, return_attention_scores=return_attention_scores
        )
        if return_attention_scores:
            attended, probabilities = attended
        attended = self.dropout(attended, training=training)
        x = self._residual(inputs, attended, self.ls1, training)
        x = self._residual(x, self.mlp(self.norm2(x), training=training), self.ls2, training)
        if return_attention_scores:
            return x, probabilities
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "dropout_rate": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "drop_path_rate": self.drop_path_rate,
            "layer_scale_init": self.layer_scale_init,
            "causal": self.causal,
        }
