"""Upstream MViT v2 checkpoint names -> vit_zoo variable paths.

timm (.safetensors, the hub copies of the Meta releases): `patch_embed.proj`, optional
`cls_token`, `stages.{i}.blocks.{j}.{norm1, shortcut_proj_attn, attn.{qkv, proj, pool_{q,k,v},
norm_{q,k,v}, rel_pos_h, rel_pos_w}, norm2, mlp.{fc1, fc2}, shortcut_proj_mlp}`, `norm`,
`head.fc`. The pooling convolutions are depthwise: PyTorch (C, 1, kh, kw) -> Keras
(kh, kw, C, 1). The original facebookresearch/mvit files are pickled PyTorch (.pyth), which
vit_zoo does not read; timm's hub copies hold the same arrays.
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo import names
from vit_zoo.weights.naming import timm_to_keras

_RULES = [
    (re.compile(r"^patch_embed\.proj\."), f"{names.PATCH_EMBEDDING}."),
    (re.compile(r"^cls_token$"), f"{names.CLASS_TOKEN}/token"),
    (re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\."), r"stage\1_block\2."),
    (re.compile(r"^(stage\d+_block\d+)\.attn\.(rel_pos_[hw])$"), r"\1/attn/\2"),
    (re.compile(r"^head\.fc\."), f"{names.HEAD}."),
]
#: Keys of timm options no MViT v2 release uses.
_UNSUPPORTED = {"pos_embed": "absolute position embedding (timm's use_abs_pos)"}
_DEPTHWISE = re.compile(r"/attn/pool_[qkv]/kernel$")


def from_timm(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    arrays, unknown = timm_to_keras(raw, _RULES, _UNSUPPORTED)
    for path, value in arrays.items():
        if _DEPTHWISE.search(path):  # naming made it HWIO (kh, kw, 1, C): depthwise is HWC1
            arrays[path] = value.transpose(0, 1, 3, 2)
    return arrays, unknown
