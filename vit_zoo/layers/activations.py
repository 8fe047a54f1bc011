"""The MLP activations the checkpoints were trained with, by name.

The name travels with the checkpoint record (see vit_zoo.weights.registry), never with the
architecture: the same ViT-B/16 runs tanh-GELU for Google's JAX weights and exact GELU for
timm-trained ones.
"""

from __future__ import annotations

from keras import ops


def gelu_tanh(x):
    """GELU, tanh approximation (jax.nn.gelu's default; Google ViT, Mixer and hybrid weights)."""
    return ops.gelu(x, approximate=True)


def gelu(x):
    """GELU, exact erf form (PyTorch nn.GELU; timm-trained and Swin weights)."""
    return ops.gelu(x, approximate=False)


def quick_gelu(x):
    """x * sigmoid(1.702 x), the OpenAI CLIP approximation."""
    return x * ops.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu_tanh": gelu_tanh, "gelu": gelu, "quick_gelu": quick_gelu}


def get(name: str):
    """Look an activation up by name, with a clear error for unknown names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown MLP activation {name!r}; expected one of {sorted(ACTIVATIONS)}."
        ) from None
