"""Putting checkpoint arrays into a model: all checks first, then all assignments.

Rules (the same for every family and file format):
- classification head of another class count (or none in the file): the head is not loaded, it
  is zero-initialized, and the user is warned once;
- position embeddings for another grid: resampled to the model's grid; Swin relative-position
  bias tables for another window size: resampled as timm does;
- parts the model was built without (head, pre-logits, MAP head with include_top=False and
  pooling=None): ignored;
- anything else that does not fit (a shape, a missing variable, a key no model variable takes):
  one error that names every offending variable with both shapes, and the model is unchanged.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from vit_zoo.layers.embedding import PositionEmbedding
from vit_zoo.layers.resample import resample_grid
from vit_zoo.layers.swin import resize_bias_table
from vit_zoo.transforms import for_record
from vit_zoo.weights.checkpoint import Checkpoint, model_layers
from vit_zoo.weights.readers import CheckpointError

HEAD = "head"
HEADS = (HEAD, "head_dist")  # DeiT has a second head on the distillation token
#: Top-level layers a model may leave out by design (include_top=False, pooling=None).
OPTIONAL_PARTS = (*HEADS, "pre_logits", "map_head")
_MAX_LISTED = 12


def _top_level(path: str) -> str:
    return path.split("/", 1)[0]


def _resample_position_embedding(
    value: np.ndarray, layer: PositionEmbedding, target_shape: tuple[int, ...]
) -> np.ndarray | None:
    """Checkpoint position embeddings resampled to `layer`'s grid, or None if they cannot be."""
    prefix = layer.num_prefix_tokens
    _, length, width = value.shape
    side = int(round(np.sqrt(length - prefix)))
    if width != target_shape[-1] or side * side != length - prefix:
        return None
    grid = value[0, prefix:].reshape(side, side, width)
    resized = keras.ops.convert_to_numpy(
        resample_grid(grid.astype("float32"), layer.grid_size, layer.interpolation)
    )
    return np.concatenate([value[:, :prefix], resized.reshape(1, -1, width)], axis=1)


def _describe(problems: list[str]) -> str:
    listed = problems[:_MAX_LISTED]
    more = len(problems) - len(listed)
    return "\n  ".join(listed) + (f"\n  ... and {more} more" if more > 0 else "")


def load_checkpoint(model: keras.Model, checkpoint: Checkpoint) -> None:
    """Assign `checkpoint` to `model` following the rules above, or raise CheckpointError."""
    arrays = checkpoint.arrays_for(model)
    variables = {variable.path: variable for variable in model.weights}
    position_layers = {
        layer.embedding.path: layer
        for layer in model_layers(model)
        if isinstance(layer, PositionEmbedding)
    }
    model_parts = {_top_level(path) for path in variables}
    problems = [f"{key}: not a variable of any vit_zoo layer" for key in checkpoint.unknown]
    for key in arrays:
        part = _top_level(key)
        left_out_by_design = part in OPTIONAL_PARTS and part not in model_parts
        if key not in variables and not left_out_by_design:
            problems.append(f"{key}: shape {arrays[key].shape} has no matching model variable")

    plan: dict[str, np.ndarray] = {}
    head_reset = False
    for path, variable in variables.items():
        target = tuple(variable.shape)
        value = arrays.get(path)
        if _top_level(path) in HEADS and (value is None or tuple(value.shape) != target):
            plan[path] = np.zeros(target, dtype="float32")
            head_reset = True
            continue
        if value is None:
            problems.append(f"{path}: missing from the checkpoint (model expects {target})")
            continue
        if tuple(value.shape) != target and path in position_layers:
            resized = _resample_position_embedding(value, position_layers[path], target)
            value = resized if resized is not None and resized.shape == target else value
        elif tuple(value.shape) != target and path.endswith("relative_position_bias_table"):
            window = (int(round(np.sqrt(target[0]))) + 1) // 2  # trained at another window size
            if value.shape[1:] == target[1:]:
                value = resize_bias_table(value, window)
        if tuple(value.shape) != target:
            problems.append(f"{path}: checkpoint has shape {value.shape}, model expects {target}")
            continue
        plan[path] = value

    if problems:
        raise CheckpointError(
            f"Weights {checkpoint.source!r} do not fit {model.name}; nothing was loaded:\n  "
            f"{_describe(problems)}\n"
            "Check that the weights are for the same variant (width, depth, patch size) as "
            "the builder you called."
        )
    for path, value in plan.items():
        variables[path].assign(value.astype(keras.backend.standardize_dtype(variables[path].dtype)))
    if checkpoint.record is not None:  # the evaluation transform travels with the weights
        model.eval_transform = for_record(checkpoint.record)
    if head_reset:
        kernel = arrays.get(f"{HEAD}/kernel")
        have = f"{kernel.shape[-1]} classes" if kernel is not None else "no classification head"
        warnings.warn(
            f"Classification head not loaded from {checkpoint.source!r}: the checkpoint has "
            f"{have}, the model {variables[f'{HEAD}/kernel'].shape[-1]}. The head starts at "
            "zero, to be trained.",
            stacklevel=3,
        )
