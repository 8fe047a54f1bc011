"""Separable grid resampling written as small interpolation matrices.

Resizing a (H, W, C) grid to (h, w, C) is `A_h @ grid @ A_w^T` per channel, where each row of
`A` holds one output sample's weights over the input samples. Building `A` densely costs
nothing next to a transformer (grids are at most a few dozen cells a side), works with static
sizes at load time and with dynamic sizes inside a graph, and lets one definition serve every
backend, so the position embeddings a checkpoint is resized to on load are exactly the ones the
dynamic-size model computes on the fly.
"""

from __future__ import annotations

from keras import ops

#: Interpolation methods for position-embedding grids.
#: "bilinear": corner-aligned linear interpolation, what the upstream ViT code does when it
#:     fine-tunes at a new resolution (scipy.ndimage.zoom with order=1).
#: "bicubic": antialiased bicubic (Keys kernel, a=-0.5, half-pixel centers, taps renormalized
#:     at the borders), i.e. torch's `interpolate(mode="bicubic", antialias=True)` as timm uses it.
INTERPOLATIONS = ("bilinear", "bicubic")


def _cubic(x):
    """Keys cubic convolution kernel with a = -0.5 (the PIL/antialias variant)."""
    a = -0.5
    x = ops.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return ops.where(x < 1.0, near, ops.where(x < 2.0, far, ops.zeros_like(x)))


def resample_matrix(out_size, in_size, method: str = "bilinear"):
    """Interpolation weights of shape (out_size, in_size), float32.

    Sizes may be Python ints or scalar tensors (dynamic shapes).
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"Unknown interpolation {method!r}; expected one of {INTERPOLATIONS}.")
    out_f = ops.cast(out_size, "float32")
    in_f = ops.cast(in_size, "float32")
    out_index = ops.cast(ops.arange(out_size), "float32")[:, None]
    in_index = ops.cast(ops.arange(in_size), "float32")[None, :]
    if method == "bilinear":
        # Output sample i sits at input coordinate i * (in - 1) / (out - 1): corners align.
        step = ops.where(out_f > 1.0, (in_f - 1.0) / ops.maximum(out_f - 1.0, 1.0), 0.0)
        source = out_index * step
        return ops.maximum(1.0 - ops.abs(source - in_index), 0.0)
    # Antialiased bicubic: half-pixel centers; when shrinking, the kernel widens by the scale.
    scale = in_f / out_f
    stretch = ops.maximum(scale, 1.0)
    center = (out_index + 0.5) * scale
    weights = _cubic((in_index + 0.5 - center) / stretch)
    return weights / ops.sum(weights, axis=1, keepdims=True)


def resample_grid(grid, size, method: str = "bilinear"):
    """Resize a (H, W, C) or (B, H, W, C) grid to `size` = (h, w)."""
    rank = len(grid.shape)
    in_h, in_w = ops.shape(grid)[rank - 3], ops.shape(grid)[rank - 2]
    rows = ops.cast(resample_matrix(size[0], in_h, method), grid.dtype)
    cols = ops.cast(resample_matrix(size[1], in_w, method), grid.dtype)
    if rank == 3:
        return ops.einsum("ih,hwc,jw->ijc", rows, grid, cols)
    return ops.einsum("ih,bhwc,jw->bijc", rows, grid, cols)
