"""A varied, seeded corpus of texts for tokenizer parity (no downloads: everything is made here).

Captions, many scripts, emoji (with ZWJ sequences and skin tones), HTML entities (named, numeric,
malformed, double-escaped), mojibake, control characters, Unicode whitespace, contractions,
special-token strings, digits of many scripts, punctuation runs, very long texts, random code
points, and empty and whitespace-only strings.
"""

from __future__ import annotations

import html
import html.entities
import random
import sys

_NOUNS = (
    "cat dog car bird tree house street person man woman child boat plane train horse cow sheep "
    "pizza cake bicycle umbrella clock kite skateboard laptop phone book vase chair sofa bed "
    "toilet oven sink refrigerator giraffe zebra elephant bear banana apple sandwich orange"
).split()
_ADJECTIVES = "red blue green small big old young happy wooden shiny dark bright wet".split()
_TEMPLATES = (
    "a photo of a {}.",
    "A {adj} {} sitting on a table",
    "There's a {} and it's {adj}!",
    "two {}s playing in the park, one is {adj}",
    "a blurry photo of the {}",
    "THE {} IS {adj}; we'll see, they'd say, I'm sure you've seen",
    "an origami {} (folded)",
    "a close-up photo of my {adj} {} #nofilter @friend",
    "a {}...{}?!",
    "“Quoted” {} — with dashes – and ‘curly’ quotes",
)
_SCRIPTS = {
    "latin": (0x41, 0x24F),
    "greek": (0x370, 0x3FF),
    "cyrillic": (0x400, 0x4FF),
    "armenian": (0x531, 0x58A),
    "hebrew": (0x591, 0x5F4),
    "arabic": (0x600, 0x6FF),
    "devanagari": (0x900, 0x97F),
    "bengali": (0x980, 0x9FE),
    "tamil": (0xB82, 0xBFA),
    "thai": (0xE01, 0xE5B),
    "georgian": (0x10A0, 0x10FF),
    "hangul": (0xAC00, 0xD7A3),
    "hiragana": (0x3041, 0x309F),
    "katakana": (0x30A0, 0x30FF),
    "cjk": (0x4E00, 0x9FFF),
    "ethiopic": (0x1200, 0x137F),
    "fullwidth": (0xFF01, 0xFF5E),
    "math_alnum": (0x1D400, 0x1D7FF),
    "symbols": (0x2000, 0x2BFF),
}
_EMOJI = [
    "😀",
    "🐱",
    "🚗",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "❤️",
    "🇯🇵",
    "🧑🏿‍🚀",
    "✨",
    "🔥",
    "1️⃣",
    "🫠",
]
_WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
_CONTROLS = [chr(c) for c in (*range(0, 32), *range(127, 160), 0xAD, 0x200B, 0x200D, 0xFEFF)]
_DIGITS = "0123456789٠١٢٣٤٥٦٧٨٩०१२३४५६७८९๐๑๒๓๔๕๖๗๘๙①②③ⅠⅡⅢⅣ¼½¾²³"


def _caption(rng: random.Random) -> str:
    template = rng.choice(_TEMPLATES)
    nouns = [rng.choice(_NOUNS) for _ in range(template.count("{}"))]
    return template.replace("{adj}", rng.choice(_ADJECTIVES)).format(*nouns)


def _script_text(rng: random.Random) -> str:
    low, high = _SCRIPTS[rng.choice(sorted(_SCRIPTS))]
    words = [
        "".join(chr(rng.randint(low, high)) for _ in range(rng.randint(1, 8)))
        for _ in range(rng.randint(1, 6))
    ]
    return " ".join(words)


