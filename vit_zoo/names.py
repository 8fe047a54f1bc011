"""The layer-name contract, written down once.

A vit_zoo model's variables are addressed by path, `<layer>/<sublayer>/.../<variable>` (e.g.
`block_3/attn/qkv/kernel`). Three parties rely on the top-level names below:

- the builders (vit_zoo/models/) give their layers these names;
- the checkpoint layouts (vit_zoo/weights/*_layout.py) translate upstream keys to paths under
  them, and the loader reads checkpoint facts (class count, grid, tokens) from them;
- inspection and export find a model's parts by them (vit_zoo/inspect, vit_zoo/export).

What a layer *is* for training (never decayed, a block for layer-wise learning-rate decay, a
classification head) is not read from names: layers declare it, see vit_zoo.structure.
"""

from __future__ import annotations

PREPROCESSING = "preprocessing"  # the Normalization layer of include_preprocessing=True
STEM = "stem"  # a hybrid's ResNet
PATCH_EMBEDDING = "patch_embed"
CLASS_TOKEN = "cls_token"
DISTILLATION_TOKEN = "dist_token"  # DeiT's second token
POSITION_EMBEDDING = "pos_embed"
FINAL_NORM = "norm"
MAP_HEAD = "map_head"  # multi-head attention pooling
PRE_LOGITS = "pre_logits"  # Dense + tanh of the original ImageNet-21k ViTs
HEAD = "head"  # the classifier, `<HEAD>/kernel` of shape (features, classes)
DISTILLATION_HEAD = "head_dist"  # DeiT's classifier on the distillation token

#: The classifiers: a checkpoint's may be replaced by a zero one of another class count.
HEADS = (HEAD, DISTILLATION_HEAD)
#: Top-level layers a model may be built without (include_top=False, pooling=None): a
#: checkpoint's values for them are ignored then.
OPTIONAL_PARTS = (*HEADS, PRE_LOGITS, MAP_HEAD)


def block(index: int) -> str:
    """Transformer / Mixer block `index` of a ViT, hybrid, Mixer or CLIP image tower."""
    return f"block_{index}"


def swin_block(stage: int, index: int) -> str:
    """Block `index` of Swin stage `stage`."""
    return f"stage{stage}_block{index}"


def swin_merge(stage: int) -> str:
    """The patch merging in front of Swin stage `stage` (>= 1)."""
    return f"stage{stage}_merge"


def top_level(path: str) -> str:
    """The top-level layer of a variable path: 'block_3' for 'block_3/attn/qkv/kernel'."""
    return path.split("/", 1)[0]
