"""Upstream ConvMixer checkpoint names -> vit_zoo variable paths.

timm (.safetensors, the hub copies of the authors' releases): `stem.0` (patch convolution),
`stem.2` (BatchNorm), `blocks.{i}.0.fn.0` (depth-wise convolution) and `.0.fn.2` (its
BatchNorm), `blocks.{i}.1` (1x1 convolution) and `.3` (its BatchNorm), `head`. The authors'
own files (locuslab/convmixer) are pickled PyTorch .pth.tar archives, which vit_zoo does not
read; timm's copies hold the same tensors.
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo.weights.naming import timm_to_keras

# BatchNorm's step counter: training bookkeeping that inference never reads.
_BUFFERS = ("num_batches_tracked",)


def _moving(statistic: str):
    """A BatchNorm running statistic, as the module-less path of Keras's moving variable."""
    return lambda match: f"{match.group(1).replace('.', '/')}/{statistic}"


_TIMM_MODULES = [
    (re.compile(r"^stem\.0\."), "patch_embed."),
    (re.compile(r"^stem\.2\."), "patch_norm."),
    (re.compile(r"^blocks\.(\d+)\.0\.fn\.0\."), r"block_\1.depthwise."),
    (re.compile(r"^blocks\.(\d+)\.0\.fn\.2\."), r"block_\1.depthwise_norm."),
    (re.compile(r"^blocks\.(\d+)\.1\."), r"block_\1.pointwise."),
    (re.compile(r"^blocks\.(\d+)\.3\."), r"block_\1.pointwise_norm."),
    (re.compile(r"^(.+)\.running_mean$"), _moving("moving_mean")),
    (re.compile(r"^(.+)\.running_var$"), _moving("moving_variance")),
]
_DEPTHWISE = re.compile(r"^block_\d+/depthwise/kernel$")
# The modules of a timm ConvMixer; a key outside them is reported under its own name.
_KNOWN = re.compile(r"^(stem\.[02]|blocks\.\d+\.(0\.fn\.[02]|[13])|head)\.[a-z_]+$")


def from_timm(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """timm ConvMixer keys; returns (arrays keyed by vit_zoo path, unknown keys)."""
    kept = {key: value for key, value in raw.items()
            if _KNOWN.match(key) and not key.endswith(_BUFFERS)}
    out, unknown = timm_to_keras(kept, _TIMM_MODULES, {})
    unknown += [key for key in raw if not _KNOWN.match(key)]
    for path, value in out.items():
        # PyTorch stores a depth-wise kernel as (C, 1, kH, kW): the generic conversion gives
        # (kH, kW, 1, C), Keras's DepthwiseConv2D wants (kH, kW, C, 1).
        if _DEPTHWISE.match(path):
            out[path] = np.swapaxes(value, 2, 3)
    return out, sorted(unknown)
