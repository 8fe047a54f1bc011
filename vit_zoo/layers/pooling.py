"""From a token sequence to one vector: class token, average, or attention pooling (MAP)."""

from __future__ import annotations

import keras
from keras import ops

from vit_zoo.layers.attention import attention_probabilities
from vit_zoo.layers.mlp import Mlp
from vit_zoo.layers.normalization import LayerNormalization

POOLINGS = ("token", "avg", "map")


@keras.saving.register_keras_serializable(package="vit_zoo")
class TokenPooling(keras.layers.Layer):
    """(B, N, D) -> (B, D): the first (class) token, or the mean of the patch tokens.

    `method="avg"` averages only the tokens after the `num_prefix_tokens` prefix tokens;
    `method="token"` takes prefix token `token_index` (1: DeiT's distillation token).
    """

    def __init__(self, method: str = "token", num_prefix_tokens: int = 1, token_index: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        if method not in ("token", "avg"):
            raise ValueError(f"TokenPooling method must be 'token' or 'avg', got {method!r}.")
        if method == "token" and num_prefix_tokens < 1:
            raise ValueError("Class-token pooling needs a class token (num_prefix_tokens >= 1).")
        if method == "token" and not 0 <= token_index < num_prefix_tokens:
            raise ValueError(f"token_index {token_index} is not one of the "
                             f"{num_prefix_tokens} prefix tokens.")
        self.method = method
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.token_index = int(token_index)

    def call(self, tokens):
        if self.method == "token":
            return tokens[:, self.token_index]
        return ops.mean(tokens[:, self.num_prefix_tokens :], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "method": self.method,
            "num_prefix_tokens": self.num_prefix_tokens,
            "token_index": self.token_index,
        }


@keras.saving.register_keras_serializable(package="vit_zoo")
class MultiHeadAttentionPooling(keras.layers.Layer):
    """MAP head ("Scaling Vision Transformers"): a learned probe attends over all tokens.

    probe -> attention(query=probe, keys/values=tokens) -> x + MLP(LN(x)) -> (B, D).
    Keys and values share one fused projection, like queries/keys/values in self-attention.
    """

    def __init__(
        self,
        num_heads: int,
        mlp_dim: int,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.head_dim = dim // self.num_heads
        policy = self.dtype_policy
        self.probe = self.add_weight(
            name="probe", shape=(1, 1, dim), initializer="glorot_uniform"
        )
        self.q = keras.layers.Dense(dim, name="q", dtype=policy)
        self.kv = keras.layers.Dense(2 * dim, name="kv", dtype=policy)
        self.proj = keras.layers.Dense(dim, name="proj", dtype=policy)
        self.norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm", dtype=policy
        )
        self.mlp = Mlp(self.mlp_dim, self.activation, name="mlp", dtype=policy)
        for layer in (self.q, self.kv, self.proj, self.norm, self.mlp):
            layer.build((None, 1, dim) if layer is not self.kv else input_shape)

    def call(self, tokens, return_attention_scores=False):
        batch, length = ops.shape(tokens)[0], ops.shape(tokens)[1]
        probe = ops.cast(self.probe, tokens.dtype)
        probe = ops.broadcast_to(probe, (batch, 1, self.probe.shape[-1]))
        query = ops.reshape(self.q(probe), (batch, 1, self.num_heads, self.head_dim))
        kv = ops.reshape(self.kv(tokens), (batch, length, 2, self.num_heads, self.head_dim))
        key, value = kv[:, :, 0], kv[:, :, 1]
        scale = self.head_dim**-0.5
        probabilities = attention_probabilities(query, key, scale)
        attended = ops.einsum("bhts,bshd->bthd", ops.cast(probabilities, value.dtype), value)
        x = self.proj(ops.reshape(attended, (batch, 1, self.num_heads * self.head_dim)))
        x = x + self.mlp(self.norm(x))
        if return_attention_scores:
            return x[:, 0], probabilities
        return x[:, 0]

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }
