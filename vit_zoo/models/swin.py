"""Swin Transformer ("Hierarchical Vision Transformer using Shifted Windows", Liu et al. 2021).

Variants "T", "S", "B", "L" decoded by one table; `window_size` (7 or 12 for the released
weights) is an argument, taken from the checkpoint when not given. Four stages at strides 4, 8,
16 and 32; any input size divisible by 4 (stages not a multiple of the window are padded, as
timm does). The model is built for a fixed input size: windows, padding and shift masks are
constants of the graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers import LayerNormalization, PatchEmbedding
from vit_zoo.layers.swin import PatchMerging, SwinBlock
from vit_zoo.models import common
from vit_zoo.weights import swin_layout

FAMILY = "swin"
DEFAULT_SIZE = 224
PATCH_SIZE = 4
TRANSLATORS = {"timm_safetensors": swin_layout.from_timm}
LAYOUT_NUMERICS = {"timm_safetensors": nm.SWIN}

# name: (embed_dim, depths, num_heads)
_SIZES = {
    "T": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "S": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "B": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "L": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}
VARIANTS = tuple(_SIZES)


@dataclass(frozen=True)
class SwinArch:
    variant: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]


def decode_variant(variant: str | SwinArch) -> SwinArch:
    """'T' -> SwinArch(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))."""
    if isinstance(variant, SwinArch):
        return variant
    if variant not in _SIZES:
        raise ValueError(f"Unknown Swin variant {variant!r}; expected one of {list(_SIZES)}.")
    return SwinArch(variant, *_SIZES[variant])


def _checkpoint_window(checkpoint) -> int | None:
    """The window size a checkpoint was trained with, from its first bias table."""
    if checkpoint is None or checkpoint.arrays is None:
        return None
    table = checkpoint.shape("stage0_block0/attn/relative_position_bias_table")
    return (round(table[0] ** 0.5) + 1) // 2 if table else None


def Swin(
    variant: str | SwinArch = "T",
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
    window_size: int | None = None,
    numerics: nm.Numerics | None = None,
) -> keras.Model:
    """Build a Swin Transformer, optionally with the Microsoft weights (timm hub copies).

    Args:
        variant: "T", "S", "B" or "L"; or a SwinArch.
        include_top: end with LayerNorm -> global average -> classification head.
        weights: None, a registered tag (`vit-zoo list`), or a local timm- or Microsoft-layout
            .safetensors, .weights.h5 or .keras file.
        input_tensor, input_shape: the image input; a fixed height and width divisible by 4.
            Defaults to the checkpoint's resolution, else 224.
        pooling: "avg" or None. With include_top=False and pooling=None the outputs are the four
            stage feature maps (strides 4, 8, 16, 32; the last after the final LayerNorm), for
            detection and segmentation heads.
        classes, classifier_activation: the head; another class count than the checkpoint's
            gets a zero-initialized head (with a warning).
        include_preprocessing: inputs are RGB in [0, 255], normalized as the checkpoint expects.
        dropout_rate, attention_dropout, drop_path_rate: regularization; stochastic depth rises
            linearly over all blocks.
        name: model name.
        window_size: attention window; defaults to the checkpoint's, else 7. Weights trained
            with another window have their relative-position tables resampled on load.
        numerics: override the checkpoint's activation / LayerNorm epsilon / normalization
            (Swin: exact GELU, 1e-5, ImageNet mean/std).
    """
    arch = decode_variant(variant)
    start = common.start(FAMILY, arch.variant, weights, TRANSLATORS, LAYOUT_NUMERICS, numerics,
                         input_tensor, input_shape,
                         lambda checkpoint: common.record_resolution(checkpoint) or DEFAULT_SIZE,
                         default_numerics=nm.SWIN)
    height, width = start.fixed_size(
        "Swin is built for a fixed input size (its windows, padding and shift masks are "
        "constants of the graph)")
    if pooling not in (None, "avg"):
        raise ValueError(f"Swin pooling must be 'avg' or None, got {pooling!r}.")
    window_size = window_size or _checkpoint_window(start.checkpoint) or 7
    epsilon, activation = start.numerics.layer_norm_epsilon, start.numerics.activation

    x = common.normalization(start.numerics)(start.images) if include_preprocessing \
        else start.images
    x = PatchEmbedding(PATCH_SIZE, arch.embed_dim, name=names.PATCH_EMBEDDING)(x)
    x = LayerNormalization(epsilon=epsilon, name="patch_norm")(x)
    options = dict(activation=activation, layer_norm_epsilon=epsilon, dropout_rate=dropout_rate,
                   attention_dropout=attention_dropout)
    stages = hierarchy(x, arch, window_size, drop_path_rate, SwinBlock, PatchMerging,
                       [options] * len(arch.depths))
    stages[-1] = LayerNormalization(epsilon=epsilon, name=names.FINAL_NORM)(stages[-1])
    return start.finish_stages(stages, include_top, pooling, classes, classifier_activation,
                               name or f"swin_{arch.variant.lower()}_w{window_size}")


def hierarchy(x, arch: SwinArch, window_size: int, drop_path_rate: float, block_type,
              merge_type, stage_options: list[dict]) -> list:
    """Swin's four stages on the (B, H/4, W/4, C) patch grid `x`: patch merging before stages
    1-3, blocks alternating plain and shifted windows, stochastic depth rising linearly over all
    blocks. Returns each stage's output; `stage_options[i]` go to stage i's blocks."""
    resolution = tuple(x.shape[1:3])
    epsilon = stage_options[0]["layer_norm_epsilon"]
    total, index, stages = sum(arch.depths), 0, []
    for stage, (depth, heads) in enumerate(zip(arch.depths, arch.num_heads)):
        if stage > 0:
            x = merge_type(layer_norm_epsilon=epsilon, name=names.swin_merge(stage))(x)
            resolution = tuple(-(-r // 2) for r in resolution)
        for block in range(depth):
            x = block_type(heads, resolution, window_size, shifted=block % 2 == 1,
                           drop_path_rate=drop_path_rate * index / max(total - 1, 1),
                           name=names.swin_block(stage, block), **stage_options[stage])(x)
            index += 1
        stages.append(x)
    return stages


def _variant_builder(variant: str):
    arch = decode_variant(variant)
    return common.named_builder(
        Swin, variant, f"Swin_{variant}",
        f"Swin-{variant}: width {arch.embed_dim}, depths {arch.depths}, heads {arch.num_heads}, "
        "4 px patches. Arguments as vit_zoo.Swin (minus `variant`).",
    )


Swin_T = _variant_builder("T")
Swin_S = _variant_builder("S")
Swin_B = _variant_builder("B")
Swin_L = _variant_builder("L")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {f"Swin_{v}": (FAMILY, v) for v in VARIANTS}
