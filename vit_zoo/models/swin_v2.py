"""Swin Transformer V2 ("Swin Transformer V2: Scaling Up Capacity and Resolution", Liu et al.
2022).

Swin's hierarchy (four stages at strides 4, 8, 16, 32, shifted windows, patch merging) with
scaled cosine attention, a continuous position bias from a small MLP on log-spaced relative
coordinates, and residual post-norm. Variants "T", "S", "B" (Swin's widths, depths and heads);
the released weights are at 256 px with windows 8 or 16 (and, for B, ImageNet-22k weights at
192 px / window 12 fine-tuned to windows 16 and 24). The position bias has no window-shaped
table, so weights trained at one window run at any other without resampling.

The model is built for a fixed input size, as Swin is: windows, padding and shift masks are
constants of the graph.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers import LayerNormalization, PatchEmbedding
from vit_zoo.layers.swin_v2 import PatchMergingV2, SwinV2Block
from vit_zoo.models import common
from vit_zoo.models import swin as swin_v1
from vit_zoo.models.swin import SwinArch
from vit_zoo.weights import swin_v2_layout

FAMILY = "swin_v2"
DEFAULT_SIZE = 256
DEFAULT_WINDOW = 8
PATCH_SIZE = swin_v1.PATCH_SIZE
TRANSLATORS = {"timm_safetensors": swin_v2_layout.from_timm}
LAYOUT_NUMERICS = {"timm_safetensors": nm.SWIN}
#: A Swin V2 has the shape of a Swin (width, depths, heads): the same SwinArch, and the same
#: table for the variants V2 was released in.
VARIANTS = ("T", "S", "B")
__all__ = ["SwinArch", "SwinV2", "SwinV2_B", "SwinV2_S", "SwinV2_T", "decode_variant"]


def decode_variant(variant: str | SwinArch) -> SwinArch:
    """'T' -> SwinArch(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))."""
    if isinstance(variant, SwinArch):
        return variant
    if variant not in VARIANTS:
        raise ValueError(f"Unknown Swin V2 variant {variant!r}; expected one of {list(VARIANTS)} "
                         "(or a vit_zoo.models.swin.SwinArch for a custom shape).")
    return swin_v1.decode_variant(variant)


def record_windows(record, stages: int = 4) -> tuple[int | None, tuple[int, ...] | None]:
    """(window, per-stage pretrained windows) of a registered Swin V2 release, read from its
    timm name: `..._window8_256` -> (8, None); `..._window12to16_192to256` -> (16, (12, 12, 12,
    6)): trained at window 12 on 192 px, where the last stage's map (6x6) is the window."""
    match = re.search(r"window(\d+)(?:to(\d+))?_(\d+)", record.url) if record else None
    if match is None:
        return None, None
    first, fine_tuned, trained_size = match.groups()
    if fine_tuned is None:
        return int(first), None
    stage_maps = [int(trained_size) // PATCH_SIZE // 2**stage for stage in range(stages)]
    return int(fine_tuned), tuple(min(int(first), side) for side in stage_maps)


def _stage_pretrained_windows(value, stages: int) -> tuple[int, ...]:
    """`pretrained_window_size` (an int or one per stage) as one int per stage."""
    values = (value,) * stages if isinstance(value, int) else tuple(value)
    if len(values) != stages or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ValueError(
            f"pretrained_window_size must be an int >= 0 or {stages} of them (one per stage), "
            f"got {value!r}. Pass the window the weights were trained at, e.g. 12 or "
            "(12, 12, 12, 6) for the window12to16 releases; 0 scales by each block's own window."
        )
    return values


def SwinV2(
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
    pretrained_window_size: int | Sequence[int] | None = None,
    numerics: nm.Numerics | None = None,
) -> keras.Model:
    """Build a Swin Transformer V2, optionally with the Microsoft weights (timm hub copies).

    Args:
        variant: "T", "S" or "B"; or a SwinArch (vit_zoo.models.swin) for a custom shape.
        include_top: end with LayerNorm -> global average -> classification head.
        weights: None, a registered tag (`vit-zoo list`), or a local timm- or Microsoft-layout
            .safetensors, .weights.h5 or .keras file.
        input_tensor, input_shape: the image input; a fixed height and width divisible by 4.
            Defaults to the checkpoint's resolution, else 256.
        pooling: "avg" or None. With include_top=False and pooling=None the outputs are the four
            stage feature maps (strides 4, 8, 16, 32; the last after the final LayerNorm).
        classes, classifier_activation: the head; another class count than the checkpoint's
            gets a zero-initialized head (with a warning).
        include_preprocessing: inputs are RGB in [0, 255], normalized as the checkpoint expects.
        dropout_rate, attention_dropout, drop_path_rate: regularization; stochastic depth rises
            linearly over all blocks.
        name: model name.
        window_size: attention window; defaults to the registered release's, else 8 (a local
            file does not record its window: pass it). Any window works with any weights: the
            position bias is computed from coordinates.
        pretrained_window_size: the window the weights were trained at (an int, or one per
            stage), which scales the position-bias coordinates, as timm's
            `pretrained_window_sizes`. Defaults to the registered release's ((12, 12, 12, 6)
            for the window12to16 / 12to24 fine-tunes), else 0: each block's own window (what
            timm does for a model created with a window, whatever window its weights had).
        numerics: override the checkpoint's activation / LayerNorm epsilon / normalization
            (Swin V2: exact GELU, 1e-5, ImageNet mean/std).
    """
    arch = decode_variant(variant)
    start = common.start(FAMILY, arch.variant, weights, TRANSLATORS, LAYOUT_NUMERICS, numerics,
                         input_tensor, input_shape,
                         lambda checkpoint: common.record_resolution(checkpoint) or DEFAULT_SIZE,
                         default_numerics=nm.SWIN)
    start.fixed_size(
        "Swin V2 is built for a fixed input size (its windows, padding and shift masks are "
        "constants of the graph)")
    if pooling not in (None, "avg"):
        raise ValueError(f"Swin V2 pooling must be 'avg' or None, got {pooling!r}.")
    if window_size is not None and (not isinstance(window_size, int) or window_size < 1):
        raise ValueError(f"window_size must be a positive int (e.g. 8 or 16), got "
                         f"{window_size!r}.")
    record_window, record_pretrained = record_windows(
        start.checkpoint.record if start.checkpoint else None, len(arch.depths))
    window_size = window_size or record_window or DEFAULT_WINDOW
    requested = record_pretrained if pretrained_window_size is None else pretrained_window_size
    pretrained = _stage_pretrained_windows(requested or 0, len(arch.depths))
    epsilon = start.numerics.layer_norm_epsilon

    x = common.normalization(start.numerics)(start.images) if include_preprocessing \
        else start.images
    x = PatchEmbedding(PATCH_SIZE, arch.embed_dim, name=names.PATCH_EMBEDDING)(x)
    x = LayerNormalization(epsilon=epsilon, name="patch_norm")(x)
    options = dict(activation=start.numerics.activation, layer_norm_epsilon=epsilon,
                   dropout_rate=dropout_rate, attention_dropout=attention_dropout)
    stages = swin_v1.hierarchy(x, arch, window_size, drop_path_rate, SwinV2Block, PatchMergingV2,
                               [dict(options, pretrained_window_size=p) for p in pretrained])
    stages[-1] = LayerNormalization(epsilon=epsilon, name=names.FINAL_NORM)(stages[-1])
    return start.finish_stages(stages, include_top, pooling, classes, classifier_activation,
                               name or f"swin_v2_{arch.variant.lower()}_w{window_size}")


def _variant_builder(variant: str):
    arch = decode_variant(variant)
    return common.named_builder(
        SwinV2, variant, f"SwinV2_{variant}",
        f"Swin V2-{variant}: width {arch.embed_dim}, depths {arch.depths}, heads "
        f"{arch.num_heads}, 4 px patches, 256 px. Arguments as vit_zoo.SwinV2 (minus "
        "`variant`).",
    )


SwinV2_T = _variant_builder("T")
SwinV2_S = _variant_builder("S")
SwinV2_B = _variant_builder("B")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {f"SwinV2_{v}": (FAMILY, v) for v in VARIANTS}
