"""Reading checkpoint files into flat {name: numpy array} dicts, one reader per file format.

Readers only read: they never know a model. Turning upstream names into vit_zoo variable paths
is the job of the per-family layout modules (e.g. vit_zoo.weights.vit_layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as given; the message says what is wrong and what to do."""


def detect_layout(path: str | Path) -> str:
    """The file layout of a local checkpoint, from its name."""
    name = str(path).lower()
    if name.endswith(".npz"):
        return "google_npz"
    if name.endswith(".safetensors"):
        return "timm_safetensors"
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".weights.h5"):
        return "keras_weights"
    raise CheckpointError(
        f"Unsupported weights file {path}: expected an upstream .npz, a timm-layout "
        ".safetensors, a Keras .weights.h5 or a .keras file."
    )


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz archive; pickled objects are refused (allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise ValueError("it holds a single array, not an archive of named arrays")
            return {key: np.asarray(archive[key]) for key in archive.files}
    except Exception as error:  # zipfile, zlib and numpy format errors all mean the same here
        raise CheckpointError(
            f"Could not read {path} as an .npz checkpoint ({type(error).__name__}: {error}). "
            "The file is probably truncated or corrupted: delete it and download it again."
        ) from error


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a .safetensors file, as numpy arrays."""
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as error:  # SafetensorError, or a dtype numpy cannot hold
        raise CheckpointError(
            f"Could not read {path} as a .safetensors checkpoint ({error}). "
            "The file is probably truncated or corrupted: delete it and download it again."
        ) from error
