"""Putting checkpoint arrays into a model: all checks first, then all assignments.

Rules (the same for every family and file format):
- classification head of another class count (or none in the file): the head is not loaded, it
  is zero-initialized, and the user is warned once;
- resizable state of another shape (position embeddings for another grid, Swin relative-
  position tables for another window): fitted by the layer that holds it
  (`adapt_checkpoint_value`: resampled as upstream fine-tuning and timm do);
- parts the model was built without (head, pre-logits, MAP head with include_top=False and
  pooling=None): ignored;
- anything else that does not fit (a shape, a missing variable, a key no model variable takes):
  one error that names every offending variable with both shapes, and the model is unchanged.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from vit_zoo import names, structure
from vit_zoo.transforms import for_record
from vit_zoo.weights.checkpoint import Checkpoint
from vit_zoo.weights.readers import CheckpointError

_MAX_LISTED = 12


def _adapters(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """{variable path: the innermost layer holding it that can adapt checkpoint values}.

    Layers with resizable state (position embeddings, Swin's relative-position tables) have an
    `adapt_checkpoint_value(variable, value)` method that fits a checkpoint's value to their
    shape, or returns it unchanged; the loader knows no family beyond that.
    """
    adapters = {}
    for layer in structure.all_layers(model):  # parents first: inner layers overwrite them
        if hasattr(layer, "adapt_checkpoint_value"):
            adapters.update({variable.path: layer for variable in layer.weights})
    return adapters


def _describe(problems: list[str]) -> str:
    listed = problems[:_MAX_LISTED]
    more = len(problems) - len(listed)
    return "\n  ".join(listed) + (f"\n  ... and {more} more" if more > 0 else "")


def load_checkpoint(model: keras.Model, checkpoint: Checkpoint) -> None:
    """Assign `checkpoint` to `model` following the rules above, or raise CheckpointError."""
    arrays = checkpoint.arrays_for(model)
    variables = {variable.path: variable for variable in model.weights}
    adapters = _adapters(model)
    model_parts = {names.top_level(path) for path in variables}
    problems = [f"{key}: not a variable of any vit_zoo layer" for key in checkpoint.unknown]
    for key in arrays:
        part = names.top_level(key)
        left_out_by_design = part in names.OPTIONAL_PARTS and part not in model_parts
        if key not in variables and not left_out_by_design:
            problems.append(f"{key}: shape {arrays[key].shape} has no matching model variable")

    plan: dict[str, np.ndarray] = {}
    head_reset = False
    for path, variable in variables.items():
        target = tuple(variable.shape)
        value = arrays.get(path)
        if names.top_level(path) in names.HEADS and (value is None or value.shape != target):
            plan[path] = np.zeros(target, dtype="float32")
            head_reset = True
            continue
        if value is None:
            problems.append(f"{path}: missing from the checkpoint (model expects {target})")
            continue
        if tuple(value.shape) != target and path in adapters:
            value = adapters[path].adapt_checkpoint_value(variable, value)
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
        kernel = arrays.get(f"{names.HEAD}/kernel")
        if not checkpoint.valid_head:
            have = "a head that is not a valid classifier"
        elif kernel is not None:
            have = f"{kernel.shape[-1]} classes"
        else:
            have = "no classification head"
        warnings.warn(
            f"Classification head not loaded from {checkpoint.source!r}: the checkpoint has "
            f"{have}, the model {variables[f'{names.HEAD}/kernel'].shape[-1]}. The head starts at "
            "zero, to be trained.",
            stacklevel=3,
        )
