"""The CLIP tokenizer as core TensorFlow ops: runs in tf.data, tf.function and SavedModels.

Only core ops (regex replace, string split, unicode decode/encode, hash tables, while loop), so
a stock TF Serving binary serves it; no tensorflow-text custom ops.

What it computes, exactly: the eager tokenizer with `fix_text=False`, i.e. open_clip's
tokenizer with `ftfy.fix_text` left out. The two agree on every text that ftfy leaves
unchanged. They differ on the texts ftfy repairs: mojibake, HTML entities (ftfy decodes them
until none is left when the text has no "<"; this path decodes twice, as open_clip does after
ftfy), control characters and terminal escapes, "\\r" line breaks, Latin ligatures, full-width
characters, curly quotes, lone surrogates, and text not in Unicode NFC form. Run ftfy on such
text before it reaches the graph (e.g. when writing the dataset) if it matters. Invalid UTF-8
bytes are replaced with U+FFFD first.

Character classes are spelled out as explicit code-point ranges computed from Python's `regex`
module (which open_clip uses) and Python's own whitespace and lower-case tables, so TensorFlow's
older Unicode data (RE2's \\p{L}, ICU's lower case) does not leak in.
"""

from __future__ import annotations

import functools
import html
import html.entities
import sys

import numpy as np
import regex
import tensorflow as tf

from vit_zoo.text.bpe import WORD_PATTERN, BytePairEncoder
from vit_zoo.text.vocabulary import END_OF_WORD, Vocabulary, byte_order, byte_symbols

# Byte 0xFF never occurs in UTF-8, and inputs are made valid UTF-8 first: a safe separator.
MARK = b"\xff"
_NO_RANK = 1 << 30  # larger than any merge rank
_PAIR_BASE = 1 << 16  # token ids are < 2**16, so (left, right) packs into one int64 key


@functools.cache
def _all_characters() -> str:
    return "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)


def _ranges(codepoints: list[int]) -> str:
    """RE2 character-class body for a sorted list of code points."""
    parts, start = [], None
    for i, c in enumerate(codepoints):
        if start is None:
            start = c
        if i + 1 == len(codepoints) or codepoints[i + 1] != c + 1:
            parts.append(f"\\x{{{start:x}}}" + (f"-\\x{{{c:x}}}" if c != start else ""))
            start = None
    return "".join(parts)


def _matching(pattern: str, flags: int = 0) -> list[int]:
    return [ord(m) for m in regex.findall(pattern, _all_characters(), flags)]


@functools.cache
def _re2_patterns() -> dict[str, str]:
    """The cleaning and word-splitting patterns, with every class spelled out for RE2."""
    whitespace = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    flags = regex.IGNORECASE  # as open_clip compiles its pattern

    literal_chars = set(regex.sub(r"\\(.)", r"\1", WORD_PATTERN.split(r"|[\p{L}]+")[0]))
    candidates = _matching("[" + regex.escape("".join(literal_chars)) + "]", flags)

    def literal(text: str) -> str:  # each character as the class it matches case-insensitively
        classes = []
        for ch in text:
            matches = [c for c in candidates if regex.fullmatch(regex.escape(ch), chr(c), flags)]
            classes.append("[" + _ranges(matches) + "]")
        return "".join(classes)

    specials_and_contractions = WORD_PATTERN.split(r"|[\p{L}]+")[0]
    alternatives = [
        literal(regex.sub(r"\\(.)", r"\1", alt)) for alt in specials_and_contractions.split("|")
    ]
    letters, digit = r"[\p{L}]", r"[\p{N}]"
    # [^\s\p{L}\p{N}] under IGNORECASE is the complement of [\s\p{L}\p{N}] under IGNORECASE.
    others = "^" + _ranges(_matching(r"[\s\p{L}\p{N}]", flags))
    alternatives += [
        "[" + _ranges(_matching(letters, flags)) + "]+",
        "[" + _ranges(_matching(digit, flags)) + "]",
        "[" + others + "]+",
    ]
    spaces = _ranges(whitespace)
    return {
        "final_sigma": _final_sigma_pattern(),
        "whitespace": f"[{spaces}]+",
        # Text that whitespace cleaning leaves as it is: words separated by single spaces.
        "tidy": f"(?:[^{spaces}]+(?: [^{spaces}]+)*)?",
        # A chunk that is exactly one word: the last three alternatives, whole.
        "one_word": "|".join(alternatives[-3:]),
        # A word. Inside a space-free chunk of cleaned text every character belongs to one (the
        # last class is the complement of the others and of whitespace), so nothing is skipped;
        # and with no capture group RE2 finds the matches with its fast DFA.
        "word": "|".join(alternatives),
    }