def _entities(rng: random.Random) -> str:
    names = list(html.entities.html5)
    parts = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.randrange(9)
        if kind == 0:
            parts.append("&" + rng.choice(names))
        elif kind == 1:
            parts.append(f"&#{rng.randint(0, 0x11FFFF)};")
        elif kind == 2:
            parts.append(f"&#x{rng.randint(0, 0x11FFFF):X}" + rng.choice([";", "", "z"]))
        elif kind == 3:
            parts.append(f"&#{rng.choice([0, 13, 128, 150, 159, 0xD800, 0xFFFE, 0x1FFFF])};")
        elif kind == 4:
            parts.append("&" + rng.choice(names).rstrip(";") + rng.choice(["x;", "foo", "1;"]))
        elif kind == 5:
            parts.append(html.escape(html.escape(_caption(rng))))
        elif kind == 6:
            parts.append("&amp;" * rng.randint(1, 3) + rng.choice(["lt;", "eacute;", "#39;"]))
        elif kind == 7:
            parts.append("<b>" + _caption(rng) + "</b> &" + rng.choice(names))
        else:
            parts.append(
                "&" + "".join(rng.choice("abcXYZ019#;&") for _ in range(rng.randint(0, 40)))
            )
    return rng.choice([" ", "", " and "]).join(parts)


def _mojibake(rng: random.Random) -> str:
    text = rng.choice(
        [_caption(rng), _script_text(rng), "café naïve résumé Zürich", "“smart” ‘quotes’"]
    )
    data = text.encode("utf-8")
    return data.decode(rng.choice(["latin-1", "cp1252", "cp437", "mac_roman"]), errors="replace")


def _messy(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.randrange(8)
        if kind == 0:
            pieces.append(rng.choice(_WHITESPACE) * rng.randint(1, 3))
        elif kind == 1:
            pieces.append(rng.choice(_CONTROLS))
        elif kind == 2:
            pieces.append(rng.choice(_EMOJI))
        elif kind == 3:
            pieces.append(rng.choice(["'s", "'T", "'re", "'VE", "'m", "'ll", "'d", "'ſ", "'x"]))
        elif kind == 4:
            pieces.append(
                rng.choice(
                    [
                        "<start_of_text>",
                        "<end_of_text>",
                        "<START_OF_TEXT>",
                        "<ſtart_of_text>",
                        "<end_of_text",
                    ]
                )
            )
        elif kind == 5:
            pieces.append("".join(rng.choice(_DIGITS) for _ in range(rng.randint(1, 6))))
        elif kind == 6:
            pieces.append(rng.choice("!?.,;:-_=+*/\\|@#$%^~`\"'()[]{}<>") * rng.randint(1, 9))
        else:
            pieces.append(
                rng.choice(
                    [
                        "İstanbul",
                        "ǅemal",
                        "ΣΊΣΥΦΟΣ",
                        "ﬁne ﬂow",
                        "Straße",
                        "e\u0301",
                        "ＬＯＵＤ",
                        "a\u0308o\u0308",
                        "KELVIN K",
                        "Ⅻ",
                        "ŉ",
                        "\ufffd",
                    ]
                )
            )
    return "".join(pieces)


def _random_codepoints(rng: random.Random) -> str:
    chars = []
    while len(chars) < rng.randint(1, 20):
        c = rng.randint(0, sys.maxunicode)
        if not 0xD800 <= c <= 0xDFFF:
            chars.append(chr(c))
    return "".join(chars)


def _long(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return " ".join(_caption(rng) for _ in range(rng.randint(10, 60)))
    if kind == 1:
        return rng.choice("ab!x😀") * rng.randint(100, 3000)
    return "".join(_script_text(rng) + " " for _ in range(rng.randint(20, 80)))


_KINDS = (
    (_caption, 1500),
    (_script_text, 900),
    (_entities, 700),
    (_mojibake, 400),
    (_messy, 900),
    (_random_codepoints, 500),
    (_long, 200),
)


def corpus(seed: int = 0) -> list[str]:
    """About 5,200 texts, the same list for the same seed."""
    rng = random.Random(seed)
    texts = ["", " ", "   ", "\t\n", "\u3000\u00a0\u2028", "\x1c\x1d\x1e\x1f", "\r\n", "a"]
    for make, count in _KINDS:
        texts.extend(make(rng) for _ in range(count))
    return texts
