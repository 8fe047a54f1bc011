"""Is a cached checkpoint the file it should be? sha256 from the registry, or trust on first use.

A registered file's expected sha256 comes from the registry where two independent public
sources agree on it (vit_zoo/data/weights_pins.tsv). Every other file is trusted on first use:
the sha256 of its first complete download is written beside it, `<file>.sha256`, in the
format `sha256sum -c` reads, and every later load compares the file against it. A file whose
bytes no longer match is never used: the error names the file, both hashes and what to do.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from vit_zoo.weights.registry import WeightsRecord

_CHUNK = 1 << 22

REGISTRY = "registry"
FIRST_USE = "first use"


class WeightsIntegrityError(RuntimeError):
    """A cached or downloaded checkpoint does not match its expected sha256."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks (about 1.4 GB/s on one core here)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar(path: Path) -> Path:
    """Where the first-use hash of `path` is kept."""
    return path.with_name(path.name + ".sha256")


def read_sidecar(path: Path) -> str | None:
    """The first-use sha256 recorded beside `path`, or None."""
    try:
        line = sidecar(path).read_text(encoding="ascii").split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return line[0].lower() if line else None


def write_sidecar(path: Path, sha256: str) -> None:
    """Record `sha256` beside `path` atomically (a reader never sees half a line)."""
    target = sidecar(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(f"{sha256}  {path.name}\n", encoding="ascii")
    os.replace(partial, target)


@dataclass(frozen=True)
class Expected:
    """The hash a file must have, and who says so."""

    sha256: str | None
    source: str | None  # REGISTRY, FIRST_USE, or None: nothing recorded yet


def expected_for(record: WeightsRecord, path: Path) -> Expected:
    if record.sha256:
        return Expected(record.sha256, REGISTRY)
    recorded = read_sidecar(path)
    return Expected(recorded, FIRST_USE if recorded else None)


def mismatch_message(record: WeightsRecord, path: Path, expected: Expected, actual: str,
                     downloaded: bool) -> str:
    """What went wrong, both hashes, and what to do about it."""
    size = path.stat().st_size if path.exists() else None
    what = (f"The file downloaded from {record.url}" if downloaded
            else f"The cached file {path}")
    lines = [
        f"{what} ({record.family} {record.variant} weights {record.tag!r}) does not match "
        f"its sha256:",
        f"  expected {expected.sha256} ({_source_words(expected.source)})",
        f"  found    {actual}" + (f" ({size:,} bytes)" if size is not None else ""),
    ]
    if record.size and size is not None and size != record.size:
        lines.append(f"  the registry expects {record.size:,} bytes: the file is "
                     f"{'truncated' if size < record.size else 'longer than it should be'}")
    if downloaded:
        lines.append("Nothing was kept in the cache. Try again later; if it persists, the "
                     "upstream file has changed: please report it.")
    elif expected.source == FIRST_USE:
        lines.append(
            f"The file changed after it was first downloaded. Delete {path} and "
            f"{sidecar(path)} to download it again; if you replaced the file on purpose "
            f"and trust it, delete only {sidecar(path).name} and the next load records "
            "the new hash.")
    else:
        lines.append(f"Delete {path} to download it again (`vit-zoo verify` checks every "
                     "cached file).")
    return "\n".join(lines)


def _source_words(source: str | None) -> str:
    return {REGISTRY: "recorded in vit_zoo's registry",
            FIRST_USE: "recorded at its first download"}.get(source, "not recorded")


def check_cached(record: WeightsRecord, path: Path) -> Expected:
    """Verify a cached file, or trust it now if nothing is recorded (a file saved by hand, or
    by a vit_zoo from before hashes were kept). Raises WeightsIntegrityError on a mismatch."""
    expected = expected_for(record, path)
    actual = sha256_of(path)
    if expected.sha256 is None:
        try:
            write_sidecar(path, actual)
        except OSError as error:  # a read-only shared cache: use the file, say it is unchecked
            warnings.warn(f"Could not record the sha256 of {path} ({error}); later loads "
                          "cannot tell whether it changed.", stacklevel=4)
        return Expected(actual, FIRST_USE)
    if actual != expected.sha256:
        raise WeightsIntegrityError(mismatch_message(record, path, expected, actual, False))
    return expected