def _final_sigma_pattern() -> str:
    """Where str.lower turns "Σ" into the final form "ς": after a cased letter and not before
    one, case-ignorable characters (marks, apostrophes...) skipped on both sides.

    The two classes are read off str.lower itself: "XΣ" ends in "ς" iff X is cased and not
    case-ignorable; "ΑXΣ" ends in "ς" iff X is either of those. The follower must be neither,
    so the ignorable run cannot be cut short by backtracking.
    """
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    cased = [ord(x) for x in chars if (x + "Σ").lower().endswith("ς")]
    cased_or_ignorable = [ord(x) for x in chars if ("Α" + x + "Σ").lower().endswith("ς")]
    ignorable = sorted(set(cased_or_ignorable) - set(cased))
    before, skip = _ranges(cased), _ranges(ignorable)
    return f"([{before}])([{skip}]*)Σ([{skip}]*)([^{_ranges(cased_or_ignorable)}]|$)"


@functools.cache
def _lower_case_maps() -> tuple[np.ndarray, dict[str, str]]:
    """Python's str.lower as (table, expansions): table[c] is the lower case of code point c
    where that is one code point; expansions maps the characters whose lower case is longer."""
    changed = {
        chr(c): chr(c).lower()
        for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF and chr(c).lower() != chr(c)
    }
    table = np.arange(max(map(ord, changed)) + 1, dtype=np.int32)
    for upper, lower in changed.items():
        if len(lower) == 1:
            table[ord(upper)] = ord(lower)
    return table, {u: low for u, low in changed.items() if len(low) > 1}


