"""`CLIPTokenizer`: OpenAI CLIP's tokenizer, in Python and as TensorFlow graph ops."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vit_zoo.text.bpe import BytePairEncoder
from vit_zoo.text.cleaning import clean
from vit_zoo.text.vocabulary import END_OF_WORD, byte_symbols, load_vocabulary

DEFAULT_CONTEXT_LENGTH = 77


class CLIPTokenizer:
    """Text -> int32 token ids [N, context_length], identical to open_clip's `tokenize`.

    Each text is cleaned (ftfy, HTML unescaping, whitespace, lower case), split into words, byte-
    pair encoded, bracketed by <start_of_text> ... <end_of_text> and padded with zeros; a text too
    long keeps its first `context_length - 2` tokens and still ends with <end_of_text>.

    Two paths give the same ids:
    - Python strings (a str or a list of str) are tokenized eagerly and give a NumPy array.
    - TensorFlow string tensors (inside tf.data, a tf.function or a SavedModel) go through
      core TensorFlow ops only: no tensorflow-text, so a stock TF Serving binary runs them.
      A scalar gives [context_length], a vector [N, context_length]. This path cannot run ftfy:
      it equals the Python path with `fix_text=False`, hence open_clip on every text that
      `ftfy.fix_text` leaves unchanged (see `vit_zoo.text.graph` for the full statement).
    """

    def __init__(
        self,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        vocabulary_file: str | Path | None = None,
    ):
        if context_length < 2:
            raise ValueError(
                f"context_length must be at least 2 (start and end tokens), got {context_length}."
            )
        self.context_length = int(context_length)
        self.vocabulary = load_vocabulary(vocabulary_file)
        self._encoder = BytePairEncoder(self.vocabulary)
        self._graph = None

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    @property
    def start_of_text(self) -> int:
        return self.vocabulary.start_of_text

    @property
    def end_of_text(self) -> int:
        return self.vocabulary.end_of_text

    def __call__(self, texts, context_length: int | None = None, *, fix_text: bool = True):
        """Token ids of `texts`: NumPy for Python strings, a tf.Tensor for TensorFlow strings."""
        if isinstance(texts, str | bytes) or _is_python_sequence(texts):
            return self.tokenize(texts, context_length, fix_text=fix_text)
        return self.graph(texts, context_length)

    def tokenize(
        self,
        texts: str | bytes | Iterable[str | bytes],
        context_length: int | None = None,
        *,
        fix_text: bool = True,
    ) -> np.ndarray:
        """The eager path: int32 [N, context_length] (N = 1 for a single string)."""
        length = self.context_length if context_length is None else int(context_length)
        if isinstance(texts, str | bytes):
            texts = [texts]
        rows = [self.encode(_as_str(text), fix_text=fix_text) for text in texts]
        ids = np.zeros((len(rows), length), dtype=np.int32)
        for row, text_ids in zip(ids, rows):
            text_ids = text_ids[: length - 2]
            row[0] = self.start_of_text
            row[1 : len(text_ids) + 1] = text_ids
            row[len(text_ids) + 1] = self.end_of_text
        return ids

    def encode(self, text: str, *, fix_text: bool = True) -> list[int]:
        """Ids of one text without start/end tokens, padding or truncation."""
        return self._encoder.encode(clean(text, fix_text=fix_text))

    def decode(self, ids) -> str:
        """Text of token ids (lower-cased, cleaned); stops at <end_of_text>, skips padding."""
        tokens = []
        for token_id in np.asarray(ids).reshape(-1).tolist():
            if token_id == self.end_of_text:
                break
            if token_id not in (0, self.start_of_text):
                tokens.append(self.vocabulary.tokens[token_id])
        return _join_words(tokens)

    @property
    def graph(self):
        """The in-graph tokenizer (a tf.Module; needs TensorFlow).

        Built on first use, which takes a few seconds: its character classes are computed from
        Python's Unicode tables and every whole-word vocabulary entry is encoded once. Inside
        tf.data, each new iterator also instantiates its graph once (one to two seconds), so
        keep one iterator across epochs (a repeated dataset with `steps_per_epoch`).
        """
        if self._graph is None:
            from vit_zoo.text.graph import GraphTokenizer

            self._graph = GraphTokenizer(
                self.vocabulary, self._encoder, context_length=self.context_length
            )
        return self._graph


def _join_words(tokens: list[str]) -> str:
    """The text of byte-pair tokens: a space after every token that ends a word."""
    byte_of = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
    out = bytearray()
    for token in tokens:
        body = token.removesuffix(END_OF_WORD)
        out.extend(byte_of[symbol] for symbol in body)
        if body != token:
            out.extend(b" ")
    return out.decode("utf-8", errors="replace").strip()


def _as_str(text: str | bytes) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise TypeError(f"CLIPTokenizer takes str or bytes texts, got {type(text).__name__}.")
    return text


def _is_python_sequence(texts) -> bool:
    if isinstance(texts, list | tuple):
        return True
    return isinstance(texts, np.ndarray) and texts.dtype.kind in "OUS"
