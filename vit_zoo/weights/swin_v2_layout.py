"""Upstream Swin V2 checkpoint names -> vit_zoo variable paths.

timm (.safetensors, the hub copies of the Microsoft releases) names the modules as for Swin V1
(`patch_embed.{proj,norm}`, `layers.{i}.downsample` at the start of stages 1-3,
`layers.{i}.blocks.{j}.{norm1, attn, norm2, mlp.{fc1,fc2}}`, `norm`, `head.fc`); the attention
holds `qkv` (no bias), `q_bias`, `v_bias`, `logit_scale` (heads, 1, 1), `proj` and the position
bias MLP `cpb_mlp.{0,2}` (Linear 2 -> 512 with bias, ReLU, Linear 512 -> heads without). The
Microsoft layout differs as for V1 (downsampling at the end of stages 0-2, `head` without
`.fc`) and stores the buffers `relative_coords_table`, `relative_position_index` and
`attn_mask`, which are derived from the shapes and dropped here.
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo.weights.naming import timm_to_keras
from vit_zoo.weights.swin_layout import _timm_rules as _swin_rules

_BUFFERS = ("relative_coords_table", "relative_position_index", "attn_mask")
_BLOCK = r"^(stage\d+_block\d+)\.attn\."

# Applied after Swin V1's module rules (which have renamed `layers.i.blocks.j.` already).
_V2_RULES = [
    (re.compile(_BLOCK + r"(logit_scale|q_bias|v_bias)$"), r"\1/attn/\2"),
    (re.compile(_BLOCK + r"cpb_mlp\.0\."), r"\1.attn.cpb_fc1."),
    (re.compile(_BLOCK + r"cpb_mlp\.2\."), r"\1.attn.cpb_fc2."),
]


def from_timm(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """timm or Microsoft Swin V2 keys (told apart by where the downsampling layers sit)."""
    microsoft = "layers.0.downsample.reduction.weight" in raw
    kept = {key: value for key, value in raw.items() if not key.endswith(_BUFFERS)}
    return timm_to_keras(kept, _swin_rules(microsoft) + _V2_RULES, {})