class GraphTokenizer(tf.Module):
    """Strings -> int32 ids, as `CLIPTokenizer` but in TensorFlow ops (see the module doc)."""

    def __init__(self, vocabulary: Vocabulary, encoder: BytePairEncoder, context_length: int):
        super().__init__(name="clip_tokenizer")
        self.context_length = int(context_length)
        self.start_of_text = vocabulary.start_of_text
        self.end_of_text = vocabulary.end_of_text
        self._patterns = _re2_patterns()
        lower_table, self._lower_expansions = _lower_case_maps()
        self._lower = tf.constant(lower_table)
        self._byte_ids = tf.constant(
            np.argsort(np.array(byte_order())).astype(np.int32)  # byte value -> token id
        )
        pairs = [
            (vocabulary.ids[a] * _PAIR_BASE + vocabulary.ids[b], rank)
            for rank, (a, b) in enumerate(vocabulary.merges)
        ]
        self._merge_ranks = _table(
            tf.constant([k for k, _ in pairs], tf.int64),
            tf.constant([r for _, r in pairs], tf.int64),
            _NO_RANK,
        )
        self._merge_offset = 2 * 256  # token id of the merge of rank r is 512 + r
        words, ids = _known_words(vocabulary, encoder)
        self._word_rows = _table(tf.constant(words), tf.range(len(words), dtype=tf.int64), -1)
        self._word_ids = tf.RaggedTensor.from_row_lengths(
            tf.constant(np.concatenate(ids), tf.int32), [len(i) for i in ids]
        )
        self._unescape = _HtmlUnescaper()

    def __call__(self, texts, context_length: int | None = None) -> tf.Tensor:
        """int32 ids: [context_length] for a scalar string, [N, context_length] for a vector."""
        texts = tf.convert_to_tensor(texts, tf.string)
        if texts.shape.rank == 0:
            return self(texts[tf.newaxis], context_length)[0]
        if texts.shape.rank != 1:
            raise ValueError(f"Expected a scalar or a vector of strings, got shape {texts.shape}.")
        length = self.context_length if context_length is None else int(context_length)
        token_ids = self.encode(texts)
        count = tf.shape(texts)[0]
        # Dense assembly in a few ops (ragged slicing and concat cost dozens inside tf.data):
        # [SOT, first length - 2 ids, zeros...], then EOT right after the kept ids.
        kept = token_ids.to_tensor(0, shape=[None, length - 2])
        start = tf.fill([count, 1], self.start_of_text)
        bracketed = tf.concat([start, kept, tf.zeros([count, 1], tf.int32)], axis=1)
        ends = tf.cast(tf.minimum(token_ids.row_lengths(), length - 2), tf.int32) + 1
        return bracketed + self.end_of_text * tf.one_hot(ends, length, dtype=tf.int32)

    def clean(self, texts: tf.Tensor) -> tf.Tensor:
        """open_clip's cleaning without ftfy: HTML unescaped twice, whitespace, lower case.

        Each step runs only on the strings that need it (most captions need none but the
        ASCII lower case), which keeps the common case fast.
        """
        ascii_only = tf.strings.regex_full_match(texts, "[\\x00-\\x7f]*")
        texts = _only_where(~ascii_only, _valid_utf8, texts)
        # Unescaping changes nothing without "&", so only texts with one need the two passes.
        has_reference = tf.strings.regex_full_match(texts, "(?s).*&.*")
        texts = _only_where(has_reference, lambda t: self._unescape(self._unescape(t)), texts)
        tidy = tf.strings.regex_full_match(texts, self._patterns["tidy"])
        texts = _only_where(~tidy, self._collapse_whitespace, texts)
        ascii_only = tf.strings.regex_full_match(texts, "[\\x00-\\x7f]*")
        return tf.where(
            ascii_only, tf.strings.lower(texts), _only_where(~ascii_only, self._lower_case, texts)
        )

    def encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ragged int32 ids [N, (tokens)] of a vector of texts, without start/end tokens."""
        words = self.words(self.clean(texts))
        rows = self._word_rows.lookup(words.flat_values)
        known = rows >= 0
        known_ids = tf.gather(self._word_ids, tf.boolean_mask(rows, known))

        def with_new_words():
            new_ids = self._byte_pair_encode(tf.boolean_mask(words.flat_values, ~known))
            return _merge_in_order(known, known_ids, new_ids)

        word_ids = tf.cond(tf.reduce_all(known), lambda: known_ids, with_new_words)
        ids_per_text = tf.math.unsorted_segment_sum(
            word_ids.row_lengths(), words.value_rowids(), words.nrows()
        )
        return tf.RaggedTensor.from_row_lengths(word_ids.flat_values, ids_per_text, validate=False)

    def words(self, cleaned: tf.Tensor) -> tf.RaggedTensor:
        """open_clip's pre-tokenization (regex findall) as ragged strings [N, (words)].

        No word contains a space, so the space-separated chunks of cleaned text split
        independently; a chunk that is one run of letters, one digit or one run of other
        symbols is a word as it is, and only the rest go through the full pattern.
        """
        chunks = tf.strings.split(cleaned, sep=" ")
        flat = chunks.flat_values
        whole = tf.strings.regex_full_match(flat, self._patterns["one_word"])

        def split_the_rest():
            marked = tf.strings.regex_replace(
                tf.boolean_mask(flat, ~whole), self._patterns["word"], b"\\0" + MARK
            )
            pieces = tf.strings.split(marked, sep=MARK)
            pieces = tf.ragged.boolean_mask(pieces, tf.strings.length(pieces) > 0)
            as_is = tf.RaggedTensor.from_tensor(tf.boolean_mask(flat, whole)[:, tf.newaxis])
            per_chunk = _merge_in_order(whole, as_is, pieces)
            return per_chunk.flat_values, per_chunk.row_lengths()

        def all_whole():
            return flat, tf.ones_like(chunks.value_rowids())

        words, words_per_chunk = tf.cond(tf.reduce_all(whole), all_whole, split_the_rest)
        words_per_text = tf.math.unsorted_segment_sum(
            words_per_chunk, chunks.value_rowids(), chunks.nrows()
        )
        return tf.RaggedTensor.from_row_lengths(words, words_per_text, validate=False)

    def _collapse_whitespace(self, texts: tf.Tensor) -> tf.Tensor:
        texts = tf.strings.regex_replace(texts, self._patterns["whitespace"], " ")
        return tf.strings.regex_replace(texts, "^ | $", "")

    def _lower_case(self, texts: tf.Tensor) -> tf.Tensor:
        """Python's str.lower for any Unicode text (the ASCII case is tf.strings.lower)."""
        for upper, lower in self._lower_expansions.items():  # only "İ" -> "i̇" in Unicode 14
            texts = tf.strings.regex_replace(texts, regex.escape(upper), lower)
        texts = tf.strings.regex_replace(texts, self._patterns["final_sigma"], "\\1\\2ς\\3\\4")
        codepoints = tf.strings.unicode_decode(texts, "UTF-8")
        flat = codepoints.flat_values
        size = self._lower.shape[0]
        lowered = tf.where(flat < size, tf.gather(self._lower, tf.minimum(flat, size - 1)), flat)
        return tf.strings.unicode_encode(codepoints.with_flat_values(lowered), "UTF-8")

    def _byte_pair_encode(self, words: tf.Tensor) -> tf.RaggedTensor:
        """BPE of each word, all words at once: each step merges, in every word, all the
        occurrences of its lowest-ranked pair. Words are kept flat (symbols + word index), so a
        step costs the total length of the words, however unequal their lengths."""
        byte_strings = tf.strings.bytes_split(words)
        byte_values = tf.reshape(tf.io.decode_raw(byte_strings.flat_values, tf.uint8), [-1])
        symbols = tf.gather(self._byte_ids, tf.cast(byte_values, tf.int32))
        # The last byte of a word is its end-of-word variant, 256 ids further on.
        last = byte_strings.row_limits() - 1
        symbols = tf.tensor_scatter_nd_add(
            symbols, last[:, tf.newaxis], tf.fill(tf.shape(last), 256)
        )
        word_index = byte_strings.value_rowids()
        count = tf.size(words, out_type=tf.int64)

        def has_merges(symbols, word_index, merged_any):
            return merged_any

        def merge_step(symbols, word_index, _):
            return self._merge_best_pairs(symbols, word_index, count)

        symbols, word_index, _ = tf.while_loop(
            has_merges,
            merge_step,
            (symbols, word_index, count > 0),
            shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([])),
        )
        return tf.RaggedTensor.from_value_rowids(symbols, word_index, nrows=count, validate=False)

    def _merge_best_pairs(self, symbols, word_index, count):
        same_word = word_index[:-1] == word_index[1:]
        keys = tf.cast(symbols[:-1], tf.int64) * _PAIR_BASE + tf.cast(symbols[1:], tf.int64)
        ranks = tf.where(same_word, self._merge_ranks.lookup(keys), _int64(_NO_RANK))
        best = tf.math.unsorted_segment_min(ranks, word_index[:-1], count)
        match = (ranks == tf.gather(best, word_index[:-1])) & (ranks < _NO_RANK)
        taken = _left_to_right(match)
        no = tf.zeros([1], tf.bool)
        merged = tf.cast(ranks + self._merge_offset, tf.int32)
        symbols = tf.where(tf.concat([taken, no], 0), tf.concat([merged, [0]], 0), symbols)
        kept = ~tf.concat([no, taken], 0)  # drop the right half of each merged pair
        return (
            tf.boolean_mask(symbols, kept),
            tf.boolean_mask(word_index, kept),
            tf.reduce_any(match),
        )


