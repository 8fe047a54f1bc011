"""Upstream checkpoints: registry, download cache, file readers and the loading rules."""

from vit_zoo.weights.checkpoint import Checkpoint, open_checkpoint
from vit_zoo.weights.download import WeightsDownloadError, cache_dir, cached_path, fetch
from vit_zoo.weights.integrity import WeightsIntegrityError
from vit_zoo.weights.loading import load_checkpoint
from vit_zoo.weights.readers import CheckpointError
from vit_zoo.weights.registry import WeightsRecord, lookup, records_for, tags_for

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "WeightsDownloadError",
    "WeightsIntegrityError",
    "WeightsRecord",
    "cache_dir",
    "cached_path",
    "fetch",
    "load_checkpoint",
    "lookup",
    "open_checkpoint",
    "records_for",
    "tags_for",
]
