"""Putting a patch-grid map on its image: upsampling and colour blending, in NumPy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Colour stops of the built-in heat ramp (black, dark red, orange, yellow, white), used when
#: no colormap is given, so that the overlay needs no plotting library.
_HEAT = np.array([[0.0, 0.0, 0.0], [0.55, 0.0, 0.0], [0.95, 0.35, 0.0], [1.0, 0.85, 0.1],
                  [1.0, 1.0, 1.0]])


def _resample_axis(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear resampling along `axis` with pixel-centre alignment (a cell's value sits at its
    centre; edges are held), the way image resizers without corner alignment do it."""
    length = values.shape[axis]
    positions = (np.arange(size) + 0.5) * length / size - 0.5
    positions = np.clip(positions, 0, length - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, length - 1)
    shape = [1] * values.ndim
    shape[axis] = size
    fraction = (positions - low).reshape(shape)
    return np.take(values, low, axis=axis) * (1 - fraction) + np.take(
        values, high, axis=axis) * fraction


def upsample(attention_map: np.ndarray, size: tuple[int, int],
             method: str = "bilinear") -> np.ndarray:
    """A (rows, columns) map, or a stack (..., rows, columns), resized to `size` (height,
    width). "bilinear" is smooth; "nearest" shows every patch as a flat block."""
    attention_map = np.asarray(attention_map, dtype="float64")
    if method == "nearest":
        rows = np.arange(size[0]) * attention_map.shape[-2] // size[0]
        columns = np.arange(size[1]) * attention_map.shape[-1] // size[1]
        return attention_map[..., rows[:, None], columns[None, :]].astype("float32")
    if method != "bilinear":
        raise ValueError(f"method must be 'bilinear' or 'nearest', got {method!r}.")
    resized = _resample_axis(attention_map, size[0], attention_map.ndim - 2)
    return _resample_axis(resized, size[1], attention_map.ndim - 1).astype("float32")


def heat_colors(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> RGB in [0, 1] (shape + (3,)) on the built-in heat ramp."""
    values = np.clip(np.asarray(values, dtype="float64"), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_HEAT))
    return np.stack([np.interp(values, stops, _HEAT[:, c]) for c in range(3)], axis=-1)


def overlay(image: np.ndarray, attention_map: np.ndarray, alpha: float = 0.6,
            colormap: Callable[[np.ndarray], np.ndarray] | None = None,
            method: str = "bilinear") -> np.ndarray:
    """The image (H, W, 3) RGB in [0, 255] with a patch-grid map blended on top, as RGB floats
    in [0, 1] (H, W, 3).

    The map is upsampled to the image and scaled by its maximum (so its peak gets the full
    colour whatever the map's total); `colormap` (values in [0, 1] -> RGB or RGBA, e.g. a
    matplotlib colormap) colours it, else the built-in heat ramp. `alpha` is the map's weight.
    """
    image = np.asarray(image, dtype="float64") / 255.0
    heat = upsample(attention_map, image.shape[:2], method)
    peak = heat.max()
    heat = heat / peak if peak > 0 else heat
    colours = heat_colors(heat) if colormap is None else np.asarray(colormap(heat))[..., :3]
    return np.clip((1 - alpha) * image + alpha * colours, 0.0, 1.0).astype("float32")
