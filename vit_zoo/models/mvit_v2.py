"""MViT v2 ("MViTv2: Improved Multiscale Vision Transformers for Classification and Detection",
Li et al. 2022).

A 7x7 stride-4 convolution makes tokens; four stages of multiscale blocks follow, at strides 4,
8, 16 and 32, each stage's first block halving the map (query pooling) and doubling the width.
Every block attends with pooled keys and values (stride 4, 2, 1, 1 by stage) and decomposed
relative positions. Variants "T", "S", "B", "L" (global average pooling) and the class-token
variants "S_cls", "B_cls", "L_cls", "H_cls" (timm's mvitv2_*_cls), decoded by one table.

The model is built for a fixed, square input whose side is a multiple of 32, as timm builds it
(its relative-position tables are sized for the stage maps); weights trained at another size
have their tables resampled on load, as timm's checkpoint filter does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers import ClassToken, LayerNormalization, TokenPooling
from vit_zoo.layers.mvit_v2 import MultiScaleBlock, TokenMap
from vit_zoo.models import common
from vit_zoo.weights import mvit_v2_layout

FAMILY = "mvit_v2"
DEFAULT_SIZE = 224
PATCH_KERNEL, PATCH_STRIDE = 7, 4
#: Size multiple of the input side: the patch stride times three halvings of the map.
SIZE_MULTIPLE = 32
#: Exact GELU, LayerNorm eps 1e-6, ImageNet mean/std: the Meta releases as timm runs them.
MVIT_V2 = nm.MVIT_V2
TRANSLATORS = {"timm_safetensors": mvit_v2_layout.from_timm}
LAYOUT_NUMERICS = {"timm_safetensors": MVIT_V2}

#: Query pooling stride of each stage's first block (the map halves from stage 1 on).
STAGE_STRIDES = (1, 2, 2, 2)
#: Key/value pooling stride of stage 0; later stages divide it by their query stride (min 1).
KV_STRIDE = 4
POOL_KERNEL = 3

# name: (embed_dim, depths, num_heads, expand_attention, class_token); widths and heads double
# from stage to stage.
_SIZES = {
    "T": (96, (1, 2, 5, 2), 1, True, False),
    "S": (96, (1, 2, 11, 2), 1, True, False),
    "B": (96, (2, 3, 16, 3), 1, True, False),
    "L": (144, (2, 6, 36, 4), 2, False, False),
    "S_cls": (96, (1, 2, 11, 2), 1, True, True),
    "B_cls": (96, (2, 3, 16, 3), 1, True, True),
    "L_cls": (144, (2, 6, 36, 4), 2, True, True),
    "H_cls": (192, (4, 8, 60, 8), 3, True, True),
}
VARIANTS = tuple(_SIZES)
#: variant -> timm's model name (for the references and the registry).
TIMM_NAMES = {
    "T": "mvitv2_tiny", "S": "mvitv2_small", "B": "mvitv2_base", "L": "mvitv2_large",
    "S_cls": "mvitv2_small_cls", "B_cls": "mvitv2_base_cls", "L_cls": "mvitv2_large_cls",
    "H_cls": "mvitv2_huge_cls",
}


@dataclass(frozen=True)
class MViTv2Arch:
    """embed_dim and num_heads of stage 0 (doubled at each later stage); expand_attention:
    the width changes in the first block's attention (T/S/B) or the last block's MLP (L);
    class_token: a class token is prepended and pooled for the head."""

    variant: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: int
    expand_attention: bool = True
    class_token: bool = False

    def widths(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**stage for stage in range(len(self.depths)))

    def heads(self) -> tuple[int, ...]:
        return tuple(self.num_heads * 2**stage for stage in range(len(self.depths)))


def decode_variant(variant: str | MViTv2Arch) -> MViTv2Arch:
    """'T' -> MViTv2Arch(embed_dim=96, depths=(1, 2, 5, 2), num_heads=1)."""
    if isinstance(variant, MViTv2Arch):
        arch = variant
    elif variant in _SIZES:
        arch = MViTv2Arch(variant, *_SIZES[variant])
    else:
        raise ValueError(f"Unknown MViT v2 variant {variant!r}; expected one of {list(_SIZES)}.")
    if len(arch.depths) != len(STAGE_STRIDES) or min(arch.depths) < 1:
        raise ValueError(f"MViT v2 has {len(STAGE_STRIDES)} stages of at least one block each; "
                         f"got depths {arch.depths}.")
    return arch


def _checkpoint_size(checkpoint) -> int | None:
    """The input side a checkpoint was trained at, from its first relative-position table
    (2 * side / 4 - 1 rows: stage 0 keeps the map for its queries)."""
    if checkpoint is None or checkpoint.arrays is None:
        return None
    table = checkpoint.shape("stage0_block0/attn/rel_pos_h")
    return 2 * (table[0] + 1) if table else None


def _check_size(height: int, width: int) -> None:
    if height != width or height % SIZE_MULTIPLE:
        side = max(round(max(height, width) / SIZE_MULTIPLE), 1) * SIZE_MULTIPLE
        raise ValueError(
            f"MViT v2 takes square images whose side is a multiple of {SIZE_MULTIPLE} (the "
            f"patch stride 4 times three halvings of the map, as timm builds it), got "
            f"{height}x{width}. Resize or crop to e.g. {side}x{side}.")


def block_name(stage: int, index: int) -> str:
    """Block `index` of stage `stage`, as timm's stages.{stage}.blocks.{index}."""
    return f"stage{stage}_block{index}"


