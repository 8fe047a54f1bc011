"""Upstream Swin checkpoint names -> vit_zoo variable paths.

timm (.safetensors, the hub copies of the Microsoft releases): `patch_embed.{proj,norm}`,
`layers.{i}.downsample` at the start of stages 1-3, `layers.{i}.blocks.{j}.{norm1, attn.{qkv,
proj, relative_position_bias_table}, norm2, mlp.{fc1,fc2}}`, `norm`, `head.fc`. The Microsoft
layout differs only in `layers.{i}.downsample` sitting at the end of stages 0-2, `head` without
`.fc`, and the stored buffers `relative_position_index` and `attn_mask`, which are derived
from the shapes and dropped here.
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo.weights.naming import timm_to_keras

_BUFFERS = ("relative_position_index", "attn_mask")


def _timm_rules(microsoft: bool):
    def merge(match: re.Match) -> str:
        stage = int(match.group(1)) + (1 if microsoft else 0)
        return f"stage{stage}_merge."

    return [
        (re.compile(r"^patch_embed\.proj\."), "patch_embed."),
        (re.compile(r"^patch_embed\.norm\."), "patch_norm."),
        (re.compile(r"^layers\.(\d+)\.downsample\."), merge),
        (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\."), r"stage\1_block\2."),
        (re.compile(r"^(stage\d+_block\d+)\.attn\.relative_position_bias_table$"),
         r"\1/attn/relative_position_bias_table"),
        (re.compile(r"^head\.fc\."), "head."),
    ]


def from_timm(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """timm or Microsoft Swin keys (told apart by where the downsampling layers sit)."""
    microsoft = "layers.0.downsample.reduction.weight" in raw
    kept = {key: value for key, value in raw.items() if not key.endswith(_BUFFERS)}
    return timm_to_keras(kept, _timm_rules(microsoft), {})
