"""XCiT ("XCiT: Cross-Covariance Image Transformers", El-Nouby et al. 2021).

Variants "<size><depth>/<patch>" decoded by one table: sizes N(ano), T(iny), S(mall), M(edium),
L(arge), 12 or 24 XCA blocks, 8 or 16 px patches (timm's released shapes: N12, T12, T24, S12,
S24, M24, L24, each at /16 and /8). A convolutional stem, then XCA blocks on the patch grid,
then two class-attention blocks and a head on the class token. Nothing depends on the input
size (the position encoding is computed from the grid), so a model may be built for any
height and width, or for sizes unknown until run time (input_shape=(None, None, 3)); weights
trained at 224 px load unchanged at any size.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers import ClassToken, LayerNormalization, TokenPooling
from vit_zoo.layers.xcit import (
    ClassAttentionBlock,
    ConvPatchEmbedding,
    FourierPositionEncoding,
    XCABlock,
)
from vit_zoo.models import common
from vit_zoo.weights import xcit_layout

FAMILY = "xcit"
DEFAULT_SIZE = 224
#: XCiT checkpoints (Facebook's, via timm): exact GELU, LayerNorm eps 1e-6, ImageNet mean/std.
XCIT = nm.XCIT
TRANSLATORS = {"timm_safetensors": xcit_layout.from_timm}
LAYOUT_NUMERICS = {"timm_safetensors": XCIT}
POOLINGS = ("token", "avg")

# size letter: (embed_dim, num_heads, timm's name)
_SIZES = {
    "N": (128, 4, "nano"),
    "T": (192, 4, "tiny"),
    "S": (384, 8, "small"),
    "M": (512, 8, "medium"),
    "L": (768, 16, "large"),
}
_RELEASED = ("N12", "T12", "T24", "S12", "S24", "M24", "L24")
VARIANTS = tuple(f"{shape}/{patch}" for patch in (16, 8) for shape in _RELEASED)


@dataclass(frozen=True)
class XCiTArch:
    """An XCiT shape. `layer_scale_init` only matters for training from scratch (XCiT: 1 for
    12 blocks, 1e-5 for more); `tokens_norm`: the class-attention blocks normalize every token
    before the MLP (all released sizes but nano)."""

    variant: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    tokens_norm: bool = True
    layer_scale_init: float = 1.0
    class_attention_depth: int = 2
    mlp_ratio: float = 4.0

    @property
    def mlp_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


def decode_variant(variant: str | XCiTArch) -> XCiTArch:
    """'T12/16' -> XCiTArch(embed_dim=192, depth=12, num_heads=4, patch_size=16)."""
    if isinstance(variant, XCiTArch):
        return variant
    match = re.fullmatch(r"([A-Z])(\d+)/(\d+)", variant) if isinstance(variant, str) else None
    if not match or match.group(1) not in _SIZES or match.group(3) not in ("8", "16"):
        raise ValueError(
            f"Unknown XCiT variant {variant!r}: expected '<size><depth>/<patch>' with size in "
            f"{list(_SIZES)} and patch 8 or 16, e.g. 'T12/16'; released: {list(VARIANTS)}."
        )
    size, depth, patch = match.group(1), int(match.group(2)), int(match.group(3))
    embed_dim, num_heads, _ = _SIZES[size]
    return XCiTArch(variant, embed_dim, depth, num_heads, patch, tokens_norm=size != "N",
                    layer_scale_init=1.0 if depth <= 12 else 1e-5)


def timm_name(variant: str, resolution: int = DEFAULT_SIZE) -> str:
    """'T12/16' -> 'xcit_tiny_12_p16_224', timm's model name."""
    arch = decode_variant(variant)
    size = _SIZES[variant[0]][2]
    return f"xcit_{size}_{arch.depth}_p{arch.patch_size}_{resolution}"


def class_attention_block(index: int) -> str:
    """Class-attention block `index` (after the XCA blocks, which are names.block(i))."""
    return f"cls_attn_block_{index}"


