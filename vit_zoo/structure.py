"""What a model's layers declare about themselves, read in one place.

Shared code (the optimizer, the distiller) asks a model these questions instead of knowing any
family's layer names, the way timm's `no_weight_decay()` and `group_matcher()` work:

- `never_decayed(model)`: the variables weight decay skips: every variable of rank <= 1 (biases,
  norm scales and offsets, LayerScale, a temperature) and those a layer lists in its
  `no_weight_decay()` method (class tokens, ViT position embeddings, Swin's relative-position
  bias tables).
- `block_groups(model)`: the ordered blocks (layers whose class sets `is_block = True`) of each
  (sub)model, the unit of layer-wise learning-rate decay; a two-tower model (CLIP) has a group
  per tower.
- `heads(model)`: its classification heads by role ("class", "distillation"): layers with a
  `head_role` attribute (vit_zoo.layers.ClassifierHead).

A new family declares these on its layers and needs no change here or in the training code.
"""

from __future__ import annotations

import keras


def all_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer inside `model`, nested ones included, parents before children.

    Keras has no public walk over nested layers; `_flatten_layers` is the one its own summary,
    saving and tracking use.
    """
    return list(model._flatten_layers(include_self=False, recursive=True))


def never_decayed(model: keras.layers.Layer) -> set[str]:
    """Paths of the trainable variables that weight decay must skip."""
    declared = {
        variable.path
        for layer in all_layers(model)
        if hasattr(layer, "no_weight_decay")
        for variable in layer.no_weight_decay()
    }
    return {v.path for v in model.trainable_variables if len(v.shape) <= 1 or v.path in declared}


def _owners_and_blocks(model: keras.layers.Layer):
    """(sub)model, its blocks in order: for each (sub)model that has any."""
    for owner in [model, *all_layers(model)]:
        if isinstance(owner, keras.Model):
            blocks = [layer for layer in owner.layers if getattr(layer, "is_block", False)]
            if blocks:
                yield owner, blocks


def block_groups(model: keras.layers.Layer) -> list[list[keras.layers.Layer]]:
    """The blocks of each (sub)model that has any, in model order: [[block_0, block_1, ...]]."""
    return [blocks for _, blocks in _owners_and_blocks(model)]


def layer_ids(model: keras.layers.Layer) -> dict[str, tuple[int, int]]:
    """{variable path: (layer id, depth)} for layer-wise learning-rate decay (BEiT, timm).

    Inside a (sub)model with `depth` blocks: block i (from 0) has id i + 1; the layers before
    the first block (stem, patch and position embeddings) id 0; layers between blocks (Swin's
    patch merging) the id of the block they feed, as timm groups them; layers after the last
    block (final norm, head) id depth + 1. Variables outside any group (a temperature shared by
    two towers) are left out: they learn at the full rate.
    """
    ids: dict[str, tuple[int, int]] = {}
    for owner, blocks in _owners_and_blocks(model):
        depth, passed = len(blocks), 0
        for layer in owner.layers:
            if any(layer is block for block in blocks):
                passed += 1
                layer_id = passed
            elif passed == depth:
                layer_id = depth + 1
            else:  # before the first block (0), or feeding block `passed` (id passed + 1)
                layer_id = passed + 1 if passed else 0
            for variable in layer.trainable_variables:
                ids.setdefault(variable.path, (layer_id, depth))
    return ids


def heads(model: keras.layers.Layer) -> dict[str, keras.layers.Layer]:
    """{role: layer} of the model's classification heads ("class", "distillation")."""
    return {layer.head_role: layer for layer in all_layers(model)
            if getattr(layer, "head_role", None)}
