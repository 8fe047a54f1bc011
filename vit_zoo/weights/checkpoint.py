"""`weights=` resolution: a registered tag or a local file -> arrays named like our variables."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from vit_zoo import names, structure
from vit_zoo.numerics import Numerics
from vit_zoo.weights import download, readers, registry
from vit_zoo.weights.readers import CheckpointError
from vit_zoo.weights.registry import WeightsRecord

#: layout -> function(raw arrays) -> (arrays keyed by vit_zoo variable path, unknown upstream keys)
Translators = dict[str, Callable[[dict[str, np.ndarray]], tuple[dict[str, np.ndarray], list[str]]]]


@dataclass
class Checkpoint:
    """A checkpoint opened for one model family.

    `arrays` is None only for Keras .weights.h5 files, whose layout is defined by the model they
    were saved from: `arrays_for(model)` reads them through a clone of the target model.
    """

    source: str
    path: Path
    layout: str
    record: WeightsRecord | None = None
    arrays: dict[str, np.ndarray] | None = None
    unknown: list[str] = field(default_factory=list)
    saved_numerics: Numerics | None = None  # what a .keras file says about itself

    @property
    def numerics(self) -> Numerics | None:
        """The checkpoint's own numerics: from the registry, or from a .keras file's layers."""
        return self.record.numerics if self.record else self.saved_numerics

    @property
    def classes(self) -> int | None:
        """Size of the checkpoint's classification head: 0 when it has none, None when the file
        does not say (.weights.h5, read only through the target model)."""
        if self.arrays is None:
            return None
        head = self.shape(f"{names.HEAD}/kernel")
        return head[-1] if head else 0

    @property
    def valid_head(self) -> bool:
        """False for registered files whose classification head is not a valid classifier."""
        return self.record is None or self.record.valid_head

    def head_size(self, requested: int | None) -> int | None:
        """The head size a model built on this checkpoint gets: the caller's, else the
        checkpoint's (None: it has none). A head upstream did not release as a valid classifier
        is never used: asking for it without `classes=` is an error."""
        if requested:
            return requested
        if not self.valid_head:
            record = self.record
            raise ValueError(
                f"The classification head of {record.family} {record.variant} weights "
                f"{record.tag!r} is not a valid classifier (upstream released it that way; timm "
                "drops it too), so vit_zoo does not load it. Pass include_top=False for the "
                "backbone (and pre-logits, with pooling='token'), or classes=N for a new, "
                "zero-initialized head to fine-tune.")
        return self.classes or None

    def shape(self, path: str) -> tuple[int, ...] | None:
        if self.arrays is None or path not in self.arrays:
            return None
        return tuple(self.arrays[path].shape)

    def arrays_for(self, model: keras.Model) -> dict[str, np.ndarray]:
        if self.arrays is not None:
            return self.arrays
        clone = model.__class__.from_config(model.get_config())
        try:
            clone.load_weights(str(self.path))
        except Exception as error:
            raise CheckpointError(
                f"Could not load {self.path} into {model.name}: {error}\n"
                "A .weights.h5 file only fits the exact architecture it was saved from (same "
                "variant, classes and input size). To change classes or resolution, save the "
                "source model as .keras instead and pass that file."
            ) from error
        return {variable.path: keras.ops.convert_to_numpy(variable) for variable in clone.weights}


def _is_path(weights: str | os.PathLike) -> bool:
    text = os.fspath(weights)
    return os.path.exists(text) or os.sep in text or text.lower().endswith(
        (".npz", ".safetensors", ".keras", ".h5"))


def _numerics_of_saved_model(model: keras.Model) -> Numerics | None:
    """Activation, epsilons, normalization (and a hybrid stem's standardization) recorded in a
    saved vit_zoo model's layers."""
    layers = structure.all_layers(model)
    block = next((layer for layer in layers if hasattr(layer, "layer_norm_epsilon")), None)
    if block is None:
        return None
    mean, std = (0.5,) * 3, (0.5,) * 3
    for layer in layers:
        if isinstance(layer, keras.layers.Normalization) and layer.name == "preprocessing":
            config = layer.get_config()
            mean = tuple(float(m) / 255.0 for m in np.ravel(config["mean"]))
            std = tuple(float(np.sqrt(v)) / 255.0 for v in np.ravel(config["variance"]))
    stem = next((layer for layer in layers if hasattr(layer, "standardization")), None)
    if stem is None:
        return Numerics(block.activation, block.layer_norm_epsilon, mean, std)
    return Numerics(block.activation, block.layer_norm_epsilon, mean, std,
                    stem.norm_epsilon, stem.standardization, stem.conv_epsilon)


def open_checkpoint(
    weights: str | os.PathLike | None, family: str, variant: str, translators: Translators
) -> Checkpoint | None:
    """Resolve `weights` (None, a registered tag, or a local path) and read it."""
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be None, a registered tag or a file path, got {type(weights).__name__}."
        )
    text = os.fspath(weights)
    record = None
    if text in registry.tags_for(family, variant) or not _is_path(text):
        record = registry.lookup(family, variant, text)  # unknown tags raise, listing the known
        path, layout = download.fetch(record), record.layout
    else:
        path, layout = Path(text), readers.detect_layout(text)
        if not path.is_file():
            raise CheckpointError(f"Weights file {path} does not exist.")
    checkpoint = Checkpoint(source=text, path=Path(path), layout=layout, record=record)
    if layout == "keras_weights":
        return checkpoint
    if layout == "keras":
        try:
            saved = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as error:
            raise CheckpointError(f"Could not load {path} as a .keras model: {error}") from error
        checkpoint.arrays = {v.path: keras.ops.convert_to_numpy(v) for v in saved.weights}
        checkpoint.saved_numerics = _numerics_of_saved_model(saved)
        return checkpoint
    if layout not in translators:
        raise CheckpointError(
            f"{path}: {family} models cannot be read from the {layout} layout; "
            f"supported: {sorted(translators)} and Keras files."
        )
    raw = readers.read_npz(path) if layout == "google_npz" else readers.read_safetensors(path)
    checkpoint.arrays, checkpoint.unknown = translators[layout](raw)
    if not checkpoint.valid_head:  # never loaded; a requested head starts at zero
        for key in [key for key in checkpoint.arrays if names.top_level(key) == names.HEAD]:
            del checkpoint.arrays[key]
    return checkpoint
