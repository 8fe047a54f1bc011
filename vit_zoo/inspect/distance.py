"""Mean attention distance (the ViT paper, Dosovitskiy et al. 2021, figure 7 right): how far,
in input pixels, each head looks. Its analogue for a CNN is the receptive field size.

The class and distillation tokens are left out as queries and as keys, and each patch query's
weights over the patch keys are renormalized to sum to 1. Those tokens have no place on the
image, so no distance; counting them as distance 0 would make a head that parks its attention
on the class token look local, and leaving their weight out without renormalizing would make
it look short-sighted in the same way. Renormalized, the figure is the mean distance of the
patches a head actually attends to.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from vit_zoo.inspect.collect import collect_attention


def patch_distances(grid: tuple[int, int], cell_size: tuple[float, float]) -> np.ndarray:
    """(P, P) Euclidean distances between patch centres, in input pixels, patches row-major."""
    rows, columns = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    centres = np.stack([rows.ravel() * cell_size[0], columns.ravel() * cell_size[1]], axis=-1)
    return np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1))


def mean_distance_from_attentions(attentions: Sequence[np.ndarray], grid: tuple[int, int],
                                  cell_size: float | tuple[float, float],
                                  num_prefix_tokens: int = 1) -> np.ndarray:
    """(B, heads, N, N) per block -> (blocks, heads) mean attention distance in pixels.

    For each patch query: the attention-weighted mean distance to the patch keys (weights
    renormalized over the patches, see the module docstring); averaged over the queries and
    the images. A query with no weight on any patch has no distance and is left out.
    """
    if np.isscalar(cell_size):
        cell_size = (float(cell_size), float(cell_size))
    distances = patch_distances(grid, cell_size)
    result = []
    for attention in attentions:
        weights = np.asarray(attention, dtype="float64")[..., num_prefix_tokens:,
                                                         num_prefix_tokens:]
        if weights.shape[-1] != distances.shape[0]:
            raise ValueError(f"{weights.shape[-1]} patch tokens do not fill a "
                             f"{grid[0]}x{grid[1]} grid.")
        total = weights.sum(axis=-1)
        per_query = np.divide((weights * distances).sum(axis=-1), total,
                              out=np.zeros_like(total), where=total > 0)
        counted = (total > 0).sum(axis=(0, 2))
        result.append(per_query.sum(axis=(0, 2)) / np.maximum(counted, 1))
    return np.stack(result).astype("float32")


def mean_attention_distance(model: keras.Model, images) -> np.ndarray:
    """Mean attention distance (blocks, heads) in input pixels of a ViT-like model on `images`
    (RGB in [0, 255] at the model's input size). For hybrids a patch is the stem's effective
    stride wide (the image size over the token grid)."""
    attention = collect_attention(model, images)
    layout = attention.layout
    return mean_distance_from_attentions(attention.layers, layout.grid, layout.cell_size,
                                         layout.num_prefix_tokens)
