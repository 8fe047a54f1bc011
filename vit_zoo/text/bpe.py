"""Byte-pair encoding of cleaned text into CLIP token ids, in Python (the eager path)."""

from __future__ import annotations

import regex

from vit_zoo.text.vocabulary import (
    END_OF_TEXT,
    END_OF_WORD,
    START_OF_TEXT,
    Vocabulary,
    byte_symbols,
)

# open_clip's pre-tokenizer: the special-token strings first (so they are recognised even inside
# user text), English contractions, letter runs, single digits, runs of anything else.
WORD_PATTERN = (
    regex.escape(START_OF_TEXT)
    + "|"
    + regex.escape(END_OF_TEXT)
    + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


class BytePairEncoder:
    """Splits cleaned text into words and words into vocabulary ids, caching each word's ids."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self._pattern = regex.compile(WORD_PATTERN, regex.IGNORECASE)
        self._ranks = vocabulary.merge_ranks
        self._ids = vocabulary.ids
        self._symbols = byte_symbols()
        # Word -> ids. The special tokens are words of their own; they never go through BPE.
        self._cache: dict[str, tuple[int, ...]] = {
            START_OF_TEXT: (vocabulary.start_of_text,),
            END_OF_TEXT: (vocabulary.end_of_text,),
        }

    def words(self, text: str) -> list[str]:
        """The pre-tokenized words of cleaned text."""
        return self._pattern.findall(text)

    def encode(self, text: str) -> list[int]:
        """Ids of cleaned text, without start/end tokens."""
        ids: list[int] = []
        cache = self._cache
        for word in self._pattern.findall(text):
            word_ids = cache.get(word)
            if word_ids is None:
                word_ids = cache[word] = self.encode_word(word)
            ids.extend(word_ids)
        return ids

    def encode_word(self, word: str) -> tuple[int, ...]:
        """BPE of one word: merge the lowest-ranked adjacent pair until none is in the table."""
        symbols = [self._symbols[b] for b in word.encode("utf-8")]
        symbols[-1] += END_OF_WORD
        ranks = self._ranks
        while len(symbols) > 1:
            pairs = zip(symbols, symbols[1:])
            best = min(pairs, key=lambda pair: ranks.get(pair, _UNRANKED))
            if best not in ranks:
                break
            symbols = _merge(symbols, best)
        return tuple(self._ids[s] for s in symbols)


_UNRANKED = float("inf")


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    """Replace every occurrence of `pair`, scanning left to right without overlaps."""
    first, second = pair
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
            merged.append(first + second)
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged
