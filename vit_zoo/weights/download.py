"""Fetching registered checkpoints into a local cache, atomically.

keras.utils.get_file does the transfer, progress bar and hash check. It writes straight to its
target and keeps a file whose hash does not match, so it is pointed at a private temporary
folder inside the cache; only a complete, verified file is moved (os.replace, atomic on one
file system) to its final name. An interrupted or failed download leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras

from vit_zoo.weights.registry import WeightsRecord


class WeightsDownloadError(RuntimeError):
    """A checkpoint could not be fetched; the message says where to put it by hand."""


def cache_dir() -> Path:
    """VIT_ZOO_CACHE if set, else <keras cache>/vit_zoo (KERAS_HOME or ~/.keras)."""
    configured = os.environ.get("VIT_ZOO_CACHE")
    if configured:
        return Path(configured).expanduser()
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "vit_zoo"


def offline() -> bool:
    return os.environ.get("VIT_ZOO_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _manual_hint(record: WeightsRecord, target: Path) -> str:
    return (
        f"Download {record.url} by other means and save it as {target} "
        "(or pass its local path as weights=...)."
    )


def fetch(record: WeightsRecord) -> Path:
    """Local path of a registered checkpoint, downloading it into the cache if needed."""
    directory = cache_dir()
    target = directory / record.filename
    if target.exists():
        return target
    if offline():
        raise WeightsDownloadError(
            f"VIT_ZOO_OFFLINE is set and {record.family} {record.variant} weights "
            f"{record.tag!r} are not in the cache. {_manual_hint(record, target)}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=directory))
    try:
        downloaded = keras.utils.get_file(
            fname=record.filename,
            origin=record.url,
            file_hash=record.sha256,
            hash_algorithm="sha256",
            cache_dir=str(staging),
            cache_subdir=".",
        )
        os.replace(downloaded, target)
    except ValueError as error:  # get_file's hash mismatch
        raise WeightsDownloadError(
            f"The file downloaded from {record.url} failed its sha256 check "
            f"(expected {record.sha256}): {error} Nothing was kept in the cache. "
            f"{_manual_hint(record, target)}"
        ) from error
    except Exception as error:  # get_file raises plain Exception for URL failures
        raise WeightsDownloadError(
            f"Could not download {record.url}: {error}. {_manual_hint(record, target)}"
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
