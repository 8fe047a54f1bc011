"""`preprocess_input` and `decode_predictions`, like their keras.applications twins."""

from __future__ import annotations

import functools
import gzip
from importlib import resources

import numpy as np

from vit_zoo.numerics import MODES, Numerics

_CLASS_FILES = {1000: "imagenet2012_classes.tsv.gz", 21843: "imagenet21k_classes.tsv.gz"}


def preprocess_input(x, mode: str | Numerics = "inception"):
    """RGB in [0, 255] -> the normalization a checkpoint expects, for models built with
    include_preprocessing=False (models built with it, the default, do this themselves).

    Args:
        x: array-like (..., 3), RGB in [0, 255].
        mode: "inception" ((x / 255 - 0.5) / 0.5, Google ViT / Mixer / hybrid), "imagenet"
            (ImageNet mean/std, Swin), "clip" (CLIP mean/std), or a vit_zoo.numerics.Numerics.
    Returns:
        float32 numpy array of the same shape.
    """
    if isinstance(mode, Numerics):
        mean, std = mode.mean, mode.std
    elif mode in MODES:
        mean, std = MODES[mode]
    else:
        raise ValueError(f"Unknown mode {mode!r}; expected one of {sorted(MODES)} or a Numerics.")
    x = np.asarray(x, dtype="float32")
    if x.shape[-1:] != (3,):
        raise ValueError(f"preprocess_input expects RGB images (..., 3), got shape {x.shape}.")
    mean, std = np.asarray(mean, "float32"), np.asarray(std, "float32")
    return ((x / 255.0 - mean) / std).astype("float32")


@functools.cache
def class_names(num_classes: int) -> tuple[tuple[str, str], ...]:
    """(wordnet_id, name) per class index for the ImageNet-1k (1000) or -21k (21843) heads."""
    if num_classes not in _CLASS_FILES:
        raise ValueError(
            f"No class names for {num_classes} classes; vit_zoo ships ImageNet-1k (1000) and "
            "ImageNet-21k (21843)."
        )
    data = resources.files("vit_zoo") / "data" / _CLASS_FILES[num_classes]
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return tuple(tuple(line.rstrip("\n").split("\t", 1)) for line in lines)


def label_names(num_classes: int) -> list[str] | None:
    """Class names for a head of `num_classes` if it is an ImageNet-1k / -21k head, else None."""
    if num_classes not in _CLASS_FILES:
        return None
    return [name for _, name in class_names(num_classes)]


def decode_predictions(preds, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Top classes per example as (wordnet_id, name, score), best first.

    Args:
        preds: (batch, 1000) or (batch, 21843) scores (probabilities or logits).
        top: how many classes per example.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] not in _CLASS_FILES:
        raise ValueError(
            "decode_predictions expects a batch of ImageNet predictions of shape (N, 1000) or "
            f"(N, 21843), got {preds.shape}."
        )
    names = class_names(preds.shape[1])
    best = np.argsort(-preds, axis=1, kind="stable")[:, :top]
    return [[(*names[i], float(row[i])) for i in indices] for row, indices in zip(preds, best)]