def XCiT(
    variant: str | XCiTArch = "T12/16",
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
    """Build an XCiT, optionally with Facebook's weights (timm hub copies).

    Args:
        variant: "<size><depth>/<patch>", e.g. "T12/16" (see VARIANTS); or an XCiTArch.
        include_top: end with the classification head on the class token.
        weights: None, a registered tag (`vit-zoo list`), or a local timm-layout .safetensors,
            .weights.h5 or .keras file.
        input_tensor, input_shape: the image input; any height and width (the grid is
            ceil(H / patch) x ceil(W / patch)), or (None, None, 3) for a model that takes any
            size at run time. Defaults to the checkpoint's resolution, else 224.
        pooling: "token" (the class token; the default with include_top) or "avg" (mean of
            the patch tokens), both after the class-attention blocks and the final LayerNorm.
            With include_top=False and pooling=None the output is the token sequence
            (B, 1 + N, D), class token first, after the final LayerNorm.
        classes, classifier_activation: the head; a class count other than the checkpoint's
            gets a zero-initialized head (with a warning).
        include_preprocessing: inputs are RGB in [0, 255], normalized as the checkpoint expects.
        dropout_rate: after the attention projections and inside the MLPs; attention_dropout:
            on the attention probabilities; drop_path_rate: stochastic depth of the XCA blocks,
            the same in every block as XCiT trains it (the class-attention blocks have none).
        name: model name.
        numerics: override the checkpoint's activation / LayerNorm epsilon / normalization
            (XCiT: exact GELU, 1e-6, ImageNet mean/std).
    """
    arch = decode_variant(variant)
    start = common.start(FAMILY, arch.variant, weights, TRANSLATORS, LAYOUT_NUMERICS, numerics,
                         input_tensor, input_shape,
                         lambda checkpoint: common.record_resolution(checkpoint) or DEFAULT_SIZE,
                         default_numerics=XCIT)
    if pooling is None and include_top:
        pooling = "token"
    if pooling not in (*POOLINGS, None):
        raise ValueError(f"XCiT pooling must be one of {POOLINGS} or None, got {pooling!r}.")
    epsilon, activation = start.numerics.layer_norm_epsilon, start.numerics.activation
    block = dict(activation=activation, layer_norm_epsilon=epsilon,
                 layer_scale_init=arch.layer_scale_init, dropout_rate=dropout_rate,
                 attention_dropout=attention_dropout)

    x = common.normalization(start.numerics)(start.images) if include_preprocessing \
        else start.images
    x = ConvPatchEmbedding(arch.patch_size, arch.embed_dim, activation,
                           name=names.PATCH_EMBEDDING)(x)
    # Made from the patch grid only for its batch size; called here, the token joins the
    # embeddings' learning-rate group (timm's "stem": cls_token, pos_embed, patch_embed).
    cls = ClassToken(name=names.CLASS_TOKEN)(x)
    x = FourierPositionEncoding(name=names.POSITION_EMBEDDING)(x)
    x = keras.layers.Dropout(dropout_rate, name="pos_dropout")(x)
    for index in range(arch.depth):
        x = XCABlock(arch.num_heads, arch.mlp_dim, drop_path_rate=drop_path_rate,
                     name=names.block(index), **block)(x)
    x = keras.layers.Reshape((-1, arch.embed_dim), name="tokens")(x)
    x = keras.layers.Concatenate(axis=1, name="with_cls_token")([cls, x])
    for index in range(arch.class_attention_depth):
        x = ClassAttentionBlock(arch.num_heads, arch.mlp_dim, tokens_norm=arch.tokens_norm,
                                name=class_attention_block(index), **block)(x)
    x = LayerNormalization(epsilon=epsilon, name=names.FINAL_NORM)(x)
    if pooling is not None:
        x = TokenPooling(pooling, num_prefix_tokens=1, name="pool")(x)
    if include_top:
        x = keras.layers.Dropout(dropout_rate, name="head_dropout")(x)
        x = common.classifier(start.classes(classes), classifier_activation)(x)
    return start.finish(x, name or "xcit_" + arch.variant.replace("/", "_p").lower())


def _python_name(variant: str) -> str:
    """'T12/16' -> 'XCiT_T12_P16'."""
    return "XCiT_" + variant.replace("/", "_P")


def _variant_builder(variant: str):
    arch = decode_variant(variant)
    return common.named_builder(
        XCiT, variant, _python_name(variant),
        f"XCiT-{variant}: width {arch.embed_dim}, {arch.depth} XCA blocks + "
        f"{arch.class_attention_depth} class-attention blocks, {arch.num_heads} heads, "
        f"{arch.patch_size} px patches. Arguments as vit_zoo.XCiT (minus `variant`).",
    )


XCiT_N12_P16 = _variant_builder("N12/16")
XCiT_T12_P16 = _variant_builder("T12/16")
XCiT_T24_P16 = _variant_builder("T24/16")
XCiT_S12_P16 = _variant_builder("S12/16")
XCiT_S24_P16 = _variant_builder("S24/16")
XCiT_M24_P16 = _variant_builder("M24/16")
XCiT_L24_P16 = _variant_builder("L24/16")
XCiT_N12_P8 = _variant_builder("N12/8")
XCiT_T12_P8 = _variant_builder("T12/8")
XCiT_T24_P8 = _variant_builder("T24/8")
XCiT_S12_P8 = _variant_builder("S12/8")
XCiT_S24_P8 = _variant_builder("S24/8")
XCiT_M24_P8 = _variant_builder("M24/8")
XCiT_L24_P8 = _variant_builder("L24/8")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {_python_name(v): (FAMILY, v) for v in VARIANTS}
