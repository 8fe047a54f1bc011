"""Upstream MLP-Mixer checkpoint names -> vit_zoo variable paths.

Google (.npz, google-research/vision_transformer): `stem`, `MixerBlock_{i}/{LayerNorm_0,
token_mixing/Dense_{0,1}, LayerNorm_1, channel_mixing/Dense_{0,1}}`, `pre_head_layer_norm`,
`head`. timm (.safetensors): `stem.proj`, `blocks.{i}.{norm1, mlp_tokens, norm2, mlp_channels}`,
`norm`, `head`. Both return (arrays, unknown keys), like vit_layout.
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo.weights.naming import Taker, google_dense, google_norm, strip_prefix, timm_to_keras


def from_google(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    taker = Taker(strip_prefix(raw))
    google_dense(taker, "stem", "stem")
    google_norm(taker, "pre_head_layer_norm", "norm")
    google_dense(taker, "head", "head")
    block = re.compile(r"MixerBlock_(\d+)/")
    for index in sorted({int(m.group(1)) for key in taker.raw if (m := block.match(key))}):
        source, target = f"MixerBlock_{index}", f"block_{index}"
        google_norm(taker, f"{source}/LayerNorm_0", f"{target}/norm1")
        google_norm(taker, f"{source}/LayerNorm_1", f"{target}/norm2")
        for mixing in ("token_mixing", "channel_mixing"):
            google_dense(taker, f"{source}/{mixing}/Dense_0", f"{target}/{mixing}/fc1")
            google_dense(taker, f"{source}/{mixing}/Dense_1", f"{target}/{mixing}/fc2")
    return taker.out, taker.unknown()


_TIMM_MODULES = [
    (re.compile(r"^stem\.proj\."), "stem."),
    (re.compile(r"^blocks\.(\d+)\."), r"block_\1."),
    (re.compile(r"\.mlp_tokens\."), ".token_mixing."),
    (re.compile(r"\.mlp_channels\."), ".channel_mixing."),
]


def from_timm(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    return timm_to_keras(raw, _TIMM_MODULES, {})