def _only_where(mask: tf.Tensor, transform, texts: tf.Tensor) -> tf.Tensor:
    """transform(texts) where mask is true, texts elsewhere; transform sees only those strings.

    Behind a cond, so the common case (no string needs it) runs none of transform's ops:
    inside tf.data every op has a fixed cost, and most texts need none of these fixes.
    """

    def apply():
        index = tf.range(tf.size(texts))
        return tf.dynamic_stitch(
            [tf.boolean_mask(index, ~mask), tf.boolean_mask(index, mask)],
            [tf.boolean_mask(texts, ~mask), transform(tf.boolean_mask(texts, mask))],
        )

    return tf.cond(tf.reduce_any(mask), apply, lambda: texts)


def _merge_in_order(first: tf.Tensor, first_rows, other_rows):
    """Interleave two ragged row sets back into one: row i comes from first_rows where
    first[i] is true (in order), else from other_rows (in order)."""
    order = tf.concat([tf.where(first)[:, 0], tf.where(~first)[:, 0]], axis=0)
    return tf.gather(tf.concat([first_rows, other_rows], axis=0), tf.math.invert_permutation(order))


def _valid_utf8(texts: tf.Tensor) -> tf.Tensor:
    return tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace")


def _left_to_right(match: tf.Tensor) -> tf.Tensor:
    """Occurrences of a pair to merge, scanning left to right without overlap.

    Overlaps only happen for a pair of equal symbols ("a a a"): in each run of consecutive
    matches, take the 1st, 3rd, 5th... as the sequential scan does. (A run never crosses words:
    a match needs both symbols in one word.)
    """
    previous = tf.concat([tf.zeros([1], tf.bool), match[:-1]], 0)
    run_start = match & ~previous
    matches_so_far = tf.cumsum(tf.cast(match, tf.int32))
    run = tf.cumsum(tf.cast(run_start, tf.int32)) - 1
    at_run_start = tf.concat([tf.boolean_mask(matches_so_far, run_start), [0]], 0)
    offset = matches_so_far - tf.gather(at_run_start, tf.maximum(run, 0))
    return match & (offset % 2 == 0)


