"""What the cache holds and how far each registered file can be trusted: for `vit-zoo list
--verbose` (without reading the files) and `vit-zoo verify` (hashing them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vit_zoo.weights import download, integrity
from vit_zoo.weights.registry import GOOGLE_BUCKET, MIXER_BUCKET, WeightsRecord

OK, MISMATCH, MISSING = "ok", "MISMATCH", "missing"


def pinning(record: WeightsRecord) -> str:
    """Whether the URL always means the same bytes, in words."""
    if record.revision:
        return f"pinned to {record.revision[:12]}"
    if record.url.startswith((GOOGLE_BUCKET, MIXER_BUCKET)):
        return "not pinned (a storage bucket object: no revisions to pin)"
    return "not pinned (no public source gives the hub revision)"


def hash_source(record: WeightsRecord) -> str:
    """Where the expected sha256 comes from: registry, first use, or none yet."""
    expected = integrity.expected_for(record, download.cached_path(record))
    if expected.source == integrity.REGISTRY:
        return f"sha256 {expected.sha256} (registry: two independent public sources)"
    if expected.source == integrity.FIRST_USE:
        return f"sha256 {expected.sha256} (first use: recorded at its download)"
    return "sha256 none yet (trust on first use: recorded at the first download)"


@dataclass(frozen=True)
class Verified:
    record: WeightsRecord
    path: Path
    state: str  # OK, MISMATCH or MISSING
    detail: str


def verify(record: WeightsRecord) -> Verified:
    """Hash a cached file against its expected sha256 (a file with none gets it recorded)."""
    path = download.cached_path(record)
    if not path.exists():
        return Verified(record, path, MISSING, "not in the cache")
    try:
        expected = integrity.check_cached(record, path)
    except integrity.WeightsIntegrityError as error:
        return Verified(record, path, MISMATCH, str(error))
    return Verified(record, path, OK, f"sha256 {expected.sha256[:16]}... ({expected.source})")


def strays(records: list[WeightsRecord]) -> list[Path]:
    """Files in the cache that belong to no registered record (an older vit_zoo's cache names,
    a renamed tag) and staging folders of downloads whose process is gone."""
    directory = download.cache_dir()
    if not directory.is_dir():
        return []
    known = {record.filename for record in records}
    known |= {integrity.sidecar(Path(name)).name for name in known}
    abandoned = set(download.abandoned_downloads(directory))
    return sorted(entry for entry in directory.iterdir()
                  if (entry.is_file() and entry.name not in known) or entry in abandoned)
