"""PNG figures of the inspection results (matplotlib, the `viz` extra, imported on first use).

Each function draws on its own matplotlib Figure (no pyplot: no global state, no GUI backend,
safe in notebooks and servers), writes a PNG to `path` (creating its folder) and returns the
path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vit_zoo.inspect.overlay import overlay

_PANEL = 1.3  # inches per small panel
_DPI = 100


def _matplotlib():
    """The matplotlib module, or an ImportError that says how to get it."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401  (the part we draw with)
    except ImportError as error:
        raise ImportError('vit_zoo.inspect figures need matplotlib: pip install "vit_zoo[viz]"'
                          ) from error
    return matplotlib


def _figure(width: float, height: float):
    _matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _colormap(name: str):
    return _matplotlib().colormaps[name]


def _show(axis, picture, title: str | None = None, **kwargs) -> None:
    axis.imshow(picture, **kwargs)
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=8)


def rollout_overlay(image: np.ndarray, rollout_map: np.ndarray, path: str | os.PathLike,
                    title: str | None = None, colormap: str = "inferno") -> Path:
    """The image (H, W, 3, RGB in [0, 255], the model input) beside it with its rollout map
    (rows, columns) overlaid. Returns `path`."""
    figure = _figure(2 * 2.6, 2.9)
    left, right = figure.subplots(1, 2)
    _show(left, np.clip(np.asarray(image) / 255.0, 0, 1), "input")
    _show(right, overlay(image, rollout_map, colormap=_colormap(colormap)), "attention rollout")
    if title:
        figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def _overlay_grid(image, maps: Sequence[Sequence[np.ndarray | None]], row_labels, column_labels,
                  path, title, colormap) -> Path:
    """A grid of maps overlaid on the image; None leaves a panel empty."""
    rows, columns = len(maps), max(len(row) for row in maps)
    figure = _figure(columns * _PANEL, rows * _PANEL + 0.4)
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    colours = _colormap(colormap)
    for r, row in enumerate(maps):
        for c in range(columns):
            axis = axes[r, c]
            attention_map = row[c] if c < len(row) else None
            if attention_map is None:
                axis.set_axis_off()
                continue
            _show(axis, overlay(image, attention_map, colormap=colours),
                  column_labels[c] if r == 0 else None)
            if c == 0:
                axis.set_ylabel(row_labels[r], fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def layer_maps(image: np.ndarray, maps: np.ndarray, path: str | os.PathLike,
               title: str | None = None, colormap: str = "inferno") -> Path:
    """Per-block, per-head attention maps (blocks, heads, rows, columns) over the image: one
    row per block, one column per head and a last column with the heads' mean. Each panel is
    scaled to its own maximum. Returns `path`."""
    maps = np.asarray(maps)
    grid = [list(block) + [block.mean(axis=0)] for block in maps]
    heads = maps.shape[1]
    return _overlay_grid(image, grid, [f"block {b}" for b in range(maps.shape[0])],
                         [f"head {h}" for h in range(heads)] + ["mean"], path, title, colormap)


def block_maps(image: np.ndarray, maps: dict[str, np.ndarray], path: str | os.PathLike,
               columns: int = 6, title: str | None = None, colormap: str = "inferno") -> Path:
    """One map per named block (e.g. Swin's window maps, heads averaged, each on its stage's
    grid) over the image, `columns` per row, each titled by its name. Returns `path`."""
    names = list(maps)
    grid = [[maps[name] for name in names[i:i + columns]] for i in range(0, len(names), columns)]
    figure_rows = [names[i:i + columns] for i in range(0, len(names), columns)]
    rows, width = len(grid), min(columns, len(names))
    figure = _figure(width * _PANEL, rows * (_PANEL + 0.2) + 0.4)
    axes = np.asarray(figure.subplots(rows, width, squeeze=False))
    colours = _colormap(colormap)
    for r in range(rows):
        for c in range(width):
            if c >= len(grid[r]):
                axes[r, c].set_axis_off()
                continue
            _show(axes[r, c], overlay(image, grid[r][c], colormap=colours), figure_rows[r][c])
    if title:
        figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def mean_distance_plot(distances: np.ndarray, path: str | os.PathLike,
                       image_size: int | None = None, title: str | None = None) -> Path:
    """Mean attention distance (blocks, heads) in pixels against network depth, one dot per
    head (the ViT paper's figure 7, right). `image_size` sets the y range. Returns `path`."""
    distances = np.asarray(distances)
    blocks, heads = distances.shape
    figure = _figure(4.2, 3.2)
    axis = figure.subplots()
    depth = np.repeat(np.arange(1, blocks + 1), heads)
    colours = np.tile(np.arange(heads), blocks)
    axis.scatter(depth, distances.ravel(), c=colours, cmap="tab20", s=14, alpha=0.85)
    axis.set_xlabel("network depth (block)")
    axis.set_ylabel("mean attention distance (pixels)")
    axis.set_xlim(0.5, blocks + 0.5)
    axis.set_xticks(np.arange(1, blocks + 1, max(1, blocks // 12)))  # whole blocks only
    axis.set_ylim(0, image_size if image_size else max(float(distances.max()) * 1.1, 1.0))
    axis.set_title(title or "each dot is one head", fontsize=9)
    return _save(figure, path)


def position_similarity_grid(similarity: np.ndarray, path: str | os.PathLike,
                             title: str | None = None, colormap: str = "viridis") -> Path:
    """Cosine similarity of position embeddings (rows, columns, rows, columns): one small map
    per patch position, laid out on the patch grid, showing that position's similarity to every
    other (the ViT paper's figure 7, centre). Returns `path`."""
    similarity = np.asarray(similarity)
    rows, columns = similarity.shape[:2]
    side = min(0.6, 9.0 / max(rows, columns))
    figure = _figure(columns * side + 0.9, rows * side + 0.4)
    grid = figure.add_gridspec(rows, columns + 1, width_ratios=[1] * columns + [0.5])
    image = None
    for r in range(rows):
        for c in range(columns):
            axis = figure.add_subplot(grid[r, c])
            image = axis.imshow(similarity[r, c], vmin=-1, vmax=1, cmap=colormap)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.colorbar(image, cax=figure.add_subplot(grid[:, columns]), label="cosine similarity")
    figure.suptitle(title or "position embedding similarity", fontsize=9)
    return _save(figure, path)


def patch_filter_grid(filters: np.ndarray, path: str | os.PathLike, columns: int = 7,
                      title: str | None = None) -> Path:
    """Principal components of the patch projection (count, p, p, 3) in [0, 1] as RGB tiles
    (the ViT paper's figure 7, left). Returns `path`."""
    filters = np.asarray(filters)
    count = len(filters)
    width = min(columns, count)
    rows = -(-count // width)
    figure = _figure(width * 0.9, rows * 0.9 + 0.4)
    axes = np.asarray(figure.subplots(rows, width, squeeze=False))
    for index, axis in enumerate(axes.ravel()):
        if index < count:
            _show(axis, filters[index], interpolation="nearest")
        else:
            axis.set_axis_off()
    figure.suptitle(title or "principal components of the patch embedding", fontsize=9)
    return _save(figure, path)
