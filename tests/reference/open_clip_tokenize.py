"""Reference token ids from open_clip's tokenizer, in its own process (never imports TensorFlow).

Writes `ids.npy` (open_clip's `tokenize`), `ids_without_ftfy.npy` (the same with ftfy.fix_text
replaced by the identity: what the in-graph path computes) and `ftfy_changes.npy` (whether
ftfy.fix_text changes each text).

Usage: python open_clip_tokenize.py OUT_DIR TEXTS_JSON [CONTEXT_LENGTH]
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import ftfy
import numpy as np
import open_clip.tokenizer as open_clip_tokenizer


def main() -> None:
    out_dir, texts_file = Path(sys.argv[1]), Path(sys.argv[2])
    context_length = int(sys.argv[3]) if len(sys.argv) > 3 else 77
    texts = json.loads(texts_file.read_text())
    tokenizer = open_clip_tokenizer.SimpleTokenizer(context_length=context_length)
    np.save(out_dir / "ids.npy", tokenizer(texts).numpy())
    np.save(out_dir / "ftfy_changes.npy", np.array([ftfy.fix_text(t) != t for t in texts]))
    # open_clip's cleaning looks ftfy up as a module global at call time.
    open_clip_tokenizer.ftfy = types.SimpleNamespace(fix_text=lambda text: text)
    plain = open_clip_tokenizer.SimpleTokenizer(context_length=context_length)
    np.save(out_dir / "ids_without_ftfy.npy", plain(texts).numpy())


if __name__ == "__main__":
    main()