def _int64(value: int) -> tf.Tensor:
    return tf.constant(value, tf.int64)


def _table(keys: tf.Tensor, values: tf.Tensor, default) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default)


def _known_words(vocabulary: Vocabulary, encoder: BytePairEncoder):
    """Every whole-word token's text with its BPE ids (the table lookups skip BPE for these)."""
    byte_of = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
    words, ids = [], []
    for token in vocabulary.tokens:
        if token.endswith(END_OF_WORD):
            raw = bytes(byte_of[s] for s in token[: -len(END_OF_WORD)])
            try:
                word = raw.decode("utf-8")
            except UnicodeDecodeError:  # a piece of a character: never a whole word of text
                continue
            words.append(raw)
            ids.append(np.asarray(encoder.encode_word(word), np.int32))
    for special in (vocabulary.start_of_text, vocabulary.end_of_text):
        words.append(vocabulary.tokens[special].encode())
        ids.append(np.asarray([special], np.int32))
    return words, ids


class _HtmlUnescaper(tf.Module):
    """html.unescape in graph ops: same character references, same edge cases."""

    # Python's html module: the reference pattern and the replacement rules of _replace_charref.
    REFERENCE = r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)"

    def __init__(self):
        super().__init__(name="html_unescape")
        names = html.entities.html5
        self._named = _table(
            tf.constant([n.encode() for n in names]),
            tf.constant([v.encode() for v in names.values()]),
            MARK,
        )
        # Names a longer unknown name may start with (legacy, no ";"), longest first.
        prefixes = sorted((n for n in names if not n.endswith(";")), key=len, reverse=True)
        self._prefix_pattern = "^(" + "|".join(prefixes) + ")"
        special = {c: "" for c in html._invalid_codepoints}  # noqa: SLF001 (stdlib's own rules)
        special.update(html._invalid_charrefs)  # noqa: SLF001
        self._numeric_special = _table(
            tf.constant(list(special), tf.int64),
            tf.constant([v.encode() for v in special.values()]),
            MARK,
        )

    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        marked = tf.strings.regex_replace(texts, self.REFERENCE, MARK + b"\\0" + MARK)
        pieces = tf.strings.split(marked, sep=MARK)  # text, reference, text, reference, ..., text
        flat = pieces.flat_values
        position = tf.range(tf.size(flat, out_type=tf.int64)) - tf.gather(
            pieces.row_splits, pieces.value_rowids()
        )
        is_reference = position % 2 == 1
        where_reference = tf.where(is_reference)[:, 0]
        where_text = tf.where(~is_reference)[:, 0]
        replaced = self._replace(tf.gather(flat, where_reference))
        flat = tf.dynamic_stitch(
            [tf.cast(where_text, tf.int32), tf.cast(where_reference, tf.int32)],
            [tf.gather(flat, where_text), replaced],
        )
        return tf.strings.reduce_join(pieces.with_flat_values(flat), axis=1)

    def _replace(self, references: tf.Tensor) -> tf.Tensor:
        body = tf.strings.substr(references, 1, -1)  # without the "&"
        numeric = tf.strings.regex_full_match(body, "#.*")
        return tf.where(numeric, self._numeric(body), self._by_name(body))

    def _by_name(self, names: tf.Tensor) -> tf.Tensor:
        exact = self._named.lookup(names)
        split = tf.strings.split(
            tf.strings.regex_replace(names, self._prefix_pattern, b"\\1" + MARK), sep=MARK
        )
        prefix_found = split.row_lengths() == 2
        padded = split.to_tensor("", shape=[None, 2])
        by_prefix = tf.strings.join([self._named.lookup(padded[:, 0]), padded[:, 1]])
        unchanged = tf.strings.join(["&", names])
        fallback = tf.where(prefix_found, by_prefix, unchanged)
        return tf.where(exact == MARK, fallback, exact)

    def _numeric(self, bodies: tf.Tensor) -> tf.Tensor:
        hexadecimal = tf.strings.regex_full_match(bodies, "#[xX].*")
        digits = tf.strings.regex_replace(bodies, "^#[xX]?0*|;$", "")
        codepoints = tf.cast(tf.strings.unicode_decode(digits, "UTF-8"), tf.int64)
        row = codepoints.value_rowids()
        count = codepoints.row_lengths()
        # More than 7 significant digits is past U+10FFFF in either base.
        too_long = count > 7
        position = tf.range(tf.size(row, out_type=tf.int64)) - tf.gather(codepoints.row_splits, row)
        exponent = tf.minimum(tf.gather(count, row) - 1 - position, 7)  # no int64 overflow
        base = tf.gather(tf.where(hexadecimal, _int64(16), _int64(10)), row)
        flat = codepoints.flat_values
        digit = tf.where(flat <= ord("9"), flat - ord("0"), (flat | 0x20) - ord("a") + 10)
        number = tf.math.unsorted_segment_sum(
            digit * tf.pow(base, exponent), row, tf.size(bodies, out_type=tf.int64)
        )
        number = tf.where(too_long, _int64(sys.maxunicode + 1), number)
        special = self._numeric_special.lookup(number)
        out_of_range = (number > sys.maxunicode) | ((number >= 0xD800) & (number <= 0xDFFF))
        safe = tf.where(out_of_range | (special != MARK), _int64(0xFFFD), number)
        character = tf.strings.unicode_encode(
            tf.RaggedTensor.from_tensor(tf.cast(safe[:, tf.newaxis], tf.int32)), "UTF-8"
        )
        return tf.where(special != MARK, special, character)
