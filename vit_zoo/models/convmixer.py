"""ConvMixer ("Patches Are All You Need?", Trockman & Kolter 2022).

A ViT's patch embedding, then blocks that mix space with a depth-wise convolution (in a
residual branch) and channels with a 1x1 convolution, each followed by the activation and a
BatchNorm; no attention, no position embedding, no tokens. Variants are "<dim>/<depth>";
`kernel_size` and `patch_size` come from the variant table for the released models
("768/32": 7 and 7, "1024/20": 9 and 14, "1536/20": 9 and 7), else timm's defaults 9 and 7.
One stage, at the stride of the patch; the model takes any input size divisible by the patch.

Numerics: the BatchNorm epsilon is `Numerics.layer_norm_epsilon` (1e-5, PyTorch's default);
the activation is exact GELU except for ConvMixer-768/32, trained with ReLU.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers import PatchEmbedding
from vit_zoo.layers.convmixer import ActivationBatchNorm, ConvMixerBlock
from vit_zoo.models import common
from vit_zoo.weights import convmixer_layout

FAMILY = "convmixer"
DEFAULT_SIZE = 224
#: ConvMixer weights (timm): exact GELU, BatchNorm epsilon 1e-5, ImageNet mean/std.
CONVMIXER = nm.CONVMIXER
#: ConvMixer-768/32's weights: the same with ReLU.
CONVMIXER_RELU = nm.CONVMIXER_RELU
TRANSLATORS = {"timm_safetensors": convmixer_layout.from_timm}
#: A file's numerics by layout; the builder puts default_numerics(arch) in, so that a local
#: timm file of ConvMixer-768/32 runs with ReLU.
LAYOUT_NUMERICS = {"timm_safetensors": CONVMIXER}

# "<dim>/<depth>": (kernel_size, patch_size, numerics) of the released models (timm's
# convmixer_768_32, convmixer_1024_20_ks9_p14, convmixer_1536_20).
_RELEASED = {
    "768/32": (7, 7, CONVMIXER_RELU),
    "1024/20": (9, 14, CONVMIXER),
    "1536/20": (9, 7, CONVMIXER),
}
VARIANTS = tuple(_RELEASED)


@dataclass(frozen=True)
class ConvMixerArch:
    variant: str
    dim: int
    depth: int
    kernel_size: int = 9
    patch_size: int = 7


def decode_variant(variant: str | ConvMixerArch) -> ConvMixerArch:
    """'768/32' -> ConvMixerArch(dim=768, depth=32, kernel_size=7, patch_size=7); any other
    '<dim>/<depth>' gets kernel 9 and patch 7."""
    if isinstance(variant, ConvMixerArch):
        return variant
    match = re.fullmatch(r"(\d+)/(\d+)", variant) if isinstance(variant, str) else None
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(
            f"Unknown ConvMixer variant {variant!r}: expected '<dim>/<depth>' with positive "
            f"integers, e.g. one of {list(VARIANTS)}."
        )
    kernel_size, patch_size, _ = _RELEASED.get(variant, (9, 7, None))
    return ConvMixerArch(variant, int(match.group(1)), int(match.group(2)), kernel_size,
                         patch_size)


def default_numerics(arch: ConvMixerArch) -> nm.Numerics:
    """What a model of `arch` runs with when no checkpoint or caller says: the released
    weights' numerics for a released variant (ReLU for 768/32), else exact GELU."""
    return _RELEASED[arch.variant][2] if arch.variant in _RELEASED else CONVMIXER


