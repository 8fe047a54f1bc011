"""Upstream ViT checkpoint names (plain and hybrid) -> vit_zoo variable paths.

Two upstream layouts:
- Google (google-research/vision_transformer and big_vision .npz): Flax module paths such as
  `Transformer/encoderblock_3/MultiHeadDotProductAttention_1/query/kernel`, per-head q/k/v
  kernels (D, heads, head_dim), optional `opt/target/` or `params/` prefixes, and big_vision's
  renumbered sub-modules and scanned (stacked) blocks.
- timm (.safetensors): PyTorch names such as `blocks.3.attn.qkv.weight`, Linear weights stored
  (out, in), convolutions OIHW.
Both return (arrays, unknown): arrays keyed by vit_zoo variable path, and the upstream keys no
rule consumed (the loader reports those as errors).
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo.weights.naming import (
    Taker,
    google_dense,
    google_norm,
    strip_prefix,
    timm_to_keras,
)


def _unstack_scanned(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """big_vision's scan layout stores all blocks stacked under `Transformer/encoderblock/`."""
    stacked = "Transformer/encoderblock/"
    if not any(key.startswith(stacked) for key in raw):
        return raw
    out = {}
    for key, value in raw.items():
        if key.startswith(stacked):
            for index in range(value.shape[0]):
                out[f"Transformer/encoderblock_{index}/{key[len(stacked):]}"] = value[index]
        else:
            out[key] = value
    return out


def _google_attention(taker: Taker, source: str, target: str, fused: tuple[tuple[str, ...], ...]):
    """Per-head q/k/v/out kernels -> our (fused) Dense kernels; `fused` groups q/k/v names."""
    for names, dense in fused:
        keys = [f"{source}/{name}/kernel" for name in names]
        if not all(taker.has(key) for key in keys):
            continue
        kernels = [taker.take(key) for key in keys]
        taker.out[f"{target}/{dense}/kernel"] = np.concatenate(
            [k.reshape(k.shape[0], -1) for k in kernels], axis=1)
        biases = [f"{source}/{name}/bias" for name in names]
        if all(taker.has(key) for key in biases):
            taker.out[f"{target}/{dense}/bias"] = np.concatenate(
                [taker.take(key).reshape(-1) for key in biases])
    if taker.has(f"{source}/out/kernel"):
        kernel = taker.take(f"{source}/out/kernel")
        taker.out[f"{target}/proj/kernel"] = kernel.reshape(-1, kernel.shape[-1])
        taker.move(f"{source}/out/bias", f"{target}/proj/bias")


def _submodules(raw: dict[str, np.ndarray], prefix: str, kind: str) -> list[str]:
    """Names like `LayerNorm_2` directly under `prefix`, ordered by their index."""
    pattern = re.compile(re.escape(prefix) + rf"({kind}_\d+)/")
    found = {m.group(1) for key in raw if (m := pattern.match(key))}
    return sorted(found, key=lambda name: int(name.rsplit("_", 1)[1]))


_GOOGLE_STEM_CONV = re.compile(r"(conv_root|block\d+/unit\d+/conv(?:\d|_proj))/kernel")
_GOOGLE_STEM_NORM = re.compile(r"(gn_root|block\d+/unit\d+/gn(?:\d|_proj))/(scale|bias)")


def _google_stem(taker: Taker) -> None:
    """The hybrids' ResNet: `conv_root`, `gn_root`, `block{s}/unit{u}/{conv,gn}{1,2,3,_proj}`."""
    for key in list(taker.raw):
        if match := _GOOGLE_STEM_CONV.fullmatch(key):
            taker.move(key, f"stem/{match.group(1)}/kernel")
        elif match := _GOOGLE_STEM_NORM.fullmatch(key):
            leaf = "gamma" if match.group(2) == "scale" else "beta"
            taker.move(key, f"stem/{match.group(1)}/{leaf}", np.ravel)  # older files: (1,1,1,C)


