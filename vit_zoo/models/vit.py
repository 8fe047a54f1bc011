"""Vision Transformer ("An Image is Worth 16x16 Words", Dosovitskiy et al. 2021), plain and
hybrid (a ResNet stem in front of the transformer).

Variants are short strings decoded by one table: "B/16" is the Base width/depth with 16 px
patches; "R50+B/16" the same transformer on the stride-16 features of the paper's R50 stem.
`ViT(variant, ...)` builds any of them with keras.applications-style arguments;
`ViT_B16(...)`, `R50_ViT_B16(...)` and friends are the same call with the variant filled in.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers import (
    POOLINGS,
    ClassToken,
    EncoderBlock,
    MultiHeadAttentionPooling,
    PatchEmbedding,
    PositionEmbedding,
    ResNetStem,
    TokenPooling,
)
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.models import common
from vit_zoo.weights import vit_layout
from vit_zoo.weights.checkpoint import Checkpoint

DEFAULT_SIZE = 224
TRANSLATORS = {"google_npz": vit_layout.from_google, "timm_safetensors": vit_layout.from_timm}
LAYOUT_NUMERICS = {"google_npz": nm.GOOGLE, "timm_safetensors": nm.TIMM_VIT}

# name: (hidden_dim, depth, num_heads, mlp_dim)
_SIZES = {
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "M": (512, 12, 8, 2048),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "H": (1280, 32, 16, 5120),
}


# Hybrids: variant -> (ResNet stage depths, transformer size, patch size on the stem's output).
# The stem's stride is 4 for the root alone and 4 * 2**(stages - 1) otherwise. "R+Ti/16" is the
# AugReg name; its 8-px patches on the stride-4 root give 32-px cells at the input.
_HYBRIDS = {
    "R50+B/16": ((3, 4, 9), "B", 1),
    "R50+L/32": ((3, 4, 6, 3), "L", 1),
    "R26+B/32": ((2, 2, 2, 2), "B", 1),
    "R26+S/32": ((2, 2, 2, 2), "S", 1),
    "R+Ti/16": ((), "Ti", 8),
}


@dataclass(frozen=True)
class ViTArch:
    """The shape of a ViT variant. `stem_depths` is None for a plain ViT, else the ResNet
    stem's stage depths (() for its root alone) and `patch_size` applies to the stem output."""

    variant: str
    hidden_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    stem_depths: tuple[int, ...] | None = None

    @property
    def family(self) -> str:
        """Registry family: "hybrid" with a ResNet stem, else "vit"."""
        return "vit" if self.stem_depths is None else "hybrid"

    @property
    def stem_stride(self) -> int:
        if self.stem_depths is None:
            return 1
        return 4 * 2 ** max(len(self.stem_depths) - 1, 0)

    @property
    def cell_size(self) -> int:
        """Input pixels per token side."""
        return self.patch_size * self.stem_stride

    def tokens_along(self, pixels: int) -> int:
        """Tokens along an image side of `pixels` (the stem pads "SAME": ceil(x / stride))."""
        return -(-pixels // self.stem_stride) // self.patch_size


def decode_variant(variant: str | ViTArch) -> ViTArch:
    """'B/16' -> ViTArch(hidden_dim=768, depth=12, num_heads=12, mlp_dim=3072, patch_size=16).

    A ViTArch passes through unchanged: custom shapes need no table entry.
    """
    if isinstance(variant, ViTArch):
        return variant
    if variant in _HYBRIDS:
        stem_depths, size, patch_size = _HYBRIDS[variant]
        return ViTArch(variant, *_SIZES[size], patch_size=patch_size, stem_depths=stem_depths)
    match = re.fullmatch(r"(\w+)/(\d+)", variant)
    if not match or match.group(1) not in _SIZES:
        raise ValueError(
            f"Unknown ViT variant {variant!r}: expected '<size>/<patch>' with size in "
            f"{list(_SIZES)}, e.g. 'B/16', or a hybrid in {list(_HYBRIDS)}."
        )
    return ViTArch(variant, *_SIZES[match.group(1)], patch_size=int(match.group(2)))


def _side(length: int) -> int | None:
    side = int(round(length**0.5))
    return side if side * side == length else None


@dataclass(frozen=True)
class _CheckpointFacts:
    """What a checkpoint says about the model it fits (None: it does not say)."""

    classes: int | None = None
    representation_size: int | None = None
    class_token: bool | None = None
    pooling: str | None = None
    layer_scale: bool = False
    resolution: int | None = None
    distillation_token: bool = False

    @classmethod
    def of(cls, checkpoint: Checkpoint | None, cell_size: int) -> _CheckpointFacts:
        """`cell_size`: input pixels per token side (patch size times any stem stride)."""
        if checkpoint is None or checkpoint.arrays is None:
            record = checkpoint.record if checkpoint else None
            return cls(resolution=record.resolution if record else None)
        pre_logits = checkpoint.shape("pre_logits/kernel")
        class_token = checkpoint.shape("cls_token/token") is not None
        if checkpoint.shape("map_head/probe"):
            pooling = "map"
        else:
            pooling = "token" if class_token else "avg"
        resolution = checkpoint.record.resolution if checkpoint.record else None
        positions = checkpoint.shape("pos_embed/embedding")
        distillation_token = checkpoint.shape("dist_token/token") is not None
        if resolution is None and positions is not None:
            side = _side(positions[1] - int(class_token) - int(distillation_token))
            resolution = side * cell_size if side else None
        return cls(
            classes=checkpoint.classes,
            representation_size=pre_logits[-1] if pre_logits else None,
            class_token=class_token,
            pooling=pooling,
            layer_scale=checkpoint.shape("block_0/ls1/gamma") is not None,
            resolution=resolution,
            distillation_token=distillation_token,
        )


def _encode(parts: dict[str, keras.layers.Layer], images, taps: dict,
            tap_attention: bool = False, patch_transform=None):
    """Images -> the token sequence after the final norm, recording intermediates in `taps`
    (the attention probabilities too with `tap_attention`). `patch_transform` maps the patch
    embeddings (B, h, w, D) before the position embedding is added: masked-patch pretraining
    corrupts them there (vit_zoo.train.MaskedPatchPrediction)."""
    x = parts[names.PREPROCESSING](images) if names.PREPROCESSING in parts else images
    if names.STEM in parts:  # hybrids: a ResNet turns pixels into a feature map first
        x = taps["stem"] = parts[names.STEM](x)
    patches = parts[names.PATCH_EMBEDDING](x)
    if patch_transform is not None:
        patches = patch_transform(patches)
    if names.DISTILLATION_TOKEN in parts:  # DeiT: class token, distillation token, patches
        prefix = parts["prefix_tokens"]([parts[names.CLASS_TOKEN](patches),
                                         parts[names.DISTILLATION_TOKEN](patches)])
        tokens = parts[names.POSITION_EMBEDDING](patches, prefix)
    elif names.CLASS_TOKEN in parts:
        tokens = parts[names.POSITION_EMBEDDING](patches, parts[names.CLASS_TOKEN](patches))
    else:
        tokens = parts[names.POSITION_EMBEDDING](patches)
    tokens = parts["pos_dropout"](tokens)
    if "norm_pre" in parts:  # CLIP's image tower normalizes the tokens before the blocks
        tokens = parts["norm_pre"](tokens)
    taps["embedding"] = tokens
    index = 0
    while names.block(index) in parts:
        block = parts[names.block(index)]
        if not tap_attention:
            tokens = block(tokens)
        else:
            tap = common.CallTap(block, return_attention_scores=True)
            tokens, taps[f"attention_{index}"] = tap(tokens)
            taps[names.block(index)] = tokens
        index += 1
    taps["encoded"] = parts[names.FINAL_NORM](tokens)
    return taps["encoded"]


def _forward(parts: dict[str, keras.layers.Layer], images, collect: dict | None = None):
    """The ViT computation over named layers; with `collect`, also records intermediates."""
    taps = collect if collect is not None else {}
    output = _encode(parts, images, taps, tap_attention=collect is not None)
    if names.MAP_HEAD in parts:
        if collect is None:
            output = parts[names.MAP_HEAD](output)
        else:
            tap = common.CallTap(parts[names.MAP_HEAD], return_attention_scores=True)
            output, taps["map_attention"] = tap(output)
        taps["pooled"] = output
    elif "pool" in parts:
        output = taps["pooled"] = parts["pool"](output)
    if names.PRE_LOGITS in parts:
        output = taps["pre_logits"] = parts[names.PRE_LOGITS](output)
    if names.DISTILLATION_HEAD in parts:  # DeiT: the mean of the two heads' logits
        distilled = parts[names.DISTILLATION_HEAD](parts["pool_dist"](taps["encoded"]))
        output = parts["head_mean"]([parts[names.HEAD](output), distilled])
        if "head_activation" in parts:
            output = parts["head_activation"](output)
        taps["logits"] = output
    elif names.HEAD in parts:
        output = taps["logits"] = parts[names.HEAD](output)
    return output


def with_intermediates(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s layers whose output is a dict of intermediate tensors.

    Keys: "embedding", "block_{i}" (tokens after block i), "attention_{i}" (attention
    probabilities (B, heads, N, N) of block i), "encoded" (after the final norm), and, when the
    model has them, "pooled", "map_attention", "pre_logits", "logits". The original model is
    untouched and pays nothing for this: the attention probabilities are computed only here.
    """
    parts = {layer.name: layer for layer in model.layers}
    if "patch_embed" not in parts or "pos_embed" not in parts:
        raise ValueError(f"{model.name} is not a vit_zoo ViT (no patch_embed / pos_embed layers).")
    collect: dict = {}
    _forward(parts, model.inputs[0], collect)
    return keras.Model(model.inputs, collect, name=f"{model.name}_intermediates")


def encode_tokens(model: keras.Model, images, patch_transform=None):
    """The token sequence (B, prefix + N, D) after `model`'s final norm, computed on `images`
    with `model`'s own layers (whatever its head and pooling). `patch_transform`, if given, maps
    the patch embeddings (B, h, w, D) before the position embedding is added: the hook
    masked-patch pretraining corrupts them through. Inside another model's `call`, the layers
    take `training` from that call."""
    parts = {layer.name: layer for layer in model.layers}
    if "patch_embed" not in parts or "pos_embed" not in parts:
        raise ValueError(f"{model.name} is not a vit_zoo ViT (no patch_embed / pos_embed layers).")
    return _encode(parts, images, {}, patch_transform=patch_transform)


def stem_features(model: keras.Model) -> keras.Model:
    """The ResNet stem of a hybrid on its own: images -> [root, stage 1, stage 2, ...] feature
    maps (strides 4, 4, 8, 16, ...), sharing the model's layers, for dense tasks (detection,
    segmentation) or as a CNN feature extractor."""
    parts = {layer.name: layer for layer in model.layers}
    if "stem" not in parts:
        raise ValueError(f"{model.name} has no ResNet stem; stem_features needs a hybrid ViT "
                         "such as R50_ViT_B16.")
    images = model.inputs[0]
    x = parts[names.PREPROCESSING](images) if names.PREPROCESSING in parts else images
    features = common.CallTap(parts[names.STEM], return_stages=True)(x)
    return keras.Model(model.inputs, features, name=f"{model.name}_stem")


def ViT(
    variant: str | ViTArch = "B/16",
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
    representation_size: int | None = None,
    layer_scale_init: float | None = None,
    position_interpolation: str = "bilinear",
    patch_bias: bool = True,
    pre_norm: bool = False,
    distillation_token: bool = False,
) -> keras.Model:
    """Build a Vision Transformer, optionally with upstream weights.

    Args:
        variant: "<size>/<patch>", size in Ti, S, M, B, L, H, e.g. "B/16"; or a ViTArch for a
            custom shape.
        include_top: end with the classification head.
        weights: None (random), a registered tag (see `vit-zoo list`), or the path of an
            upstream .npz, a timm-layout .safetensors, a .weights.h5 or a .keras file.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: (height, width, 3); any size divisible by the patch, or (None, None, 3) for
            a model that takes any size (position embeddings resampled in the graph). Defaults
            to the checkpoint's resolution, else 224.
        pooling: "token" (class token), "avg" (mean of patch tokens), "map" (attention
            pooling) or None. With include_top=False and pooling=None the output is the token
            sequence (B, 1 + N, D) after the final LayerNorm.
        classes: head size; defaults to the checkpoint's. A different count gets a new,
            zero-initialized head (with a warning).
        classifier_activation: activation of the head ("softmax", None for logits, ...).
        include_preprocessing: inputs are RGB in [0, 255] and the model normalizes them as its
            checkpoint expects; False: inputs are already normalized (see preprocess_input).
        dropout_rate, attention_dropout, drop_path_rate: regularization; stochastic depth
            rises linearly from 0 at the first block to drop_path_rate at the last.
        name: model name.
        numerics: override the activation / LayerNorm epsilon / normalization that otherwise
            come from the checkpoint record (vit_zoo.numerics).
        representation_size: width of a pre-logits (Dense + tanh) layer; defaults to the
            checkpoint's (the original ImageNet-21k files have one).
        layer_scale_init: add LayerScale to every block with this initial value.
        position_interpolation: "bilinear" (corner-aligned, as upstream fine-tuning resizes)
            or "bicubic" (timm's), used when position embeddings meet another grid size.
        patch_bias: give the patch projection a bias (CLIP's image tower has none).
        pre_norm: a LayerNorm ("norm_pre") on the embedded tokens before the first block, as
            in CLIP's image tower (its `ln_pre`).
        distillation_token: DeiT's second learned token after the class token, with its own
            head ("head_dist", read from token 1); the model's output is the mean of the two
            heads' logits, and `vit_zoo.train.distillation.Distiller` trains each head on its
            own target. On by itself for checkpoints that have one (timm's deit_*_distilled).
    """
    arch = decode_variant(variant)

    def default_size(checkpoint: Checkpoint | None) -> int:
        return _CheckpointFacts.of(checkpoint, arch.cell_size).resolution or DEFAULT_SIZE

    start = common.start(arch.family, arch.variant, weights, TRANSLATORS, LAYOUT_NUMERICS,
                         numerics, input_tensor, input_shape, default_size)
    facts = _CheckpointFacts.of(start.checkpoint, arch.cell_size)
    if include_top and start.checkpoint is not None:
        classes = start.checkpoint.head_size(classes)  # refuses a head that is not valid
    head = _Head.resolve(facts, include_top, pooling, classes, distillation_token,
                         representation_size)
    # With a fixed input size the position embeddings are made for its grid (a checkpoint for
    # another grid is resampled once, at load); with a dynamic size they keep the checkpoint's
    # grid and are resampled in the graph.
    native = arch.tokens_along(facts.resolution or DEFAULT_SIZE)
    grid = tuple(arch.tokens_along(side) if side else native for side in start.size)
    parts = _parts(arch, start.numerics, grid, head, include_preprocessing,
                   Regularization(dropout_rate, attention_dropout, drop_path_rate),
                   layer_scale_init or (1e-5 if facts.layer_scale else None),
                   position_interpolation, patch_bias, pre_norm, classifier_activation)
    return start.finish(_forward(parts, start.images), name or _python_name(arch.variant).lower())


@dataclass(frozen=True)
class Regularization:
    """Dropout after attention and in MLPs, on attention probabilities, and stochastic depth
    (rising linearly from 0 at the first block to `drop_path_rate` at the last)."""

    dropout_rate: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0

    def drop_path(self, index: int, depth: int) -> float:
        return self.drop_path_rate * index / max(depth - 1, 1)


@dataclass(frozen=True)
class _Head:
    """What follows the encoder, settled from the caller's arguments and the checkpoint."""

    include_top: bool
    pooling: str | None
    class_token: bool
    distillation_token: bool
    classes: int | None
    representation_size: int | None

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distillation_token)

    @classmethod
    def resolve(cls, facts: _CheckpointFacts, include_top: bool, pooling: str | None,
                classes: int | None, distillation_token: bool,
                representation_size: int | None) -> _Head:
        if pooling is None and include_top:
            pooling = facts.pooling or "token"
        if pooling not in POOLINGS + (None,):
            raise ValueError(f"pooling must be one of {POOLINGS} or None, got {pooling!r}.")
        class_token = facts.class_token
        if class_token is None:  # no checkpoint: a class token unless pooling does without one
            class_token = pooling not in ("avg", "map")
        if pooling == "token" and not class_token:
            raise ValueError("pooling='token' needs a class token, and these weights have "
                             "none; use pooling='avg' or 'map'.")
        distillation_token = distillation_token or facts.distillation_token
        if distillation_token and include_top and pooling != "token":
            raise ValueError("A DeiT head (distillation token) reads the class and distillation "
                             f"tokens: use pooling='token' with include_top=True, not {pooling!r}.")
        return cls(include_top, pooling, class_token, distillation_token,
                   (classes or facts.classes or 1000) if include_top else None,
                   representation_size or facts.representation_size)


def _parts(arch: ViTArch, numerics: nm.Numerics, grid: tuple[int, int], head: _Head,
           include_preprocessing: bool, regularization: Regularization,
           layer_scale_init: float | None, position_interpolation: str, patch_bias: bool,
           pre_norm: bool, classifier_activation) -> dict[str, keras.layers.Layer]:
    """The named layers of a ViT, in the order `_forward` calls them."""
    parts: dict[str, keras.layers.Layer] = {}
    if include_preprocessing:
        parts[names.PREPROCESSING] = common.normalization(numerics)
    if arch.stem_depths is not None:
        parts[names.STEM] = ResNetStem(
            arch.stem_depths,
            standardization=numerics.weight_standardization,
            conv_epsilon=numerics.weight_standardization_epsilon,
            norm_epsilon=numerics.group_norm_epsilon,
            name=names.STEM,
        )
    parts[names.PATCH_EMBEDDING] = PatchEmbedding(
        arch.patch_size, arch.hidden_dim, use_bias=patch_bias, name=names.PATCH_EMBEDDING)
    if head.class_token:
        parts[names.CLASS_TOKEN] = ClassToken(name=names.CLASS_TOKEN)
    if head.distillation_token:
        parts[names.DISTILLATION_TOKEN] = ClassToken(name=names.DISTILLATION_TOKEN)
        parts["prefix_tokens"] = keras.layers.Concatenate(axis=1, name="prefix_tokens")
    parts[names.POSITION_EMBEDDING] = PositionEmbedding(
        grid, head.num_prefix_tokens, position_interpolation, name=names.POSITION_EMBEDDING)
    parts["pos_dropout"] = keras.layers.Dropout(regularization.dropout_rate, name="pos_dropout")
    if pre_norm:
        parts["norm_pre"] = LayerNormalization(epsilon=numerics.layer_norm_epsilon,
                                               name="norm_pre")
    for index in range(arch.depth):
        parts[names.block(index)] = EncoderBlock(
            arch.num_heads,
            arch.mlp_dim,
            activation=numerics.activation,
            layer_norm_epsilon=numerics.layer_norm_epsilon,
            dropout_rate=regularization.dropout_rate,
            attention_dropout=regularization.attention_dropout,
            drop_path_rate=regularization.drop_path(index, arch.depth),
            layer_scale_init=layer_scale_init,
            name=names.block(index),
        )
    parts[names.FINAL_NORM] = LayerNormalization(epsilon=numerics.layer_norm_epsilon,
                                                 name=names.FINAL_NORM)
    if head.pooling == "map":
        parts[names.MAP_HEAD] = MultiHeadAttentionPooling(
            arch.num_heads, arch.mlp_dim, numerics.activation, numerics.layer_norm_epsilon,
            name=names.MAP_HEAD)
    elif head.pooling is not None:
        parts["pool"] = TokenPooling(head.pooling, head.num_prefix_tokens, name="pool")
    if head.pooling is not None and head.representation_size:
        parts[names.PRE_LOGITS] = keras.layers.Dense(
            head.representation_size, activation="tanh", name=names.PRE_LOGITS)
    if head.include_top and head.distillation_token:
        parts[names.HEAD] = common.classifier(head.classes, None)
        parts["pool_dist"] = TokenPooling("token", head.num_prefix_tokens, token_index=1,
                                          name="pool_dist")
        parts[names.DISTILLATION_HEAD] = common.classifier(
            head.classes, None, name=names.DISTILLATION_HEAD, role="distillation")
        parts["head_mean"] = keras.layers.Average(name="head_mean", dtype="float32")
        if classifier_activation is not None:
            parts["head_activation"] = keras.layers.Activation(
                classifier_activation, name="predictions", dtype="float32")
    elif head.include_top:
        parts[names.HEAD] = common.classifier(head.classes, classifier_activation)
    return parts


def _python_name(variant: str) -> str:
    """"B/16" -> "ViT_B16", "R50+B/16" -> "R50_ViT_B16", "R+Ti/16" -> "R_ViT_Ti16"."""
    stem, _, vit = variant.rpartition("+")
    return (f"{stem}_" if stem else "") + "ViT_" + vit.replace("/", "")


def _variant_builder(variant: str):
    """A named builder (`ViT_B16`, `R50_ViT_B16`, ...): ViT(...) with the variant filled in."""
    arch = decode_variant(variant)
    stem = "" if arch.stem_depths is None else (
        f"ResNet stem (stages {arch.stem_depths or 'root only'}, stride {arch.stem_stride}), "
    )
    return common.named_builder(
        ViT, variant, _python_name(variant),
        f"ViT-{variant}: {stem}width {arch.hidden_dim}, {arch.depth} blocks, "
        f"{arch.num_heads} heads, {arch.cell_size} px cells. "
        "Arguments as vit_zoo.ViT (minus `variant`).",
    )


VARIANTS = ("Ti/16", "S/16", "S/32", "B/8", "B/16", "B/32", "L/16", "L/32", "H/14")
ViT_Ti16 = _variant_builder("Ti/16")
ViT_S16 = _variant_builder("S/16")
ViT_S32 = _variant_builder("S/32")
ViT_B8 = _variant_builder("B/8")
ViT_B16 = _variant_builder("B/16")
ViT_B32 = _variant_builder("B/32")
ViT_L16 = _variant_builder("L/16")
ViT_L32 = _variant_builder("L/32")
ViT_H14 = _variant_builder("H/14")
HYBRID_VARIANTS = tuple(_HYBRIDS)
R50_ViT_B16 = _variant_builder("R50+B/16")
R50_ViT_L32 = _variant_builder("R50+L/32")
R26_ViT_B32 = _variant_builder("R26+B/32")
R26_ViT_S32 = _variant_builder("R26+S/32")
R_ViT_Ti16 = _variant_builder("R+Ti/16")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {
    _python_name(v): (decode_variant(v).family, v) for v in VARIANTS + HYBRID_VARIANTS
}
