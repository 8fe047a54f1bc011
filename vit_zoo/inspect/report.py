"""Everything `vit-zoo explain` writes for a model and some images, in one call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from vit_zoo.inspect import figures
from vit_zoo.inspect.collect import collect_attention, family, require_attention
from vit_zoo.inspect.distance import mean_distance_from_attentions
from vit_zoo.inspect.embeddings import patch_embedding_filters, position_embedding_similarity
from vit_zoo.inspect.maps import maps_from_attentions, swin_block_maps
from vit_zoo.inspect.rollout import check_options, rollout_from_attentions

#: The arrays behind the figures, for anyone who wants the numbers.
ARRAYS = "attention.npz"


@dataclass
class Explanation:
    """The files written (figures and ARRAYS) and notes on what was left out and why."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def unique_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """File stems to name each image's figures by; repeated stems get _2, _3, ..."""
    names, seen = [], {}
    for path in paths:
        stem = Path(path).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def explain(model: keras.Model, images: np.ndarray, names: Sequence[str],
            output: str | os.PathLike, head_fusion: str = "mean",
            discard_ratio: float = 0.0) -> Explanation:
    """Write the inspection figures of `model` on `images` (RGB in [0, 255], already at the
    model's input size, one name each) into the folder `output`.

    ViT-like models: per image `<name>_rollout.png` and `<name>_layers.png`; for all of them
    `mean_distance.png`, `position_embedding.png`, `patch_filters.png` (not for hybrids) and
    ARRAYS (rollout, layer maps, mean distance). Swin: per image `<name>_windows.png` (each
    block's window attention, heads averaged), `patch_filters.png` and ARRAYS. Mixer: a
    ValueError.
    """
    check_options(head_fusion, discard_ratio)
    require_attention(model)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if family(model) == "swin":
        result = _explain_swin(model, images, names, output)
    else:
        result = _explain_vit(model, images, names, output, head_fusion, discard_ratio)
    try:
        filters = patch_embedding_filters(model)
    except ValueError as error:  # a hybrid: its patch projection does not see pixels
        result.notes.append(f"patch filters left out: {error}")
    else:
        result.files.append(figures.patch_filter_grid(filters, output / "patch_filters.png"))
    return result


def _explain_vit(model, images, names, output: Path, head_fusion, discard_ratio) -> Explanation:
    attention = collect_attention(model, images)
    layout = attention.layout
    rollout = rollout_from_attentions(attention.layers, layout.grid, layout.num_prefix_tokens,
                                      head_fusion, discard_ratio, layout.query)
    maps = maps_from_attentions(attention.layers, layout.grid, layout.num_prefix_tokens,
                                layout.query)
    distance = mean_distance_from_attentions(attention.layers, layout.grid, layout.cell_size,
                                             layout.num_prefix_tokens)
    reader = "class token" if layout.query == "class" else "mean patch token"
    result = Explanation()
    for image, name, rollout_map, layer_maps in zip(images, names, rollout, maps):
        result.files.append(figures.rollout_overlay(
            image, rollout_map, output / f"{name}_rollout.png",
            title=f"{name}: rollout to the {reader} ({head_fusion} over heads, "
                  f"discard {discard_ratio:g})"))
        result.files.append(figures.layer_maps(
            image, layer_maps, output / f"{name}_layers.png",
            title=f"{name}: {reader} attention per block and head"))
    result.files.append(figures.mean_distance_plot(
        distance, output / "mean_distance.png", image_size=max(images.shape[1:3]),
        title=f"mean attention distance over {len(images)} image(s)"))
    result.files.append(figures.position_similarity_grid(
        position_embedding_similarity(model), output / "position_embedding.png"))
    arrays = output / ARRAYS
    np.savez(arrays, names=np.array(list(names)), rollout=rollout, layer_maps=maps,
             mean_distance=distance)
    result.files.append(arrays)
    return result


def _explain_swin(model, images, names, output: Path) -> Explanation:
    maps = swin_block_maps(model, images)
    result = Explanation(notes=[
        "Swin: no rollout, mean distance or position-embedding figures (its attention is "
        "local to windows on grids that shrink by stage, and its positions are relative "
        "biases); each block's window attention is drawn instead."])
    for index, (image, name) in enumerate(zip(images, names)):
        per_block = {f"stage {s} block {b}": block[index].mean(axis=0)
                     for (s, b), block in maps.items()}
        result.files.append(figures.block_maps(
            image, per_block, output / f"{name}_windows.png",
            title=f"{name}: window attention received (mean over queries and heads)"))
    arrays = output / ARRAYS
    np.savez(arrays, names=np.array(list(names)),
             **{f"windows_stage{s}_block{b}": block for (s, b), block in maps.items()})
    result.files.append(arrays)
    return result
