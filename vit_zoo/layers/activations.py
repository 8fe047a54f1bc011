"""The MLP activations the checkpoints were trained with, by name.

The name travels with the checkpoint record (see vit_zoo.weights.registry), never with the
architecture: the same ViT-B/16 runs tanh-GELU for Google's JAX weights and exact GELU for
timm-trained ones.
"""

from __future__ import annotations

import contextlib
import contextvars

from keras import ops

_SINGLE_OP_GELU = contextvars.ContextVar("single_op_gelu", default=False)


@contextlib.contextmanager
def single_op_gelu():
    """While active, `gelu_tanh` traces as keras.ops.gelu(approximate=True): the same function
    in the form the TFLite converter turns into one GELU kernel, where the oneDNN-friendly form
    below becomes eight elementwise ops (measured: ViT-S/16 float32 TFLite 8% faster)."""
    token = _SINGLE_OP_GELU.set(True)
    try:
        yield
    finally:
        _SINGLE_OP_GELU.reset(token)


def gelu_tanh(x):
    """GELU, tanh approximation (jax.nn.gelu's default; Google ViT, Mixer and hybrid weights).

    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), written out in the operand order of the
    pattern TensorFlow's CPU graph optimizer fuses into the preceding MatMul + BiasAdd (one
    oneDNN kernel instead of eight elementwise passes). keras.ops.gelu(approximate=True) is
    the same function but is not fused, which costs ~10% of ViT-B/16 inference on CPU.
    """
    if _SINGLE_OP_GELU.get():
        return ops.gelu(x, approximate=True)
    cubic = ops.multiply(ops.multiply(0.044715, x), ops.square(x))
    inner = ops.multiply(ops.add(x, cubic), 0.7978845608028654)
    return ops.multiply(ops.multiply(ops.add(ops.tanh(inner), 1.0), 0.5), x)


def gelu(x):
    """GELU, exact erf form (PyTorch nn.GELU; timm-trained and Swin weights)."""
    return ops.gelu(x, approximate=False)


def quick_gelu(x):
    """x * sigmoid(1.702 x), the OpenAI CLIP approximation."""
    return x * ops.sigmoid(1.702 * x)


def relu(x):
    """max(x, 0) (ConvMixer-768/32's weights)."""
    return ops.relu(x)


ACTIVATIONS = {"gelu_tanh": gelu_tanh, "gelu": gelu, "quick_gelu": quick_gelu, "relu": relu}


def get(name: str):
    """Look an activation up by name, with a clear error for unknown names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown MLP activation {name!r}; expected one of {sorted(ACTIVATIONS)}."
        ) from None
