"""Text cleaning before CLIP tokenization, as OpenAI CLIP and open_clip do it.

ftfy repair, HTML unescaping twice, whitespace collapsed to single spaces, lower case.
"""

from __future__ import annotations

import html
import re

import ftfy

# ftfy leaves printable ASCII without "&" unchanged: its fixes act on HTML entities, control
# characters, terminal escapes, "\r" line breaks and non-ASCII text. Skipping it there makes
# the common case several times faster; tests check the claim against ftfy on a large corpus.
_FTFY_IDENTITY = re.compile(r"[\x20-\x25\x27-\x7e\t\n]*")


def repair(text: str) -> str:
    """ftfy.fix_text, skipped where it provably changes nothing."""
    if _FTFY_IDENTITY.fullmatch(text):
        return text
    return ftfy.fix_text(text)


def clean(text: str, *, fix_text: bool = True) -> str:
    """open_clip's "lower" cleaning: ftfy, html.unescape twice, whitespace runs -> " ", lower.

    `fix_text=False` leaves out ftfy, which is what the in-graph tokenizer computes.
    """
    if fix_text:
        text = repair(text)
    text = html.unescape(html.unescape(text))
    # str.split() splits on every Unicode whitespace character, as open_clip's cleaning does.
    return " ".join(text.split()).lower()
