"""Upstream XCiT checkpoint names -> vit_zoo variable paths.

timm (.safetensors, the hub copies of Facebook's releases):
`patch_embed.proj.{0,2,4,6}.{0: conv, 1: BatchNorm}` (the odd indices are the activations),
`cls_token`, `pos_embed.token_projection`, `blocks.{i}.{norm1, attn.{temperature, qkv, proj},
gamma1, norm3, local_mp.{conv1, bn, conv2}, gamma3, norm2, mlp.{fc1, fc2}, gamma2}`,
`cls_attn_blocks.{j}.{norm1, attn.{q, k, v, proj}, gamma1, norm2, mlp, gamma2}`, `norm`, `head`.
BatchNorm running statistics become Keras' moving mean and variance; `num_batches_tracked` (a
training counter) is dropped. Facebook's own files are pickled .pth, which vit_zoo does not
read; timm's copies differ from them only in names (`pos_embeder`) and in splitting the class
attention's fused qkv.
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo.weights.naming import timm_to_keras

_RULES = [
    (re.compile(r"^patch_embed\.proj\.(\d+)\.0\."),
     lambda match: f"patch_embed.conv_{int(match.group(1)) // 2}."),
    (re.compile(r"^patch_embed\.proj\.(\d+)\.1\."),
     lambda match: f"patch_embed.bn_{int(match.group(1)) // 2}."),
    (re.compile(r"^blocks\.(\d+)\."), r"block_\1."),
    (re.compile(r"^cls_attn_blocks\.(\d+)\."), r"cls_attn_block_\1."),
    (re.compile(r"^(block_\d+)\.attn\.temperature$"), r"\1/attn/temperature"),
    (re.compile(r"\.(gamma\d)$"), r".\1.gamma"),  # LayerScale layers "gammaN", variable gamma
    (re.compile(r"^cls_token$"), "cls_token/token"),
]
_RUNNING = {"running_mean": "moving_mean", "running_var": "moving_variance"}
_DEPTHWISE = re.compile(r"\.local_mp\.conv\d\.weight$")


def _rename(key: str) -> str:
    for pattern, replacement in _RULES:
        key = pattern.sub(replacement, key)
    return key


def from_timm(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """timm XCiT keys -> ({vit_zoo path: array}, [unknown keys])."""
    out, rest = {}, {}
    for key, value in raw.items():
        leaf = key.rpartition(".")[2]
        if leaf == "num_batches_tracked":
            continue
        if leaf in _RUNNING:
            module = _rename(key).rpartition(".")[0]
            out[f"{module.replace('.', '/')}/{_RUNNING[leaf]}"] = value
        elif _DEPTHWISE.search(key) and value.ndim == 4:
            # (C, 1, 3, 3) -> (1, C, 3, 3), which the generic OIHW -> HWIO transpose turns
            # into Keras' depthwise (3, 3, C, 1).
            rest[key] = value.transpose(1, 0, 2, 3)
        else:
            rest[key] = value
    translated, unknown = timm_to_keras(rest, _RULES, {})
    projection = "pos_embed/token_projection/kernel"
    if projection in translated:  # a 1x1 convolution, kept as a Dense kernel (in, out)
        translated[projection] = translated[projection][0, 0]
    return {**translated, **out}, unknown
