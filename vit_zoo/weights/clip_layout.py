"""Upstream CLIP checkpoint names -> vit_zoo variable paths.

Two upstream layouts, both PyTorch (.safetensors; Linear weights stored (out, in), convolutions
OIHW):
- OpenAI / open_clip: `visual.{conv1, class_embedding, positional_embedding, ln_pre,
  transformer.resblocks.N.{ln_1, attn.{in_proj_weight, in_proj_bias, out_proj}, ln_2,
  mlp.{c_fc, c_proj}}, ln_post, proj}`, then the text tower at the top level:
  `token_embedding`, `positional_embedding`, `transformer.resblocks.N...`, `ln_final`,
  `text_projection`, and `logit_scale`. The two projections are plain matrices used as
  `x @ proj`, so they are already (in, out).
- Hugging Face transformers CLIPModel: `vision_model.{embeddings.{patch_embedding,
  class_embedding, position_embedding}, pre_layrnorm, encoder.layers.N.{layer_norm1,
  self_attn.{q,k,v,out}_proj, layer_norm2, mlp.{fc1,fc2}}, post_layernorm}`,
  `visual_projection`, `text_model.{embeddings.{token_embedding, position_embedding},
  encoder.layers.N..., final_layer_norm}`, `text_projection`, `logit_scale`.

Our side (vit_zoo.models.clip): the image tower keeps the ViT layer names (`patch_embed`,
`cls_token`, `pos_embed`, `norm_pre`, `block_N`, `norm`) plus `image_projection`; the text
tower's layers all start with `text_`; `logits/logit_scale` is the temperature. Stored buffers
(causal masks, position ids, the metadata of OpenAI's original files) are derived from the
shapes and ignored. Both translators return (arrays, unknown upstream keys).
"""

from __future__ import annotations

import re

import numpy as np

from vit_zoo.weights.naming import Taker

#: Keys that are buffers or metadata, not parameters: recomputed from the architecture.
_IGNORED = re.compile(
    r"(^|\.)(attn_mask|position_ids)$|^(input_resolution|context_length|vocab_size)$"
)
TEXT_PREFIX = "text_"
LOGIT_SCALE = "logits/logit_scale"


def tower_of(path: str) -> str:
    """Which part of a CLIP model a vit_zoo variable path belongs to: "image", "text" or
    "logits" (the temperature of the similarity head)."""
    if path == LOGIT_SCALE:
        return "logits"
    return "text" if path.startswith(TEXT_PREFIX) else "image"


def _linear(taker: Taker, source: str, target: str) -> None:
    """torch Linear (out, in) -> Dense kernel (in, out), plus its bias if it has one."""
    taker.move(f"{source}.weight", f"{target}/kernel", np.transpose)
    taker.move(f"{source}.bias", f"{target}/bias")


def _norm(taker: Taker, source: str, target: str) -> None:
    taker.move(f"{source}.weight", f"{target}/gamma")
    taker.move(f"{source}.bias", f"{target}/beta")


def _block_indices(taker: Taker, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for key in taker.raw if (m := pattern.match(key))})


def _drop_buffers(raw: dict[str, np.ndarray]) -> Taker:
    return Taker({key: value for key, value in raw.items() if not _IGNORED.search(key)})


def _openai_blocks(taker: Taker, prefix: str, target_prefix: str) -> None:
    """`{prefix}N.{ln_1, attn, ln_2, mlp}` -> `{target_prefix}N/{norm1, attn, norm2, mlp}`."""
    for index in _block_indices(taker, prefix):
        source, target = f"{prefix}{index}", f"{target_prefix}{index}"
        _norm(taker, f"{source}.ln_1", f"{target}/norm1")
        # in_proj rows are q | k | v, heads contiguous in each: transposed, our fused kernel.
        taker.move(f"{source}.attn.in_proj_weight", f"{target}/attn/qkv/kernel", np.transpose)
        taker.move(f"{source}.attn.in_proj_bias", f"{target}/attn/qkv/bias")
        _linear(taker, f"{source}.attn.out_proj", f"{target}/attn/proj")
        _norm(taker, f"{source}.ln_2", f"{target}/norm2")
        _linear(taker, f"{source}.mlp.c_fc", f"{target}/mlp/fc1")
        _linear(taker, f"{source}.mlp.c_proj", f"{target}/mlp/fc2")


