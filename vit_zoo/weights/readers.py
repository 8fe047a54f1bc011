"""Reading checkpoint files into flat {name: numpy array} dicts, one reader per file format.

Readers only read: they never know a model. Turning upstream names into vit_zoo variable paths
is the job of the per-family layout modules (e.g. vit_zoo.weights.vit_layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as given; the message says what is wrong and what to do."""


#: A key that only the named .safetensors layout has (CLIP files); anything else is timm's.
_SAFETENSORS_MARKERS = {
    "open_clip_safetensors": ("visual.conv1.weight", "token_embedding.weight"),
    "hf_clip_safetensors": (
        "vision_model.embeddings.patch_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
    ),
}


def _safetensors_layout(path: str | Path) -> str:
    """timm's layout unless the file's keys say it is a CLIP file (OpenAI / open_clip or
    Hugging Face transformers). Only the header is read."""
    if not Path(path).is_file():
        return "timm_safetensors"  # the caller reports the missing file
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as file:
            keys = set(file.keys())
    except Exception:  # unreadable: read_safetensors explains it when it gets there
        return "timm_safetensors"
    for layout, markers in _SAFETENSORS_MARKERS.items():
        if any(marker in keys for marker in markers):
            return layout
    return "timm_safetensors"


def detect_layout(path: str | Path) -> str:
    """The file layout of a local checkpoint, from its name (and a .safetensors file's keys)."""
    name = str(path).lower()
    if name.endswith(".npz"):
        return "google_npz"
    if name.endswith(".safetensors"):
        return _safetensors_layout(path)
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".weights.h5"):
        return "keras_weights"
    raise CheckpointError(
        f"Unsupported weights file {path}: expected an upstream .npz, a .safetensors (timm, "
        "OpenAI / open_clip or Hugging Face CLIP layout), a Keras .weights.h5 or a .keras file."
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