def from_google(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Google ViT or hybrid .npz (vision_transformer or big_vision) -> vit_zoo paths."""
    taker = Taker(_unstack_scanned(strip_prefix(raw)))
    _google_stem(taker)
    taker.move("embedding/kernel", "patch_embed/kernel")
    taker.move("embedding/bias", "patch_embed/bias")
    taker.move("cls", "cls_token/token")
    taker.move("Transformer/posembed_input/pos_embedding", "pos_embed/embedding")
    taker.move("pos_embedding", "pos_embed/embedding")  # big_vision
    google_norm(taker, "Transformer/encoder_norm", "norm")
    google_dense(taker, "pre_logits", "pre_logits")
    google_dense(taker, "head", "head")

    block = re.compile(r"Transformer/encoderblock_(\d+)/")
    indices = sorted({int(m.group(1)) for key in taker.raw if (m := block.match(key))})
    for index in indices:
        source, target = f"Transformer/encoderblock_{index}/", f"block_{index}"
        norms = _submodules(taker.raw, source, "LayerNorm")
        for norm, ours in zip(norms, ("norm1", "norm2")):
            google_norm(taker, source + norm, f"{target}/{ours}")
        for attention in _submodules(taker.raw, source, "MultiHeadDotProductAttention"):
            _google_attention(taker, source + attention, f"{target}/attn",
                              ((("query", "key", "value"), "qkv"),))
        for mlp in _submodules(taker.raw, source, "MlpBlock"):
            google_dense(taker, f"{source}{mlp}/Dense_0", f"{target}/mlp/fc1")
            google_dense(taker, f"{source}{mlp}/Dense_1", f"{target}/mlp/fc2")

    taker.move("MAPHead_0/probe", "map_head/probe")
    _google_attention(taker, "MAPHead_0/MultiHeadDotProductAttention_0", "map_head",
                      ((("query",), "q"), (("key", "value"), "kv")))
    google_norm(taker, "MAPHead_0/LayerNorm_0", "map_head/norm")
    google_dense(taker, "MAPHead_0/MlpBlock_0/Dense_0", "map_head/mlp/fc1")
    google_dense(taker, "MAPHead_0/MlpBlock_0/Dense_1", "map_head/mlp/fc2")
    return taker.out, taker.unknown()


def _timm_stage_unit(match: re.Match) -> str:
    stage, unit = int(match.group(1)) + 1, int(match.group(2)) + 1
    return f"stem.block{stage}.unit{unit}."


_TIMM_MODULES = [
    # hybrid ResNetV2 stem (with stages, or the root alone)
    (re.compile(r"^patch_embed\.backbone\.(?:stem\.)?conv\."), "stem.conv_root."),
    (re.compile(r"^patch_embed\.backbone\.(?:stem\.)?norm\."), "stem.gn_root."),
    (re.compile(r"^patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\."), _timm_stage_unit),
    (re.compile(r"\.downsample\.conv\."), ".conv_proj."),
    (re.compile(r"\.downsample\.norm\."), ".gn_proj."),
    (re.compile(r"(stem\.block\d+\.unit\d+)\.norm(\d)\."), r"\1.gn\2."),
    (re.compile(r"^blocks\.(\d+)\."), r"block_\1/"),
    (re.compile(r"^attn_pool\.latent$"), "map_head/probe"),
    (re.compile(r"^attn_pool\."), "map_head/"),
    (re.compile(r"^patch_embed\.proj\."), "patch_embed."),
    (re.compile(r"^cls_token$"), "cls_token/token"),
    (re.compile(r"^dist_token$"), "dist_token/token"),  # DeiT's distillation token
    (re.compile(r"^pos_embed$"), "pos_embed/embedding"),
]
# Keys we know but do not support, with the reason, so the error can say more than "unknown".
_TIMM_UNSUPPORTED = {
    "reg_token": "register tokens",
    "fc_norm.": "a LayerNorm after pooling (timm's fc_norm)",
    "norm_pre.": "a LayerNorm before the blocks (CLIP-style norm_pre)",
    "attn.q_norm.": "query/key normalization",
}


def from_timm(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """timm VisionTransformer / hybrid .safetensors -> vit_zoo paths."""
    return timm_to_keras(raw, _TIMM_MODULES, _TIMM_UNSUPPORTED)