def _patch_kernel(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _class_token(vector: np.ndarray) -> np.ndarray:
    return vector.reshape(1, 1, -1)


def _add_batch_axis(table: np.ndarray) -> np.ndarray:
    return table[None]


def from_open_clip(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """OpenAI CLIP / open_clip state dict (ViT image tower) -> vit_zoo paths."""
    taker = _drop_buffers(raw)
    taker.move("visual.conv1.weight", "patch_embed/kernel", _patch_kernel)
    taker.move("visual.class_embedding", "cls_token/token", _class_token)
    taker.move("visual.positional_embedding", "pos_embed/embedding", _add_batch_axis)
    _norm(taker, "visual.ln_pre", "norm_pre")
    _openai_blocks(taker, "visual.transformer.resblocks.", "block_")
    _norm(taker, "visual.ln_post", "norm")
    taker.move("visual.proj", "image_projection/kernel")

    taker.move("token_embedding.weight", "text_embedding/token_embedding")
    taker.move("positional_embedding", "text_embedding/position_embedding")
    _openai_blocks(taker, "transformer.resblocks.", "text_block_")
    _norm(taker, "ln_final", "text_norm")
    taker.move("text_projection", "text_projection/kernel")
    taker.move("logit_scale", LOGIT_SCALE, np.asarray)
    return taker.out, taker.unknown()


def _hf_blocks(taker: Taker, prefix: str, target_prefix: str) -> None:
    """`{prefix}N.{layer_norm1, self_attn, layer_norm2, mlp}` -> our encoder blocks."""
    for index in _block_indices(taker, prefix):
        source, target = f"{prefix}{index}", f"{target_prefix}{index}"
        attention = f"{source}.self_attn"
        _norm(taker, f"{source}.layer_norm1", f"{target}/norm1")
        projections = [f"{attention}.{name}_proj" for name in ("q", "k", "v")]
        if all(taker.has(f"{name}.weight") for name in projections):
            taker.out[f"{target}/attn/qkv/kernel"] = np.concatenate(
                [taker.take(f"{name}.weight").T for name in projections], axis=1
            )
        if all(taker.has(f"{name}.bias") for name in projections):
            taker.out[f"{target}/attn/qkv/bias"] = np.concatenate(
                [taker.take(f"{name}.bias") for name in projections]
            )
        _linear(taker, f"{attention}.out_proj", f"{target}/attn/proj")
        _norm(taker, f"{source}.layer_norm2", f"{target}/norm2")
        _linear(taker, f"{source}.mlp.fc1", f"{target}/mlp/fc1")
        _linear(taker, f"{source}.mlp.fc2", f"{target}/mlp/fc2")


def from_hf(raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Hugging Face transformers CLIPModel state dict -> vit_zoo paths."""
    taker = _drop_buffers(raw)
    vision, text = "vision_model.", "text_model."
    taker.move(f"{vision}embeddings.patch_embedding.weight", "patch_embed/kernel", _patch_kernel)
    taker.move(f"{vision}embeddings.class_embedding", "cls_token/token", _class_token)
    taker.move(
        f"{vision}embeddings.position_embedding.weight", "pos_embed/embedding", _add_batch_axis
    )
    _norm(taker, f"{vision}pre_layrnorm", "norm_pre")  # sic: the upstream name
    _hf_blocks(taker, f"{vision}encoder.layers.", "block_")
    _norm(taker, f"{vision}post_layernorm", "norm")
    _linear(taker, "visual_projection", "image_projection")

    taker.move(f"{text}embeddings.token_embedding.weight", "text_embedding/token_embedding")
    taker.move(f"{text}embeddings.position_embedding.weight", "text_embedding/position_embedding")
    _hf_blocks(taker, f"{text}encoder.layers.", "text_block_")
    _norm(taker, f"{text}final_layer_norm", "text_norm")
    _linear(taker, "text_projection", "text_projection")
    taker.move("logit_scale", LOGIT_SCALE, np.asarray)
    return taker.out, taker.unknown()
