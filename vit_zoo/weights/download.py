"""Fetching registered checkpoints into a local cache: atomically, and verified on every load.

keras.utils.get_file does the transfer and its progress bar (urllib underneath, which rejects a
transfer shorter than its Content-Length). It writes straight to its target, so it is pointed at
a private staging folder inside the cache; the file is hashed there, checked against the
registry's sha256 where there is one, its hash written beside the final name (trust on first
use otherwise), and only then moved (os.replace, atomic on one file system) to its final name.
A download that fails, or a process killed mid-transfer, leaves no file a later load accepts:
its staging folder is removed then, or by the next download once its process is gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import keras

from vit_zoo.weights import integrity
from vit_zoo.weights.integrity import WeightsIntegrityError
from vit_zoo.weights.registry import WeightsRecord

_STAGING = ".partial-"


class WeightsDownloadError(RuntimeError):
    """A checkpoint could not be fetched; the message says where to put it by hand."""


def cache_dir() -> Path:
    """VIT_ZOO_CACHE if set, else <keras cache>/vit_zoo (KERAS_HOME or ~/.keras)."""
    configured = os.environ.get("VIT_ZOO_CACHE")
    if configured:
        return Path(configured).expanduser()
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "vit_zoo"


def cached_path(record: WeightsRecord) -> Path:
    """Where a registered checkpoint lives in the cache (whether or not it is there yet)."""
    return cache_dir() / record.filename


def offline() -> bool:
    return os.environ.get("VIT_ZOO_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _manual_hint(record: WeightsRecord, target: Path) -> str:
    hint = (f"Download {record.url} by other means and save it as {target} "
            "(or pass its local path as weights=...).")
    if record.sha256:
        hint += f" Its sha256 must be {record.sha256}."
    return hint


def fetch(record: WeightsRecord) -> Path:
    """Local path of a registered checkpoint, downloading it into the cache if needed; the file
    is checked against its sha256 (the registry's, or the one recorded at its first download)
    every time. Raises WeightsDownloadError or WeightsIntegrityError."""
    target = cached_path(record)
    if target.exists():
        integrity.check_cached(record, target)
        return target
    if offline():
        raise WeightsDownloadError(
            f"VIT_ZOO_OFFLINE is set and {record.family} {record.variant} weights "
            f"{record.tag!r} are not in the cache. {_manual_hint(record, target)}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_downloads(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(), dir=target.parent))
    started = time.perf_counter()
    try:
        try:
            downloaded = Path(keras.utils.get_file(
                fname=record.filename, origin=record.url, cache_dir=str(staging),
                cache_subdir="."))
        except Exception as error:  # get_file raises plain Exception for URL failures
            raise WeightsDownloadError(
                f"Could not download {record.url}: {error}. {_manual_hint(record, target)}"
            ) from error
        actual = integrity.sha256_of(downloaded)
        if record.sha256 and actual != record.sha256:  # (the size only explains a mismatch)
            expected = integrity.Expected(record.sha256, integrity.REGISTRY)
            raise WeightsIntegrityError(
                integrity.mismatch_message(record, downloaded, expected, actual, True))
        # The hash first: a file never sits under its final name without one.
        integrity.write_sidecar(target, actual)
        os.replace(downloaded, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if keras.config.is_interactive_logging_enabled():  # as get_file's own progress bar
        seconds = max(time.perf_counter() - started, 1e-6)
        megabytes = target.stat().st_size / 1e6
        checked = "matches the registry" if record.sha256 else "recorded for later loads"
        print(f"Downloaded {megabytes:,.1f} MB in {seconds:.1f} s ({megabytes / seconds:,.1f} "
              f"MB/s) to {target}; sha256 {actual[:16]}... {checked}", flush=True)
    return target


def _staging_prefix() -> str:
    return f"{_STAGING}{socket.gethostname()}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def abandoned_downloads(directory: Path) -> list[Path]:
    """Staging folders left by downloads on this host whose process is gone (killed, or lost
    its machine mid-transfer). Folders of other hosts sharing the cache are left alone."""
    prefix = f"{_STAGING}{socket.gethostname()}-"
    abandoned = []
    for entry in directory.glob(f"{_STAGING}*"):
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if entry.name.startswith(prefix) and pid.isdigit() and not _process_alive(int(pid)):
            abandoned.append(entry)
    return abandoned


def remove_abandoned_downloads(directory: Path) -> None:
    for entry in abandoned_downloads(directory):
        shutil.rmtree(entry, ignore_errors=True)
