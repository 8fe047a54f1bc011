"""What the embedding layers learned (the ViT paper, figure 7 left and centre): the patch
projection's principal filters and the similarity structure of the position embeddings."""

from __future__ import annotations

import keras
import numpy as np

from vit_zoo.inspect.collect import pixel_patch_embedding, position_embedding


def similarity_from_embeddings(grid_embedding: np.ndarray) -> np.ndarray:
    """(rows, columns, D) position embeddings -> (rows, columns, rows, columns) cosine
    similarity of every patch position with every other."""
    grid_embedding = np.asarray(grid_embedding, dtype="float64")
    rows, columns, width = grid_embedding.shape
    flat = grid_embedding.reshape(-1, width)
    norms = np.linalg.norm(flat, axis=-1, keepdims=True)
    unit = np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)
    return (unit @ unit.T).reshape(rows, columns, rows, columns).astype("float32")


def position_embedding_similarity(model: keras.Model) -> np.ndarray:
    """Cosine similarity (rows, columns, rows, columns) between the learned position
    embeddings of a ViT-like model's patch grid (the prefix tokens' slots left out). The grid is
    the one the embedding variable holds, the model's native grid."""
    layer = position_embedding(model)
    grid = keras.ops.convert_to_numpy(layer.grid_embedding())[0]
    return similarity_from_embeddings(grid)


def principal_filters(kernel: np.ndarray, count: int = 28) -> np.ndarray:
    """The first `count` principal components of a patch projection kernel (p, p, 3, D), as
    (count, p, p, 3) RGB images each scaled to [0, 1].

    The D filters (columns of the flattened (p * p * 3, D) kernel) are the samples: centred
    on their mean, then the right-singular vectors in pixel space by decreasing singular value.
    A component's sign is arbitrary; it is fixed so that its largest-magnitude entry is
    positive, which makes the figure reproducible.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}.")
    kernel = np.asarray(kernel, dtype="float64")
    patch_h, patch_w, channels, width = kernel.shape
    filters = kernel.reshape(patch_h * patch_w * channels, width).T
    filters = filters - filters.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(filters, full_matrices=False)
    components = components[:count]
    peaks = np.take_along_axis(components, np.abs(components).argmax(axis=1)[:, None], axis=1)
    components = components * np.where(peaks < 0, -1.0, 1.0)
    low = components.min(axis=1, keepdims=True)
    span = components.max(axis=1, keepdims=True) - low
    scaled = np.divide(components - low, span, out=np.full_like(components, 0.5), where=span > 0)
    return scaled.reshape(-1, patch_h, patch_w, channels).astype("float32")


def patch_embedding_filters(model: keras.Model, count: int = 28) -> np.ndarray:
    """The first `count` principal components of the model's patch projection, (count, p, p, 3)
    RGB in [0, 1] (ViT, DeiT, CLIP, Swin, Mixer; hybrids project ResNet features, not pixels,
    and get a ValueError). Fewer come back when the kernel has fewer components."""
    kernel = keras.ops.convert_to_numpy(pixel_patch_embedding(model).kernel)
    return principal_filters(kernel, count)