def ConvMixer(
    variant: str | ConvMixerArch = "768/32",
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
    kernel_size: int | None = None,
    patch_size: int | None = None,
    numerics: nm.Numerics | None = None,
) -> keras.Model:
    """Build a ConvMixer, optionally with the authors' weights (timm hub copies).

    Args:
        variant: "<dim>/<depth>", e.g. "768/32"; or a ConvMixerArch.
        include_top: end with global average pooling -> dropout -> classification head.
        weights: None, a registered tag (`vit-zoo list`), or a local timm-layout .safetensors,
            .weights.h5 or .keras file.
        input_tensor, input_shape: the image input; height and width divisible by the patch
            size, or None for a model that takes any such size. Defaults to the checkpoint's
            resolution, else 224.
        pooling: "avg" or None. With include_top=False and pooling=None the output is the
            feature map (B, H / patch, W / patch, dim) of the last block.
        classes, classifier_activation: the head; a class count other than the checkpoint's
            gets a zero-initialized head (with a warning).
        include_preprocessing: inputs are RGB in [0, 255], normalized as the checkpoint expects.
        dropout_rate: dropout before the head (timm's drop_rate); drop_path_rate: stochastic
            depth on the depth-wise residual branches, rising linearly over the blocks (an
            addition: timm's ConvMixer has none).
        name: model name.
        kernel_size, patch_size: the depth-wise kernel and the patch size; default to the
            variant's (see decode_variant).
        numerics: override the checkpoint's activation ("gelu", "relu", ...), BatchNorm epsilon
            (the `layer_norm_epsilon` field) and normalization.
    """
    arch = decode_variant(variant)
    arch = dataclasses.replace(
        arch, kernel_size=arch.kernel_size if kernel_size is None else kernel_size,
        patch_size=arch.patch_size if patch_size is None else patch_size)
    for field in ("dim", "depth", "kernel_size", "patch_size"):
        value = getattr(arch, field)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"ConvMixer {field} must be a positive integer, got {value!r}.")
    layout_numerics = dict.fromkeys(LAYOUT_NUMERICS, default_numerics(arch))
    start = common.start(FAMILY, arch.variant, weights, TRANSLATORS, layout_numerics, numerics,
                         input_tensor, input_shape,
                         lambda checkpoint: common.record_resolution(checkpoint) or DEFAULT_SIZE,
                         default_numerics=default_numerics(arch))
    _check_checkpoint_shape(start.checkpoint, arch, weights)
    if pooling not in (None, "avg"):
        raise ValueError(f"ConvMixer pooling must be 'avg' or None, got {pooling!r}.")
    activation, epsilon = start.numerics.activation, start.numerics.layer_norm_epsilon

    x = common.normalization(start.numerics)(start.images) if include_preprocessing \
        else start.images
    x = PatchEmbedding(arch.patch_size, arch.dim, name=names.PATCH_EMBEDDING)(x)
    x = ActivationBatchNorm(activation, epsilon=epsilon, name="patch_norm")(x)
    for index in range(arch.depth):
        x = ConvMixerBlock(
            arch.kernel_size,
            activation=activation,
            epsilon=epsilon,
            drop_path_rate=drop_path_rate * index / max(arch.depth - 1, 1),
            name=names.block(index),
        )(x)
    if include_top or pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = keras.layers.Dropout(dropout_rate, name="head_drop")(x)
        x = common.classifier(start.classes(classes), classifier_activation)(x)
    default_name = f"convmixer_{arch.dim}_{arch.depth}_k{arch.kernel_size}_p{arch.patch_size}"
    return start.finish(x, name or default_name)


def _check_checkpoint_shape(checkpoint, arch: ConvMixerArch, weights) -> None:
    """Weights made for another patch or kernel size: say which arguments fit them."""
    found = {
        "patch_size": checkpoint.shape(f"{names.PATCH_EMBEDDING}/kernel") if checkpoint else None,
        "kernel_size": checkpoint.shape(f"{names.block(0)}/depthwise/kernel")
        if checkpoint else None,
    }
    wrong = {field: shape[0] for field, shape in found.items()
             if shape and shape[0] != getattr(arch, field)}
    if wrong:
        have = ", ".join(f"{field}={getattr(arch, field)}" for field in wrong)
        fit = ", ".join(f"{field}={size}" for field, size in wrong.items())
        raise ValueError(
            f"ConvMixer weights {os.fspath(weights)!r} were trained with {fit}; the model has "
            f"{have}. Pass {fit} to build the architecture they fit."
        )


def _variant_builder(variant: str):
    arch = decode_variant(variant)
    activation = default_numerics(arch).activation
    return common.named_builder(
        ConvMixer, variant, "ConvMixer_" + variant.replace("/", "_"),
        f"ConvMixer-{variant}: width {arch.dim}, {arch.depth} blocks, {arch.kernel_size}x"
        f"{arch.kernel_size} depth-wise kernels, {arch.patch_size} px patches, {activation}. "
        "Arguments as vit_zoo.ConvMixer (minus `variant`).",
    )


ConvMixer_768_32 = _variant_builder("768/32")
ConvMixer_1024_20 = _variant_builder("1024/20")
ConvMixer_1536_20 = _variant_builder("1536/20")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {"ConvMixer_" + v.replace("/", "_"): (FAMILY, v) for v in VARIANTS}
