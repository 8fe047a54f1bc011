"""Faster training steps on TensorFlow: elementwise chains as one XLA kernel each way.

Without XLA (Keras's default on CPU, where oneDNN's matmuls beat XLA's, above all in
bfloat16) TensorFlow runs every elementwise op of an activation, and every op of its
autodiff gradient, as its own pass over memory: the tanh-GELU of a ViT-S/16 MLP is 8 passes
forward and ~12 backward, a sixth of a training step. Here the forward and a hand-written
backward are each one XLA-compiled function (one fused loop), computed in float32 whatever the
input dtype, while the matmuls around them stay oneDNN's.

The same for layer normalization (TensorFlow's graph runs its moments, normalization and their
gradients as ~15 separate passes). Not the attention softmax: TensorFlow's own forward and
backward measured as fast as a fused backward.

Used in training only: at inference the plain GELU expression is what TensorFlow's graph
optimizer fuses into the preceding MatMul + BiasAdd (one oneDNN kernel, no pass at all). Other
backends compile the whole step with XLA (JAX) or have fused kernels (torch), so they use the
plain functions.
"""

from __future__ import annotations

import functools
import math

import keras

_K = math.sqrt(2.0 / math.pi)
_C = 0.044715
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _activations_tf():
    """{name: (f, f')} in TensorFlow float32 ops, for the fused kernels below."""
    import tensorflow as tf

    def gelu_tanh(v):
        return 0.5 * v * (1.0 + tf.tanh(_K * (v + _C * v * v * v)))

    def gelu_tanh_slope(v):
        t = tf.tanh(_K * (v + _C * v * v * v))
        return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _K * (1.0 + 3.0 * _C * v * v)

    def gelu(v):
        return 0.5 * v * (1.0 + tf.math.erf(v * _SQRT_HALF))

    def gelu_slope(v):
        return 0.5 * (1.0 + tf.math.erf(v * _SQRT_HALF)) + v * tf.exp(-0.5 * v * v) * _INV_SQRT_2PI

    def quick_gelu(v):
        return v * tf.sigmoid(1.702 * v)

    def quick_gelu_slope(v):
        s = tf.sigmoid(1.702 * v)
        return s + 1.702 * v * s * (1.0 - s)

    return {"gelu_tanh": (gelu_tanh, gelu_tanh_slope), "gelu": (gelu, gelu_slope),
            "quick_gelu": (quick_gelu, quick_gelu_slope)}


@functools.cache
def fused_activation(name: str):
    """The activation `name` ("gelu_tanh", "gelu", "quick_gelu") as a TensorFlow function whose
    forward and backward are one XLA kernel each, in float32 inside."""
    import tensorflow as tf

    function, slope = _activations_tf()[name]

    @tf.function(jit_compile=True, reduce_retracing=True)
    def forward(x):
        return tf.cast(function(tf.cast(x, tf.float32)), x.dtype)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def backward(x, upstream):
        gradient = tf.cast(upstream, tf.float32) * slope(tf.cast(x, tf.float32))
        return tf.cast(gradient, x.dtype)

    @tf.custom_gradient
    def activation(x):
        return forward(x), lambda upstream: backward(x, upstream)

    return activation


@functools.cache
def fused_layer_norm(epsilon: float):
    """Layer normalization over the last axis, `(x, gamma, beta) -> y`, whose forward and
    backward are one XLA function each (float32 statistics, output in x's dtype)."""
    import tensorflow as tf

    @tf.function(jit_compile=True, reduce_retracing=True)
    def forward(x, gamma, beta):
        v = tf.cast(x, tf.float32)
        mean = tf.reduce_mean(v, axis=-1, keepdims=True)
        centered = v - mean
        inverse_std = tf.math.rsqrt(tf.reduce_mean(centered * centered, -1, keepdims=True)
                                    + epsilon)
        return tf.cast(centered * inverse_std * gamma + beta, x.dtype), mean, inverse_std

    @tf.function(jit_compile=True, reduce_retracing=True)
    def backward(x, gamma, mean, inverse_std, upstream):
        normalized = (tf.cast(x, tf.float32) - mean) * inverse_std
        upstream = tf.cast(upstream, tf.float32)
        rows = tf.range(tf.rank(x) - 1)
        d_gamma = tf.reduce_sum(upstream * normalized, axis=rows)
        d_beta = tf.reduce_sum(upstream, axis=rows)
        scaled = upstream * gamma
        d_x = inverse_std * (scaled - tf.reduce_mean(scaled, -1, keepdims=True)
                             - normalized * tf.reduce_mean(scaled * normalized, -1,
                                                           keepdims=True))
        return tf.cast(d_x, x.dtype), d_gamma, d_beta

    @tf.custom_gradient
    def layer_norm_of_tensors(x, gamma, beta):
        y, mean, inverse_std = forward(x, gamma, beta)
        return y, lambda upstream: backward(x, gamma, mean, inverse_std, upstream)

    def layer_norm(x, gamma, beta):
        # Read variables first: custom_gradient then sees tensors, and the variables get their
        # gradients through the reads.
        return layer_norm_of_tensors(x, tf.convert_to_tensor(gamma), tf.convert_to_tensor(beta))

    return layer_norm


def available() -> bool:
    """Whether the fused training kernels apply: the TensorFlow backend."""
    return keras.backend.backend() == "tensorflow"
