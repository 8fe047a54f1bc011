"""The OpenAI CLIP byte-pair vocabulary: byte alphabet, merge ranks, token ids.

Token ids, in order: the 256 byte symbols, the same 256 with the end-of-word mark `</w>`, one
token per merge (id = 512 + merge rank), then <start_of_text> and <end_of_text>. So a merge's
rank and the id of the token it makes are the same number up to 512, which lets the in-graph
BPE work on ids alone.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

END_OF_WORD = "</w>"
START_OF_TEXT = "<start_of_text>"
END_OF_TEXT = "<end_of_text>"
# The file holds more merges than CLIP uses; CLIP's vocabulary is 49,408 tokens.
NUM_MERGES = 49408 - 2 * 256 - 2


@functools.cache
def byte_order() -> tuple[int, ...]:
    """Byte values in vocabulary order: byte_order()[i] is the byte of token id i (i < 256).

    Printable Latin-1 bytes come first, then the rest (controls, space, soft hyphen).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    return tuple(printable + [b for b in range(256) if b not in set(printable)])


@functools.cache
def byte_symbols() -> tuple[str, ...]:
    """The printable stand-in for each byte value, indexed by byte (GPT-2's reversible map).

    Printable bytes stand for themselves; the others borrow code points from U+0100 on, so
    that no symbol is whitespace or a control character.
    """
    symbols = [""] * 256
    borrowed = 0
    for byte in byte_order():
        if chr(byte).isprintable() and byte != ord(" ") and byte != 0xAD:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + borrowed)
            borrowed += 1
    return tuple(symbols)


@dataclass(frozen=True)
class Vocabulary:
    """Merges and tokens of a CLIP BPE vocabulary file."""

    merges: tuple[tuple[str, str], ...]
    tokens: tuple[str, ...]

    @functools.cached_property
    def ids(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    @functools.cached_property
    def merge_ranks(self) -> dict[tuple[str, str], int]:
        return {pair: rank for rank, pair in enumerate(self.merges)}

    @property
    def start_of_text(self) -> int:
        return self.ids[START_OF_TEXT]

    @property
    def end_of_text(self) -> int:
        return self.ids[END_OF_TEXT]

    def __len__(self) -> int:
        return len(self.tokens)


DEFAULT_VOCABULARY_FILE = "bpe_simple_vocab_16e6.txt.gz"


@functools.cache
def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """Read a gzipped merges file (CLIP's format: a version line, then one "a b" merge per line)."""
    if path is None:
        source = resources.files("vit_zoo.text").joinpath(DEFAULT_VOCABULARY_FILE)
        raw = source.read_bytes()
    else:
        raw = Path(path).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1 : 1 + NUM_MERGES])
    if len(merges) != NUM_MERGES or any(len(pair) != 2 for pair in merges):
        raise ValueError(
            f"{path or DEFAULT_VOCABULARY_FILE} is not a CLIP merges file: expected "
            f"{NUM_MERGES} lines of two symbols after the version line."
        )
    symbols = byte_symbols()
    alphabet = [symbols[b] for b in byte_order()]
    tokens = (
        *alphabet,
        *(s + END_OF_WORD for s in alphabet),
        *("".join(pair) for pair in merges),
        START_OF_TEXT,
        END_OF_TEXT,
    )
    return Vocabulary(merges=merges, tokens=tokens)
