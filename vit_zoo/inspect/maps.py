"""Per-block, per-head attention maps on the patch grid: what the summary token looks at.

For ViT-like models the summary token is the class token (its attention row) or, for models
pooled by the mean of their patch tokens, the average patch token. Swin has neither: each
window's queries are averaged instead and the windows are put back where they lie on the
stage's grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from vit_zoo.inspect.collect import (
    collect_attention,
    collect_window_attention,
    require_attention,
    swin_blocks,
)
from vit_zoo.inspect.rollout import summary_row


def maps_from_attentions(attentions: Sequence[np.ndarray], grid: tuple[int, int],
                         num_prefix_tokens: int = 1, query: str = "class") -> np.ndarray:
    """(B, heads, N, N) per block -> (B, blocks, heads, rows, columns).

    Each map is the class token's attention row ("class") or the patch tokens' mean row
    ("mean") over the patch tokens, as probabilities: not renormalized, so the share a head
    gives the prefix tokens shows as a map summing to less than 1.
    """
    stacked = np.stack([np.asarray(a, dtype="float32") for a in attentions], axis=1)
    patches = summary_row(stacked, num_prefix_tokens, query)
    if patches.shape[-1] != grid[0] * grid[1]:
        raise ValueError(f"{patches.shape[-1]} patch tokens do not fill a {grid[0]}x{grid[1]} "
                         "grid.")
    return patches.reshape(*patches.shape[:-1], *grid)


def window_maps_to_grid(probabilities: np.ndarray, resolution: tuple[int, int],
                        window: tuple[int, int], padded: tuple[int, int],
                        shift: tuple[int, int]) -> np.ndarray:
    """Swin window attention (B * windows, heads, n, n) -> (B, heads, H, W) on the stage grid.

    Each token's value is the attention it receives, averaged over the queries of its window
    (the window's analogue of the mean-token map: every window's values sum to 1). Windows lie
    row-major on the cyclically shifted, padded map, as `SwinBlock` partitions it; queries in
    the padding are left out of the average, padded keys are cropped, and the shift is undone.
    """
    (height, width), (rows, columns), (padded_h, padded_w) = resolution, window, padded
    across, down = padded_w // columns, padded_h // rows
    count, heads, area = probabilities.shape[0], probabilities.shape[1], rows * columns
    batch = count // (down * across)
    windows = probabilities.reshape(batch, down, across, heads, area, area)
    real = np.zeros(padded, dtype="float64")
    real[:height, :width] = 1.0
    real = real.reshape(down, rows, across, columns).transpose(0, 2, 1, 3).reshape(
        down, across, area)
    # The padding sits at the bottom and right of the shifted map, so every window keeps at
    # least one real query.
    query_weights = real / real.sum(axis=-1, keepdims=True)
    received = np.einsum("bijhqk,ijq->bhijk", windows, query_weights)
    grid = received.reshape(batch, heads, down, across, rows, columns)
    grid = grid.transpose(0, 1, 2, 4, 3, 5).reshape(batch, heads, padded_h, padded_w)
    grid = grid[:, :, :height, :width]
    # The block read row i of the shifted map from row i + shift of the original.
    return np.roll(grid, shift, axis=(2, 3)).astype("float32")


def swin_attention_maps(model: keras.Model, images, stage: int = 0, block: int = 0,
                        head: int | None = None) -> np.ndarray:
    """Window attention of one Swin block on its stage's grid: (B, heads, H, W), or (B, H, W)
    for one `head` (see `window_maps_to_grid`). Stage s has a grid of the image size / 4 / 2**s.
    """
    maps = swin_block_maps(model, images, [(stage, block)])[stage, block]
    return maps if head is None else _select(maps, head, 1, "head")


def swin_block_maps(model: keras.Model, images, blocks: list[tuple[int, int]] | None = None
                    ) -> dict[tuple[int, int], np.ndarray]:
    """`swin_attention_maps` of several Swin blocks (all when `blocks` is None) from one
    forward pass: (stage, block) -> (B, heads, H, W)."""
    layers = swin_blocks(model)
    return {
        key: window_maps_to_grid(probabilities, layers[key].resolution, layers[key].window,
                                 layers[key].padded, layers[key].shift)
        for key, probabilities in collect_window_attention(model, images, blocks).items()
    }


def _select(maps: np.ndarray, index: int, axis: int, what: str) -> np.ndarray:
    size = maps.shape[axis]
    if not -size <= index < size:
        raise ValueError(f"{what} {index} is out of range: the model has {size}.")
    return np.take(maps, index, axis=axis)


def attention_maps(model: keras.Model, images, layer: int | tuple[int, int] | None = None,
                   head: int | None = None) -> np.ndarray:
    """What the summary token attends to, per block and head, on the patch grid.

    ViT-like models (ViT, DeiT, hybrid, CLIP): (B, blocks, heads, rows, columns), the class
    token's attention to the patches (the mean patch token's, for a model pooled by averaging
    its patch tokens); `layer` (a block index) and `head` select one, dropping that axis.
    Swin: `layer` must be a (stage, block) pair; returns (B, heads, H, W) on that stage's grid
    (see `swin_attention_maps`). Mixer: a ValueError (no attention).
    """
    if require_attention(model) == "swin":
        if not isinstance(layer, tuple) or len(layer) != 2:
            blocks = ", ".join(f"({s}, {b})" for s, b in swin_blocks(model))
            raise ValueError("Swin's windows differ stage by stage: choose one block with "
                             f"layer=(stage, block), one of {blocks}.")
        return swin_attention_maps(model, images, *layer, head=head)
    if isinstance(layer, tuple):
        raise ValueError(f"layer is a block index for a ViT, got {layer!r}.")
    attention = collect_attention(model, images)
    layout = attention.layout
    maps = maps_from_attentions(attention.layers, layout.grid, layout.num_prefix_tokens,
                                layout.query)
    if head is not None:
        maps = _select(maps, head, 2, "head")
    if layer is not None:
        maps = _select(maps, layer, 1, "layer")
    return maps
