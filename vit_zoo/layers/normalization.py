"""Layer normalization with a faster training step on TensorFlow."""

from __future__ import annotations

import keras
from keras import ops

from vit_zoo.layers import training_kernels


@keras.saving.register_keras_serializable(package="vit_zoo")
class LayerNormalization(keras.layers.LayerNormalization):
    """keras.layers.LayerNormalization (same weights, config and inference graph) whose training
    step on TensorFlow runs the normalization and its gradient as one fused kernel each way
    (vit_zoo.layers.training_kernels); 1.1-1.2x faster forward + backward at ViT-S/16's sizes
    (benchmarks/training_kernels.py)."""

    def call(self, inputs, training=None):
        rank = len(inputs.shape)
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        fused = (training and training_kernels.available() and self.center and self.scale
                 and not self.rms_scaling and [axis % rank for axis in axes] == [rank - 1])
        if not fused:
            return super().call(inputs)
        layer_norm = training_kernels.fused_layer_norm(float(self.epsilon))
        return ops.cast(layer_norm(inputs, self.gamma.value, self.beta.value),
                        self.compute_dtype)
