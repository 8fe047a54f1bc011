"""PVT v2 ("PVT v2: Improved Baselines with Pyramid Vision Transformer", Wang et al. 2021).

Variants "b0" ... "b5" and "b2_li" decoded by one table. Four stages at strides 4, 8, 16 and
32, each opened by an overlapping strided convolution (7x7 / 4, then 3x3 / 2) and closed by a
LayerNorm; attention reads keys and values from a spatially reduced map, and the MLP holds a
depth-wise 3x3 convolution, so the model has no position embedding and takes any input size
divisible by 32, also one left open (input_shape=(None, None, 3)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers import LayerNormalization
from vit_zoo.layers.pvt_v2 import OverlapPatchEmbedding, PVTv2Block
from vit_zoo.models import common
from vit_zoo.weights import pvt_v2_layout
from vit_zoo.weights.pvt_v2_layout import block_name, downsample_name, norm_name

FAMILY = "pvt_v2"
DEFAULT_SIZE = 224
#: The upstream numerics: exact GELU, LayerNorm eps 1e-6 in blocks and after stages (the patch
#: embeddings' and reduced keys' norms use 1e-5, a constant of the layers), ImageNet mean/std.
PVT_V2 = nm.PVT_V2
TRANSLATORS = {"timm_safetensors": pvt_v2_layout.from_timm}
LAYOUT_NUMERICS = {"timm_safetensors": PVT_V2}

_WIDE = (64, 128, 320, 512)
# name: (embed_dims, depths, extra fields); every variant has heads (1, 2, 5, 8).
_SIZES = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2), {}),
    "b1": (_WIDE, (2, 2, 2, 2), {}),
    "b2": (_WIDE, (3, 4, 6, 3), {}),
    "b3": (_WIDE, (3, 4, 18, 3), {}),
    "b4": (_WIDE, (3, 8, 27, 3), {}),
    "b5": (_WIDE, (3, 6, 40, 3), {"mlp_ratios": (4.0, 4.0, 4.0, 4.0)}),
    "b2_li": (_WIDE, (3, 4, 6, 3), {"linear": True}),
}
VARIANTS = tuple(_SIZES)


@dataclass(frozen=True)
class PVTv2Arch:
    """One PVT v2 shape: per-stage widths, depths, heads, key/value reduction ratios and MLP
    ratios; `linear` for linear spatial reduction (keys from a 7x7 pooled map, the -li
    variants)."""

    variant: str
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...] = (1, 2, 5, 8)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    mlp_ratios: tuple[float, ...] = (8.0, 8.0, 4.0, 4.0)
    linear: bool = False

    @property
    def stride(self) -> int:
        """The total downsampling: 4 by the stem, 2 by each later stage."""
        return 4 * 2 ** (len(self.depths) - 1)


def decode_variant(variant: str | PVTv2Arch) -> PVTv2Arch:
    """'b2' -> PVTv2Arch(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), ...)."""
    if isinstance(variant, str) and variant.lower() in _SIZES:
        dims, depths, extra = _SIZES[variant.lower()]
        return PVTv2Arch(variant.lower(), dims, depths, **extra)
    if not isinstance(variant, PVTv2Arch):
        raise ValueError(f"Unknown PVT v2 variant {variant!r}; expected one of {list(_SIZES)}.")
    per_stage = (variant.embed_dims, variant.num_heads, variant.sr_ratios, variant.mlp_ratios)
    if any(len(values) != len(variant.depths) for values in per_stage):
        raise ValueError(
            f"PVT v2 shape {variant}: embed_dims, num_heads, sr_ratios and mlp_ratios need one "
            f"entry per stage, {len(variant.depths)} as in depths (sr_ratios too when linear).")
    return variant


def _check_size(height: int | None, width: int | None, stride: int) -> None:
    """Known sides must be multiples of the total stride. (Sides left open are not checked
    when images arrive: other sizes then give what timm gives at them.)"""
    for side, size in (("height", height), ("width", width)):
        if size is not None and size % stride:
            nearest = max(round(size / stride), 1) * stride
            raise ValueError(
                f"PVT v2 input {side} {size} is not divisible by {stride} (the stride of its "
                f"last stage). Resize or crop the images to a multiple of {stride}, such as "
                f"{nearest}.")


def PVTv2(
    variant: str | PVTv2Arch = "b0",
    include_top: bool = True,
    weights: str | os.PathLike | None = None,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int | None = None,
    classifier_activation="softmax",
    include_preprocessing: bool = True,
    dropout_rate: float = 0.0,
    attention_dropout: float = 0.0,
    drop_path_rate: float = 0.0,
    name: str | None = None,
    *,
    numerics: nm.Numerics | None = None,
) -> keras.Model:
    """Build a PVT v2, optionally with the authors' ImageNet-1k weights (timm hub copies).

    Args:
        variant: "b0", "b1", "b2", "b3", "b4", "b5" or "b2_li"; or a PVTv2Arch.
        include_top: end with global average -> classification head.
        weights: None, a registered tag (`vit-zoo list`), or a local timm-layout .safetensors
            (or the authors' key layout saved as .safetensors), .weights.h5 or .keras file.
        input_tensor, input_shape: the image input; height and width divisible by 32, or None
            for a model that takes any such size. Defaults to the checkpoint's resolution,
            else 224.
        pooling: "avg" or None. With include_top=False and pooling=None the outputs are the four
            stage feature maps (strides 4, 8, 16, 32, each after its stage's LayerNorm), the
            backbone of SegFormer-style heads.
        classes, classifier_activation: the head; another class count than the checkpoint's
            gets a zero-initialized head (with a warning).
        include_preprocessing: inputs are RGB in [0, 255], normalized as the checkpoint expects.
        dropout_rate: after the attention projections and inside the MLPs; attention_dropout:
            on the attention probabilities; drop_path_rate: stochastic depth, rising linearly
            over all blocks.
        name: model name.
        numerics: override the checkpoint's activation / block LayerNorm epsilon /
            normalization (PVT v2: exact GELU, 1e-6, ImageNet mean/std).
    """
    arch = decode_variant(variant)
    start = common.start(FAMILY, arch.variant, weights, TRANSLATORS, LAYOUT_NUMERICS, numerics,
                         input_tensor, input_shape,
                         lambda checkpoint: common.record_resolution(checkpoint) or DEFAULT_SIZE,
                         default_numerics=PVT_V2)
    _check_size(*start.size, arch.stride)
    if pooling not in (None, "avg"):
        raise ValueError(f"PVT v2 pooling must be 'avg' or None, got {pooling!r}.")
    numerics = start.numerics

    x = common.normalization(numerics)(start.images) if include_preprocessing else start.images
    last, total, index, stages = len(arch.depths) - 1, sum(arch.depths), 0, []
    for stage, (dim, depth) in enumerate(zip(arch.embed_dims, arch.depths)):
        if stage == 0:
            x = OverlapPatchEmbedding(7, 4, dim, name=names.PATCH_EMBEDDING)(x)
        else:
            x = OverlapPatchEmbedding(3, 2, dim, name=downsample_name(stage))(x)
        for block in range(depth):
            x = PVTv2Block(
                arch.num_heads[stage],
                arch.sr_ratios[stage],
                arch.linear,
                arch.mlp_ratios[stage],
                activation=numerics.activation,
                layer_norm_epsilon=numerics.layer_norm_epsilon,
                dropout_rate=dropout_rate,
                attention_dropout=attention_dropout,
                drop_path_rate=drop_path_rate * index / max(total - 1, 1),
                name=block_name(stage, block),
            )(x)
            index += 1
        x = LayerNormalization(epsilon=numerics.layer_norm_epsilon,
                               name=norm_name(stage, last))(x)
        stages.append(x)
    return start.finish_stages(stages, include_top, pooling, classes, classifier_activation,
                               name or f"pvt_v2_{arch.variant}")


def _variant_builder(variant: str):
    arch = decode_variant(variant)
    return common.named_builder(
        PVTv2, variant, f"PVTv2_{variant.upper()}",
        f"PVT v2-{variant}: widths {arch.embed_dims}, depths {arch.depths}, heads "
        f"{arch.num_heads}, key/value reduction {'7x7 pooling' if arch.linear else arch.sr_ratios}"
        ". Arguments as vit_zoo.PVTv2 (minus `variant`).",
    )


PVTv2_B0 = _variant_builder("b0")
PVTv2_B1 = _variant_builder("b1")
PVTv2_B2 = _variant_builder("b2")
PVTv2_B3 = _variant_builder("b3")
PVTv2_B4 = _variant_builder("b4")
PVTv2_B5 = _variant_builder("b5")
PVTv2_B2_LI = _variant_builder("b2_li")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {f"PVTv2_{v.upper()}": (FAMILY, v) for v in VARIANTS}
