"""TF Serving's model config file for every model under a base path."""

from __future__ import annotations

import os
from pathlib import Path


def served_models(base_dir: str | os.PathLike) -> dict[str, list[int]]:
    """model name -> its version numbers, for every <base>/<name>/<version>/saved_model.pb."""
    base = Path(base_dir)
    models: dict[str, list[int]] = {}
    for saved in sorted(base.glob("*/*/saved_model.pb")):
        version = saved.parent
        if version.name.isdigit():
            models.setdefault(version.parent.name, []).append(int(version.name))
    return {name: sorted(versions) for name, versions in models.items()}


def serving_config(base_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write `models.config` (TF Serving's ModelServerConfig, text format) listing every model
    under `base_dir` with its absolute base path; TF Serving serves each one's highest version.

    Start the server with `tensorflow_model_server --model_config_file=<path>`. `path` defaults
    to <base_dir>/models.config. Needs tensorflow-serving-api (`pip install 'vit_zoo[serving]'`),
    whose protocol buffer writes the file as the server parses it.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    base = Path(base_dir).resolve()
    models = served_models(base)
    if not models:
        raise FileNotFoundError(f"No SavedModel under {base}: expected "
                                "<base>/<model_name>/<version>/saved_model.pb.")
    config = model_server_config_pb2.ModelServerConfig()
    for name in models:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = str(base / name)
        entry.model_platform = "tensorflow"
    target = Path(path) if path is not None else base / "models.config"
    target.write_text(text_format.MessageToString(config))
    return target
