"""Upstream ViT checkpoint names -> vit_zoo variable paths.

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

_PREFIXES = ("opt/target/", "params/")


def _strip_prefix(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for prefix in _PREFIXES:
        if any(key.startswith(prefix) for key in raw):
            return {key[len(prefix):] if key.startswith(prefix) else key: value
                    for key, value in raw.items()}
    return raw


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


class _Taker:
    """Moves arrays from upstream names to ours, remembering which upstream keys were used."""

    def __init__(self, raw: dict[str, np.ndarray]):
        self.raw = raw
        self.used: set[str] = set()
        self.out: dict[str, np.ndarray] = {}

    def has(self, key: str) -> bool:
        return key in self.raw

    def take(self, key: str) -> np.ndarray:
        self.used.add(key)
        return self.raw[key]

    def move(self, source: str, target: str, transform=None) -> None:
        if source in self.raw:
            value = self.take(source)
            self.out[target] = transform(value) if transform else value

    def unknown(self) -> list[str]:
        return sorted(set(self.raw) - self.used)


def _google_norm(taker: _Taker, source: str, target: str) -> None:
    taker.move(f"{source}/scale", f"{target}/gamma", np.ravel)  # older files: (1, 1, 1, C)
    taker.move(f"{source}/bias", f"{target}/beta", np.ravel)


def _google_dense(taker: _Taker, source: str, target: str) -> None:
    taker.move(f"{source}/kernel", f"{target}/kernel")
    taker.move(f"{source}/bias", f"{target}/bias")


def _google_attention(taker: _Taker, source: str, target: str, fused: tuple[tuple[str, ...], ...]):
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


def from_google(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Google ViT .npz (vision_transformer or big_vision) -> vit_zoo paths."""
    taker = _Taker(_unstack_scanned(_strip_prefix(raw)))
    taker.move("embedding/kernel", "patch_embed/kernel")
    taker.move("embedding/bias", "patch_embed/bias")
    taker.move("cls", "cls_token/token")
    taker.move("Transformer/posembed_input/pos_embedding", "pos_embed/embedding")
    taker.move("pos_embedding", "pos_embed/embedding")  # big_vision
    _google_norm(taker, "Transformer/encoder_norm", "norm")
    _google_dense(taker, "pre_logits", "pre_logits")
    _google_dense(taker, "head", "head")

    block = re.compile(r"Transformer/encoderblock_(\d+)/")
    indices = sorted({int(m.group(1)) for key in taker.raw if (m := block.match(key))})
    for index in indices:
        source, target = f"Transformer/encoderblock_{index}/", f"block_{index}"
        norms = _submodules(taker.raw, source, "LayerNorm")
        for norm, ours in zip(norms, ("norm1", "norm2")):
            _google_norm(taker, source + norm, f"{target}/{ours}")
        for attention in _submodules(taker.raw, source, "MultiHeadDotProductAttention"):
            _google_attention(taker, source + attention, f"{target}/attn",
                              ((("query", "key", "value"), "qkv"),))
        for mlp in _submodules(taker.raw, source, "MlpBlock"):
            _google_dense(taker, f"{source}{mlp}/Dense_0", f"{target}/mlp/fc1")
            _google_dense(taker, f"{source}{mlp}/Dense_1", f"{target}/mlp/fc2")

    taker.move("MAPHead_0/probe", "map_head/probe")
    _google_attention(taker, "MAPHead_0/MultiHeadDotProductAttention_0", "map_head",
                      ((("query",), "q"), (("key", "value"), "kv")))
    _google_norm(taker, "MAPHead_0/LayerNorm_0", "map_head/norm")
    _google_dense(taker, "MAPHead_0/MlpBlock_0/Dense_0", "map_head/mlp/fc1")
    _google_dense(taker, "MAPHead_0/MlpBlock_0/Dense_1", "map_head/mlp/fc2")
    return taker.out, taker.unknown()


_TIMM_MODULES = [
    (re.compile(r"^blocks\.(\d+)\."), r"block_\1/"),
    (re.compile(r"^attn_pool\.latent$"), "map_head/probe"),
    (re.compile(r"^attn_pool\."), "map_head/"),
    (re.compile(r"^patch_embed\.proj\."), "patch_embed."),
    (re.compile(r"^cls_token$"), "cls_token/token"),
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
    """timm VisionTransformer .safetensors -> vit_zoo paths."""
    out, unknown = {}, []
    for key, value in raw.items():
        if any(marker in key for marker in _TIMM_UNSUPPORTED):
            unknown.append(key)
            continue
        path = key
        for pattern, replacement in _TIMM_MODULES:
            path = pattern.sub(replacement, path)
        if "." not in path:  # module-less parameters (cls_token, pos_embed), renamed above
            out[path] = value
            continue
        module, _, leaf = path.rpartition(".")
        module = module.replace(".", "/")
        if leaf == "weight" and value.ndim == 4:  # Conv2d OIHW -> HWIO
            out[f"{module}/kernel"] = value.transpose(2, 3, 1, 0)
        elif leaf == "weight" and value.ndim == 2:  # Linear (out, in) -> Dense (in, out)
            out[f"{module}/kernel"] = value.T
        elif leaf == "weight" and value.ndim == 1:  # LayerNorm scale
            out[f"{module}/gamma"] = value
        elif leaf == "bias" and module.rsplit("/", 1)[-1].startswith("norm"):
            out[f"{module}/beta"] = value
        elif leaf in ("bias", "gamma"):
            out[f"{module}/{leaf}"] = value
        else:
            unknown.append(key)
    return out, sorted(unknown)
