"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020).

A block's output token i is its input token i (the residual) plus what it attends to, so the
block mixes tokens by about (A + I), rows renormalized; chaining the blocks' mixing matrices
estimates how much of each input patch ends up in the token the classifier reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from vit_zoo.inspect.collect import collect_attention

HEAD_FUSIONS = ("mean", "max", "min")


def check_options(head_fusion: str, discard_ratio: float) -> None:
    """A ValueError for a head fusion or discard ratio the rollout does not know."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}.")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}.")


def fuse_heads(attention: np.ndarray, head_fusion: str = "mean") -> np.ndarray:
    """(B, heads, N, N) -> (B, N, N) by the mean, max or min over heads."""
    check_options(head_fusion, 0.0)
    return getattr(np, head_fusion)(np.asarray(attention, dtype="float64"), axis=1)


def discard_lowest(attention: np.ndarray, discard_ratio: float,
                   num_prefix_tokens: int = 1) -> np.ndarray:
    """Zero the lowest `discard_ratio` fraction of each row of (B, N, N) attention.

    The prefix-token columns (class, distillation) and the diagonal are never discarded: the
    rollout's answer is read from the class token, and a token's attention to itself is the
    path that keeps its own content; dropping either would cut the flow being measured
    rather than the noise. The fraction is of the remaining entries of each row, rounded down.
    """
    check_options("mean", discard_ratio)
    attention = np.array(attention, dtype="float64")
    length = attention.shape[-1]
    protected = np.eye(length, dtype=bool)
    protected[:, :num_prefix_tokens] = True
    count = int(discard_ratio * (length - protected.sum(axis=1)).min())
    if count == 0:
        return attention
    # Protected entries sort last; ties break by column order (a stable sort), so equal weights
    # are discarded deterministically.
    ranked = np.where(protected, np.inf, attention)
    lowest = np.argsort(ranked, axis=-1, kind="stable")[..., :count]
    np.put_along_axis(attention, lowest, 0.0, axis=-1)
    return attention


def rollout_matrix(attentions: Sequence[np.ndarray], head_fusion: str = "mean",
                   discard_ratio: float = 0.0, num_prefix_tokens: int = 1) -> np.ndarray:
    """The cumulative token-mixing matrix (B, N, N) of a stack of blocks.

    attentions: each block's attention probabilities (B, heads, N, N), first block first.
    Per block: fuse the heads, discard the weakest weights (see `discard_lowest`), add the
    identity for the residual connection, renormalize the rows; then multiply the blocks'
    matrices, the last block on the left. Row i of the result: how much of each input token
    reaches output token i.
    """
    if not len(attentions):
        raise ValueError("attention rollout needs the attention of at least one block.")
    result = None
    for attention in attentions:
        fused = discard_lowest(fuse_heads(attention, head_fusion), discard_ratio,
                               num_prefix_tokens)
        mixing = fused + np.eye(fused.shape[-1])
        mixing /= mixing.sum(axis=-1, keepdims=True)
        result = mixing if result is None else mixing @ result
    return result


def summary_row(matrix: np.ndarray, num_prefix_tokens: int, query: str = "class") -> np.ndarray:
    """(B, N, N) token-to-token weights -> (B, patches): the class token's row ("class") or the
    mean of the patch tokens' rows ("mean"), restricted to the patch columns."""
    if query == "class":
        if num_prefix_tokens < 1:
            raise ValueError("query='class' needs a class token (num_prefix_tokens >= 1).")
        row = matrix[..., 0, :]
    elif query == "mean":
        row = matrix[..., num_prefix_tokens:, :].mean(axis=-2)
    else:
        raise ValueError(f"query must be 'class' or 'mean', got {query!r}.")
    return row[..., num_prefix_tokens:]


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each map (over its last two axes) to sum to 1; all-zero maps stay zero."""
    total = maps.sum(axis=(-2, -1), keepdims=True)
    return np.divide(maps, total, out=np.zeros_like(maps), where=total > 0)


def rollout_from_attentions(
    attentions: Sequence[np.ndarray],
    grid: tuple[int, int],
    num_prefix_tokens: int = 1,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    query: str = "class",
) -> np.ndarray:
    """Attention rollout maps (B, rows, columns) from known attention, each summing to 1.

    attentions: (B, heads, N, N) per block with N = num_prefix_tokens + rows * columns, tokens
        in the model's order (prefix tokens, then the patches row by row).
    query: "class" reads the class token's row of the rollout; "mean" averages the patch
        tokens' rows (models pooled by the mean of their patch tokens).
    """
    matrix = rollout_matrix(attentions, head_fusion, discard_ratio, num_prefix_tokens)
    patches = summary_row(matrix, num_prefix_tokens, query)
    if patches.shape[-1] != grid[0] * grid[1]:
        raise ValueError(f"{patches.shape[-1]} patch tokens do not fill a {grid[0]}x{grid[1]} "
                         f"grid (N = {matrix.shape[-1]}, {num_prefix_tokens} prefix tokens).")
    return normalize_maps(patches.reshape(*patches.shape[:-1], *grid))


def attention_rollout(model: keras.Model, images, head_fusion: str = "mean",
                      discard_ratio: float = 0.0) -> np.ndarray:
    """Attention rollout of a ViT-like model (ViT, DeiT, hybrid, CLIP) on `images`.

    images: RGB in [0, 255], (B, H, W, 3) at the model's input size.
    Returns (B, rows, columns) over the patch grid, each map summing to 1: the class token's
    row of the rollout, or, for a model pooled by the mean of its patch tokens, the mean of
    the patch tokens' rows. `upsample` / `overlay` put it on the image.
    """
    check_options(head_fusion, discard_ratio)  # before the forward pass, not after
    attention = collect_attention(model, images)
    layout = attention.layout
    return rollout_from_attentions(attention.layers, layout.grid, layout.num_prefix_tokens,
                                   head_fusion, discard_ratio, layout.query)
