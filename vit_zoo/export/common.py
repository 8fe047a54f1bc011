"""What the file-format exporters (TFLite, ONNX) share: the model's outputs as numbered float32
tensors, the Keras reference outputs a report compares against, and atomic writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


def numbered_outputs(network: keras.Model) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """inputs -> {"output_<i>": float32 tensor}, the network's outputs in order: the names an
    exported file's outputs get, whatever the model's own output structure."""
    def run(inputs):
        outputs = network(inputs, training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return {f"output_{i}": tf.cast(value, tf.float32) for i, value in enumerate(outputs)}
    return run


def reference_outputs(network: keras.Model, values: np.ndarray,
                      batch: int = 32) -> dict[str, np.ndarray]:
    """The Keras network's numbered outputs on `values`, computed in batches."""
    run = numbered_outputs(network)
    parts = [run(values[start:start + batch]) for start in range(0, len(values), batch)]
    return {name: np.concatenate([part[name].numpy() for part in parts]) for name in parts[0]}


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|, the figure the reports give."""
    reference = np.asarray(reference, np.float64)
    return float(np.max(np.abs(np.asarray(ours, np.float64) - reference))
                 / np.max(np.abs(reference)))


def write_atomically(path: Path, content: bytes) -> None:
    """Write next to `path` and rename into it: a reader never sees half a file, and a failure
    leaves what was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                       dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
