"""Stochastic depth and LayerScale."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vit_zoo")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drop the whole residual branch per example with probability `rate`.

    Survivors are scaled by 1 / (1 - rate) so the expectation is unchanged; identity at inference.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        batch = ops.shape(inputs)[0]
        mask_shape = (batch,) + (1,) * (len(inputs.shape) - 1)
        mask = keras.random.uniform(mask_shape, seed=self.seed_generator, dtype=inputs.dtype)
        return inputs * ops.cast(mask < keep, inputs.dtype) / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="vit_zoo")
class LayerScale(keras.layers.Layer):
    """Per-channel learned scale of a residual branch (CaiT), initialized to `init_value`."""

    def __init__(self, init_value: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        return inputs * ops.cast(self.gamma, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}
