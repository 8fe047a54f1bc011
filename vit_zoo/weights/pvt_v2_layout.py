"""Upstream PVT v2 checkpoint names -> vit_zoo variable paths.

timm (.safetensors, the hub copies of the authors' ImageNet-1k weights): `patch_embed.{proj,
norm}`, `stages.{i}.downsample.{proj,norm}` (stages 1-3), `stages.{i}.blocks.{j}.{norm1,
attn.{q, kv, sr, norm, proj}, norm2, mlp.{fc1, dwconv, fc2}}`, `stages.{i}.norm`, `head`.
The authors' layout (whai362/PVT, released as .pth, which vit_zoo does not read; accepted here
when such a state dict is saved as .safetensors): `patch_embed{1-4}`, `block{1-4}.{j}`,
`mlp.dwconv.dwconv`, `norm{1-4}`. The last stage's norm is the model's final norm, `norm`.
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo import names
from vit_zoo.weights.naming import timm_to_keras

_ORIGINAL_MARKER = "patch_embed1.proj.weight"


# The layer names of a PVT v2 model (the builder names its layers with these).


def block_name(stage: int, index: int) -> str:
    """Block `index` of stage `stage`."""
    return f"stage{stage}_block{index}"


def downsample_name(stage: int) -> str:
    """The overlapping patch embedding in front of stage `stage` (>= 1)."""
    return f"stage{stage}_downsample"


def norm_name(stage: int, last_stage: int) -> str:
    """The LayerNorm closing stage `stage`; the last stage's is the model's final norm."""
    return names.FINAL_NORM if stage == last_stage else f"stage{stage}_norm"


def _rules(last: int, original: bool):
    if original:  # stages numbered from 1; the first patch embedding is the stem
        return [
            (re.compile(r"^patch_embed1\."), f"{names.PATCH_EMBEDDING}."),
            (re.compile(r"^patch_embed(\d+)\."),
             lambda m: downsample_name(int(m.group(1)) - 1) + "."),
            (re.compile(r"^block(\d+)\.(\d+)\."),
             lambda m: block_name(int(m.group(1)) - 1, int(m.group(2))) + "."),
            (re.compile(r"\.dwconv\.dwconv\."), ".dwconv."),
            (re.compile(r"^norm(\d+)\."), lambda m: norm_name(int(m.group(1)) - 1, last) + "."),
        ]
    return [
        (re.compile(r"^stages\.(\d+)\.downsample\."),
         lambda m: downsample_name(int(m.group(1))) + "."),
        (re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\."),
         lambda m: block_name(int(m.group(1)), int(m.group(2))) + "."),
        (re.compile(r"^stages\.(\d+)\.norm\."), lambda m: norm_name(int(m.group(1)), last) + "."),
    ]


def _last_stage(raw: dict[str, np.ndarray], original: bool) -> int:
    pattern = re.compile(r"^norm(\d+)\.weight$" if original else r"^stages\.(\d+)\.norm\.weight$")
    stages = [int(m.group(1)) - (1 if original else 0) for key in raw if (m := pattern.match(key))]
    return max(stages, default=0)


def from_timm(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """timm or the authors' PVT v2 keys (told apart by `patch_embed1`). PyTorch's depth-wise
    kernels (C, 1, 3, 3) become Keras's (3, 3, C, 1)."""
    original = _ORIGINAL_MARKER in raw
    arrays, unknown = timm_to_keras(raw, _rules(_last_stage(raw, original), original), {})
    for path, value in arrays.items():
        if path.endswith("/dwconv/kernel"):  # the generic rule gave (3, 3, 1, C)
            arrays[path] = value.transpose(0, 1, 3, 2)
    return arrays, unknown
