"""MLP-Mixer ("MLP-Mixer: An all-MLP Architecture for Vision", Tolstikhin et al. 2021).

Variants "S/32" ... "L/16" decoded by one table, as for ViT. The token-mixing MLPs have one
weight per patch, so a Mixer is built for one input size; weights trained at another size are
refused with the sizes that fit them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers import LayerNormalization, MixerBlock, PatchEmbedding, TokenPooling
from vit_zoo.models import common
from vit_zoo.weights import mixer_layout

FAMILY = "mixer"
DEFAULT_SIZE = 224
TRANSLATORS = {"google_npz": mixer_layout.from_google, "timm_safetensors": mixer_layout.from_timm}
LAYOUT_NUMERICS = {"google_npz": nm.GOOGLE, "timm_safetensors": nm.TIMM_VIT}

# name: (hidden_dim, depth, tokens_mlp_dim, channels_mlp_dim)
_SIZES = {"S": (512, 8, 256, 2048), "B": (768, 12, 384, 3072), "L": (1024, 24, 512, 4096)}
VARIANTS = ("S/32", "S/16", "B/32", "B/16", "L/32", "L/16")


@dataclass(frozen=True)
class MixerArch:
    variant: str
    hidden_dim: int
    depth: int
    tokens_mlp_dim: int
    channels_mlp_dim: int
    patch_size: int


def decode_variant(variant: str | MixerArch) -> MixerArch:
    """'B/16' -> MixerArch(768, 12 blocks, token MLP 384, channel MLP 3072, 16 px patches)."""
    if isinstance(variant, MixerArch):
        return variant
    match = re.fullmatch(r"(\w+)/(\d+)", variant)
    if not match or match.group(1) not in _SIZES:
        raise ValueError(
            f"Unknown Mixer variant {variant!r}: expected '<size>/<patch>' with size in "
            f"{list(_SIZES)}, e.g. 'B/16'."
        )
    return MixerArch(variant, *_SIZES[match.group(1)], patch_size=int(match.group(2)))


def _sizes_for(tokens: int, patch_size: int, limit: int = 4) -> str:
    """Input sizes with exactly `tokens` patches, squarest first: '224x224, 112x448, ...'."""
    pairs = [(h, tokens // h) for h in range(1, tokens + 1) if tokens % h == 0]
    pairs.sort(key=lambda hw: abs(hw[0] - hw[1]))
    return ", ".join(f"{h * patch_size}x{w * patch_size}" for h, w in pairs[:limit])


def Mixer(
    variant: str | MixerArch = "B/16",
    include_top: bool = True,
    weights: str | os.PathLike | None = None,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int | None = None,
    classifier_activation="softmax",
    include_preprocessing: bool = True,
    dropout_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    name: str | None = None,
    *,
    numerics: nm.Numerics | None = None,
) -> keras.Model:
    """Build an MLP-Mixer, optionally with upstream weights.

    Args:
        variant: "<size>/<patch>" with size S, B or L, e.g. "B/16"; or a MixerArch.
        include_top: end with the classification head (mean of tokens -> Dense).
        weights: None, a registered tag (`vit-zoo list`), or a local .npz (Google layout),
            .safetensors (timm layout), .weights.h5 or .keras file.
        input_tensor, input_shape: the image input; height and width must be fixed and
            divisible by the patch size, and with weights give the checkpoint's patch count.
        pooling: "avg" or None; with include_top=False and pooling=None the output is the
            token sequence (B, N, D) after the pre-head LayerNorm.
        classes, classifier_activation: the head; a class count other than the checkpoint's
            gets a zero-initialized head (with a warning).
        include_preprocessing: inputs are RGB in [0, 255], normalized as the checkpoint expects.
        dropout_rate: dropout inside the MLPs; drop_path_rate: stochastic depth, rising
            linearly over the blocks.
        name: model name.
        numerics: override the activation / LayerNorm epsilon / normalization of the
            checkpoint record (Google's Mixer weights: tanh-GELU, 1e-6, x / 127.5 - 1).
    """
    arch = decode_variant(variant)
    start = common.start(FAMILY, arch.variant, weights, TRANSLATORS, LAYOUT_NUMERICS, numerics,
                         input_tensor, input_shape,
                         lambda checkpoint: _trained_size(checkpoint, arch) or DEFAULT_SIZE)
    height, width = start.fixed_size(
        "MLP-Mixer needs a fixed input size: its token-mixing MLPs have one weight per patch")
    num_tokens = (height // arch.patch_size) * (width // arch.patch_size)
    trained_tokens = _trained_tokens(start.checkpoint)
    if trained_tokens and num_tokens != trained_tokens:
        raise ValueError(
            f"Mixer-{arch.variant} weights {os.fspath(weights)!r} were trained on "
            f"{trained_tokens} patches; "
            f"a {height}x{width} input gives {num_tokens}. Token mixing is tied to the number "
            f"of patches: use an input size with {trained_tokens} patches, e.g. "
            f"{_sizes_for(trained_tokens, arch.patch_size)}."
        )
    if pooling not in (None, "avg"):
        raise ValueError(f"Mixer pooling must be 'avg' or None, got {pooling!r}.")
    numerics = start.numerics

    x = common.normalization(numerics)(start.images) if include_preprocessing else start.images
    x = PatchEmbedding(arch.patch_size, arch.hidden_dim, name=names.STEM)(x)
    x = keras.layers.Reshape((num_tokens, arch.hidden_dim), name="tokens")(x)
    for index in range(arch.depth):
        x = MixerBlock(
            arch.tokens_mlp_dim,
            arch.channels_mlp_dim,
            activation=numerics.activation,
            layer_norm_epsilon=numerics.layer_norm_epsilon,
            dropout_rate=dropout_rate,
            drop_path_rate=drop_path_rate * index / max(arch.depth - 1, 1),
            name=names.block(index),
        )(x)
    x = LayerNormalization(epsilon=numerics.layer_norm_epsilon, name=names.FINAL_NORM)(x)
    if include_top or pooling == "avg":
        x = TokenPooling("avg", num_prefix_tokens=0, name="pool")(x)
    if include_top:
        x = common.classifier(start.classes(classes), classifier_activation)(x)
    return start.finish(x, name or "mixer_" + arch.variant.replace("/", "").lower())


def _trained_tokens(checkpoint) -> int | None:
    """The patch count a checkpoint's token-mixing MLPs were trained for."""
    kernel = checkpoint.shape(f"{names.block(0)}/token_mixing/fc1/kernel") if checkpoint else None
    return kernel[0] if kernel else None


def _trained_size(checkpoint, arch: MixerArch) -> int | None:
    """The square input size of a checkpoint: its record's, else from its patch count."""
    resolution, tokens = common.record_resolution(checkpoint), _trained_tokens(checkpoint)
    if resolution:
        return resolution
    if tokens and math.isqrt(tokens) ** 2 == tokens:
        return math.isqrt(tokens) * arch.patch_size
    return None


def _variant_builder(variant: str):
    arch = decode_variant(variant)
    return common.named_builder(
        Mixer, variant, "Mixer_" + variant.replace("/", ""),
        f"Mixer-{variant}: width {arch.hidden_dim}, {arch.depth} blocks, token MLP "
        f"{arch.tokens_mlp_dim}, channel MLP {arch.channels_mlp_dim}, {arch.patch_size} px "
        "patches. Arguments as vit_zoo.Mixer (minus `variant`).",
    )


Mixer_S32 = _variant_builder("S/32")
Mixer_S16 = _variant_builder("S/16")
Mixer_B32 = _variant_builder("B/32")
Mixer_B16 = _variant_builder("B/16")
Mixer_L32 = _variant_builder("L/32")
Mixer_L16 = _variant_builder("L/16")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {f"Mixer_{v.replace('/', '')}": (FAMILY, v) for v in VARIANTS}
