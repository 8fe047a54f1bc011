"""The fused training kernels (vit_zoo.layers.training_kernels) against TensorFlow's autodiff of
the plain expressions: same outputs and gradients, float32 and bfloat16; and the layers that use
them in training compute what they compute at inference."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from vit_zoo.layers import (
    Mlp,
    MultiHeadSelfAttention,
    PatchEmbedding,
    activations,
    training_kernels,
)
from vit_zoo.layers.normalization import LayerNormalization

TOLERANCE = {"float32": dict(rtol=1e-5, atol=1e-5), "bfloat16": dict(rtol=2e-2, atol=2e-2)}


def _value_and_gradients(function, inputs, upstream):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = function(*inputs)
    return [outputs, *tape.gradient(outputs, inputs, output_gradients=upstream)]


def _assert_close(ours, reference, dtype):
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy(),
                                   **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", ["gelu_tanh", "gelu", "quick_gelu"])
def test_fused_activation_matches_autodiff(name, dtype):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(0, 2, (4, 16, 48)), dtype)
    upstream = tf.constant(rng.normal(0, 1, (4, 16, 48)), dtype)

    def plain(v):  # in float32, as the kernel computes; bfloat16 rounds the result once
        return tf.cast(activations.get(name)(tf.cast(v, tf.float32)), dtype)

    reference = _value_and_gradients(plain, [x], upstream)
    ours = _value_and_gradients(training_kernels.fused_activation(name), [x], upstream)
    _assert_close(ours, reference, dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_layer_norm_matches_autodiff(dtype):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(3, 2, (4, 10, 32)), dtype)
    gamma = tf.constant(rng.normal(1, 0.2, 32), tf.float32)
    beta = tf.constant(rng.normal(0, 0.2, 32), tf.float32)
    upstream = tf.constant(rng.normal(0, 1, (4, 10, 32)), dtype)

    def plain(v, g, b):
        return tf.cast(keras.ops.layer_normalization(tf.cast(v, tf.float32), g, b, -1, 1e-6),
                       dtype)

    reference = _value_and_gradients(plain, [x, gamma, beta], upstream)
    ours = _value_and_gradients(training_kernels.fused_layer_norm(1e-6), [x, gamma, beta],
                                upstream)
    _assert_close(ours, reference, dtype)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_layers_train_like_they_infer(policy):
    """Training mode takes the fused / matmul paths; without dropout it computes the same
    function, with the same gradients, as inference mode (also under mixed precision)."""
    rng = np.random.default_rng(2)
    images = tf.constant(rng.uniform(0, 1, (2, 8, 12, 3)), tf.float32)
    embed = PatchEmbedding(4, 16, dtype=policy)
    attention = MultiHeadSelfAttention(2, dtype=policy)
    norm = LayerNormalization(epsilon=1e-6, dtype=policy)
    mlp = Mlp(32, "gelu_tanh", dtype=policy)
    norm.build((None, 16))
    norm.gamma.assign(rng.normal(1, 0.2, 16))
    norm.beta.assign(rng.normal(0, 0.2, 16))
    mlp.build((None, 6, 16))
    mlp.fc1.bias.assign(rng.normal(0, 0.5, 32))

    def run(training):
        with tf.GradientTape() as tape:
            grid = embed(images, training=training)
            tokens = tf.reshape(grid, (2, -1, 16))
            tokens = norm(tokens + attention(tokens, training=training), training=training)
            tokens = mlp(tokens, training=training)
            assert tokens.dtype == mlp.compute_dtype
            tokens = tf.cast(tokens, tf.float32)
            loss = tf.reduce_sum(tokens * tf.sin(tokens))
        layers = (embed, attention, norm, mlp)
        weights = [w for layer in layers for w in layer.trainable_weights]
        return [tokens, *tape.gradient(loss, weights)]

    if policy == "float32":
        _assert_close(run(True), run(False), "float32")
    else:  # the plain path rounds to bfloat16 after every op, the fused one once per kernel:
        for a, b in zip(run(True), run(False)):  # compare whole tensors, not single elements
            assert np.linalg.norm(a - b) <= 2e-2 * np.linalg.norm(b)