def MViTv2(
    variant: str | MViTv2Arch = "T",
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
    """Build an MViT v2, optionally with the Meta weights (timm hub copies).

    Args:
        variant: "T", "S", "B", "L" or a class-token variant "S_cls", "B_cls", "L_cls",
            "H_cls"; or an MViTv2Arch.
        include_top: end with LayerNorm -> pooling (average; the class token for the _cls
            variants) -> classification head.
        weights: None, a registered tag (`vit-zoo list`), or a local timm-layout .safetensors,
            .weights.h5 or .keras file.
        input_tensor, input_shape: the image input: square, the side a multiple of 32.
            Defaults to the checkpoint's resolution, else 224; weights trained at another size
            have their relative-position tables resampled (linearly, as timm does).
        pooling: "avg" or None ("token" too for the class-token variants). With
            include_top=False and pooling=None the outputs are the four stage feature maps
            (strides 4, 8, 16, 32; the last after the final LayerNorm), for detection and
            segmentation heads.
        classes, classifier_activation: the head; another class count than the checkpoint's
            gets a zero-initialized head (with a warning).
        include_preprocessing: inputs are RGB in [0, 255], normalized as the checkpoint expects.
        dropout_rate: dropout before the classification head (timm's drop_rate: MViT v2 has no
            dropout inside its blocks); drop_path_rate: stochastic depth, rising linearly over
            all blocks.
        name: model name.
        numerics: override the checkpoint's activation / LayerNorm epsilon / normalization
            (MViT v2: exact GELU, 1e-6, ImageNet mean/std).
    """
    arch = decode_variant(variant)
    start = common.start(
        FAMILY, arch.variant, weights, TRANSLATORS, LAYOUT_NUMERICS, numerics, input_tensor,
        input_shape,
        lambda checkpoint: (common.record_resolution(checkpoint) or _checkpoint_size(checkpoint)
                            or DEFAULT_SIZE),
        default_numerics=MVIT_V2)
    height, width = start.fixed_size(
        "MViT v2 is built for a fixed input size (its pooled map sizes and relative-position "
        "tables are constants of the graph)")
    _check_size(height, width)
    poolings = (None, "avg", "token") if arch.class_token else (None, "avg")
    if pooling not in poolings:
        raise ValueError(f"MViT v2-{arch.variant} pooling must be one of {poolings}, got "
                         f"{pooling!r}" + ("" if arch.class_token else
                                           " (class-token pooling needs a _cls variant)") + ".")
    epsilon, activation = start.numerics.layer_norm_epsilon, start.numerics.activation
    prefix = int(arch.class_token)

    x = common.normalization(start.numerics)(start.images) if include_preprocessing \
        else start.images
    pad = PATCH_KERNEL // 2
    x = keras.layers.ZeroPadding2D(pad, name="patch_pad")(x)
    x = keras.layers.Conv2D(arch.embed_dim, PATCH_KERNEL, strides=PATCH_STRIDE,
                            name=names.PATCH_EMBEDDING)(x)
    resolution = (height // PATCH_STRIDE, width // PATCH_STRIDE)
    x = keras.layers.Reshape((resolution[0] * resolution[1], arch.embed_dim), name="tokens")(x)
    if arch.class_token:
        x = keras.layers.Concatenate(axis=1, name="prepend_cls")(
            [ClassToken(name=names.CLASS_TOKEN)(x), x])

    widths, heads = arch.widths(), arch.heads()
    total, index, stages, kv_stride = sum(arch.depths), 0, [], KV_STRIDE
    for stage, depth in enumerate(arch.depths):
        kv_stride = max(kv_stride // STAGE_STRIDES[stage], 1)
        # expand_attention: every block of a stage is as wide as the stage; otherwise the
        # stage keeps its input width and its last block widens to the next stage's.
        stage_width = widths[stage] if arch.expand_attention else widths[min(stage + 1, 3)]
        for block in range(depth):
            last = block == depth - 1
            output_dim = stage_width if arch.expand_attention or last else x.shape[-1]
            stride = STAGE_STRIDES[stage] if block == 0 else 1
            layer = MultiScaleBlock(
                output_dim,
                heads[stage],
                resolution,
                stride_q=(stride, stride),
                stride_kv=(kv_stride, kv_stride),
                kernel=(POOL_KERNEL, POOL_KERNEL),
                expand_attention=arch.expand_attention,
                class_token=arch.class_token,
                activation=activation,
                layer_norm_epsilon=epsilon,
                drop_path_rate=drop_path_rate * index / max(total - 1, 1),
                name=block_name(stage, block),
            )
            x = layer(x)
            resolution = layer.output_resolution
            index += 1
        stages.append((x, resolution))
    x = LayerNormalization(epsilon=epsilon, name=names.FINAL_NORM)(x)
    stages[-1] = (x, resolution)
    if not (include_top or pooling):
        outputs = [TokenMap(size, prefix, name=f"stage{stage}_map")(tokens)
                   for stage, (tokens, size) in enumerate(stages)]
        return start.finish(outputs, name or f"mvitv2_{arch.variant.lower()}")
    method = ("token" if arch.class_token else "avg") if include_top else pooling
    outputs = x = TokenPooling(method, num_prefix_tokens=prefix, name="pool")(x)
    if include_top:
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name="head_dropout")(x)
        outputs = common.classifier(start.classes(classes), classifier_activation)(x)
    return start.finish(outputs, name or f"mvitv2_{arch.variant.lower()}")


def _variant_builder(variant: str):
    arch = decode_variant(variant)
    token = ", class token" if arch.class_token else ""
    return common.named_builder(
        MViTv2, variant, f"MViTv2_{variant}",
        f"MViTv2-{variant} (timm's {TIMM_NAMES[variant]}): widths {arch.widths()}, depths "
        f"{arch.depths}, heads {arch.heads()}{token}. Arguments as vit_zoo.MViTv2 (minus "
        "`variant`).",
    )


MViTv2_T = _variant_builder("T")
MViTv2_S = _variant_builder("S")
MViTv2_B = _variant_builder("B")
MViTv2_L = _variant_builder("L")
MViTv2_S_cls = _variant_builder("S_cls")
MViTv2_B_cls = _variant_builder("B_cls")
MViTv2_L_cls = _variant_builder("L_cls")
MViTv2_H_cls = _variant_builder("H_cls")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {f"MViTv2_{v}": (FAMILY, v) for v in VARIANTS}
